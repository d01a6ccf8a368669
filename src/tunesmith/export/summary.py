"""export.json as a few printed lines: the parity gate and the int8 search."""
from __future__ import annotations


def _accuracy_line(name: str, cmp: dict) -> str:
    acc = cmp["test_accuracy"]
    d = acc["difference"]
    return (f"{name}: agreement {cmp['agreement']:.2%} on {sum(s['n'] for s in cmp['splits'].values())} validation+"
            f"test rows, max |Δ logit| {cmp['max_abs_logit_diff']:.2g}; test accuracy PyTorch "
            f"{acc['pytorch']['value']:.4f} vs exported {acc['exported']['value']:.4f}, difference "
            f"{d['difference'] * 100:+.2f} points [{d['low'] * 100:+.2f}, {d['high'] * 100:+.2f}]")


def summary_lines(record: dict) -> list[str]:
    """What the CLI prints after an export."""
    if record.get("format") == "gguf":
        return [f"{f['file']}: {f['size_mb']} MB; held-out response loss {f['loss']:.4f} "
                f"(merged model {record['reference_loss']:.4f}, difference {f['loss_difference']:+.4f})"
                for f in record["files_checked"]]
    ex = record["exporter"]
    lines = [f"exporter: {ex['exporter']} (opset {ex['opset']}); {ex['why']}",
             f"rows: {record['rows']}",
             _accuracy_line("fp32", record["fp32"]),
             f"latency at batch 1: PyTorch {record['pytorch']['latency_ms_batch1']} ms "
             f"({record['pytorch']['threads']} threads), ONNX fp32 {record['fp32']['latency_ms_batch1']} ms "
             f"({record['threads']} threads, {record['fp32']['size_mb']} MB)"]
    int8 = record.get("int8")
    if int8:
        for c in int8["candidates"]:
            extra = (f"; {c['latency_ms_batch1']} ms, {c['size_mb']} MB, agreement {c['agreement']:.2%}"
                     if "agreement" in c else "")
            lines.append(f"int8 {c['setting']}: {'passes' if c['passes'] else 'refused: ' + c['why']}{extra}")
        if int8["chosen"]:
            chosen = next(c for c in int8["candidates"] if c["setting"] == int8["chosen"])
            lines.append(_accuracy_line(f"int8 kept ({int8['chosen']})", chosen))
            fp32 = record["fp32"]
            if chosen["latency_ms_batch1"] > fp32["latency_ms_batch1"]:
                lines.append(f"note: the int8 model is smaller ({chosen['size_mb']} vs {fp32['size_mb']} MB) but "
                             f"slower than fp32 at batch 1 here ({chosen['latency_ms_batch1']} vs "
                             f"{fp32['latency_ms_batch1']} ms); model.onnx stays in the folder")
    lines.append(f"predict with: {record['model_file']}")
    return lines
