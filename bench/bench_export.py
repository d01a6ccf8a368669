"""Benchmark: eager PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8, for two finished runs.

    python bench/bench_export.py --text-run RUN --image-run RUN [--repeats 30] [--append]

RUN folders are finished tunesmith runs: a MiniLM-L6 run on Banking77 and an EfficientNet-Lite0 run on
PneumoniaMNIST (see bench/RESULTS.md for the commands that trained them). Each run is exported with
`export_run(..., int8=True)` into a temporary folder (the parity gate and the int8 search run as a user's
export does); then each backend predicts test inputs at batch 1 and batch 32 with 1 and 2 threads, each backend in
a process of its own, one after another, as a deployment runs one runtime. (Until 2026-11-26 the backends
ran interleaved in one process: then torch's OpenMP workers and ONNX Runtime's pool, each spinning idle
after its own calls, took the second core from the other runtime, an artefact of the bench that halved
ORT int8's 2-thread speed at batch 32.) Run it on an idle machine. Times are medians per call of the
whole predictor (tokenizer or image preprocessing included), as `tunesmith predict` pays them, in wall
time and in the process's CPU time.
Prints the table and, with --append, adds it, dated, to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2


def _inputs(run_dir: Path, n: int) -> list:
    from tunesmith.export.rows import gate_rows
    from tunesmith.predict import load_predictor
    from tunesmith.run import load_run

    run = load_run(run_dir)
    rows, _ = gate_rows(run, load_predictor(run_dir).labels)
    return rows["test"][0][:n]


def _time(fn, batches: list) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call: CPU time survives a busy machine better."""
    tic, cpu = time.perf_counter(), time.process_time()
    fn(batches)
    return time.perf_counter() - tic, time.process_time() - cpu


def _latencies(run_dir: Path, export: Path, file: str | None, inputs: list, repeats: int,
               threads: int) -> tuple[dict, dict]:
    """Median wall and CPU seconds per call of one backend at batch 1 and 32, in this process.
    `file`: the ONNX file in `export`, or None for the eager PyTorch predictor."""
    import torch

    torch.set_num_threads(threads)
    if file is None:
        from tunesmith.predict import load_predictor

        pred = load_predictor(run_dir, "torch")
    else:
        from tunesmith.export.runtime import OnnxImageClassifier, OnnxTextClassifier, read_manifest

        text = read_manifest(export)["task"] == "text-classification"
        pred = (OnnxTextClassifier if text else OnnxImageClassifier)(export, file, threads=threads)
    times = {bs: [] for bs in (1, 32)}
    for bs, rounds in ((1, repeats), (32, max(3, repeats // 6))):
        batches = [inputs[(i * bs) % (len(inputs) - bs + 1):][:bs] for i in range(rounds)]
        for batch in batches[:2]:  # warm-up
            pred.logits(batch)
        times[bs] = [_time(pred.logits, batch) for batch in batches]
    return ({bs: float(np.median([w for w, _ in v])) for bs, v in times.items()},
            {bs: float(np.median([c for _, c in v])) for bs, v in times.items()})


def _isolated(run_dir: Path, export: Path, file: str | None, inputs_file: Path, repeats: int,
              threads: int) -> tuple[dict, dict]:
    """_latencies in a fresh process (this script with --worker): one runtime per process."""
    job = {"run_dir": str(run_dir), "export": str(export), "file": file,
           "inputs": str(inputs_file), "repeats": repeats, "threads": threads}
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return {int(k): v for k, v in wall.items()}, {int(k): v for k, v in cpu.items()}


def _worker(job: str) -> None:
    j = json.loads(job)
    with open(j["inputs"], "rb") as fh:
        inputs = pickle.load(fh)  # written by this script's parent process, a moment ago
    print(json.dumps(_latencies(Path(j["run_dir"]), Path(j["export"]), j["file"], inputs, j["repeats"], j["threads"])))


def measure(run_dir: Path, repeats: int) -> tuple[list[dict], dict]:
    from tunesmith.export import export_run

    import torch

    torch.set_num_threads(1)  # the export's gate scores every validation and test row: one thread is steadiest
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        tic = time.perf_counter()
        rec = export_run(run_dir, "onnx", int8=True, output=out).record
        export_seconds = time.perf_counter() - tic
        files = {"ORT fp32": "model.onnx", "ORT int8": "model.int8.onnx"}
        sizes = {"eager PyTorch": (run_dir / "model" / "model.safetensors").stat().st_size,
                 **{k: (out / f).stat().st_size for k, f in files.items() if (out / f).is_file()}}
        inputs = _inputs(run_dir, 32 * 4)
        acc32 = rec["fp32"]["test_accuracy"]
        accuracy = {"eager PyTorch": acc32["pytorch"], "ORT fp32": acc32["exported"]}
        agreement = {"eager PyTorch": None, "ORT fp32": rec["fp32"]["agreement"]}
        chosen = None
        if rec.get("int8", {}).get("chosen"):
            chosen = next(c for c in rec["int8"]["candidates"] if c["setting"] == rec["int8"]["chosen"])
            accuracy["ORT int8"], agreement["ORT int8"] = chosen["test_accuracy"]["exported"], chosen["agreement"]
        inputs_file = Path(tmp) / "inputs.pkl"
        inputs_file.write_bytes(pickle.dumps(inputs))
        backends = {"eager PyTorch": None, **{k: f for k, f in files.items() if k in sizes}}
        for threads in (1, THREADS):
            med, cpu = {}, {}
            for name, file in backends.items():
                wall, proc = _isolated(run_dir, out, file, inputs_file, repeats, threads)
                med.update({(name, bs): v for bs, v in wall.items()})
                cpu.update({(name, bs): v for bs, v in proc.items()})
            for name in backends:
                b1, b32 = med[(name, 1)], med[(name, 32)]
                c1, c32 = cpu[(name, 1)], cpu[(name, 32)]
                acc = accuracy[name]
                rows.append({"backend": name + (f" ({rec['int8']['chosen']})" if name == "ORT int8" else ""),
                             "threads": threads, "ms batch 1": round(b1 * 1000, 2),
                             "speed-up b1": f"{med[('eager PyTorch', 1)] / b1:.2f}x",
                             "ms batch 32": round(b32 * 1000, 1),
                             "speed-up b32": f"{med[('eager PyTorch', 32)] / b32:.2f}x",
                             "CPU ms b1 / b32": f"{c1 * 1000:.2f} / {c32 * 1000:.1f}",
                             "CPU speed-up b1 / b32": f"{cpu[('eager PyTorch', 1)] / c1:.2f}x / "
                                                      f"{cpu[('eager PyTorch', 32)] / c32:.2f}x",
                             "size MB": round(sizes[name] / 2**20, 1),
                             "test accuracy": f"{acc['value']:.4f} [{acc['low']:.3f}, {acc['high']:.3f}]",
                             "agreement with eager": "" if agreement[name] is None else f"{agreement[name]:.2%}"})
    return rows, {"record": rec, "export_seconds": round(export_seconds, 1), "chosen": chosen}


def markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows])


def gate_notes(info: dict) -> str:
    rec = info["record"]
    d = rec["fp32"]["test_accuracy"]["difference"]
    lines = [f"- exporter: {rec['exporter']['exporter']} (opset {rec['opset']}); export with the gate and int8 "
             f"search took {info['export_seconds']} s",
             f"- fp32 gate: agreement {rec['fp32']['agreement']:.2%} on "
             f"{sum(s['n'] for s in rec['fp32']['splits'].values())} validation+test rows, max |Δ logit| "
             f"{rec['fp32']['max_abs_logit_diff']:.2g}, test accuracy difference {d['difference'] * 100:+.2f} points "
             f"[{d['low'] * 100:+.2f}, {d['high'] * 100:+.2f}]"]
    fusion = rec["exporter"].get("fusion")
    if fusion:
        lines.append(f"- ORT transformer fusion: {'applied' if fusion['applied'] else 'not applied'} ({fusion['why']})"
                     + (f"; fused ops {', '.join(f'{k} {v}' for k, v in fusion['ops'].items() if v)}"
                        if fusion.get("ops") else ""))
    lines.append(f"- fp32 file bytes: {_sizes(rec['fp32']['size_breakdown'])}")
    for c in rec.get("int8", {}).get("candidates", []):
        if "agreement" in c:
            diff = c["test_accuracy"]["difference"]
            lines.append(f"- int8 {c['setting']}: {'passes' if c['passes'] else 'refused (' + c['why'] + ')'}; "
                         f"agreement {c['agreement']:.2%}, test accuracy {diff['difference'] * 100:+.2f} points "
                         f"[{diff['low'] * 100:+.2f}, {diff['high'] * 100:+.2f}], {c['latency_ms_batch1']} ms at "
                         f"batch 1, {c['size_mb']} MB" + _smoothing(c))
        else:
            lines.append(f"- int8 {c['setting']}: {c['why']}")
    sens = rec.get("int8", {}).get("sensitivity") or {}
    if "ranking" in sens:
        top = ", ".join(f"{r['layer']} ({r['mean_sq_logit_change']:.3g})" for r in sens["ranking"][:4])
        tried = ", ".join(f"k={t['k']} ({t.get('weights', 'fp32')} weights) "
                          f"{'passes' if t['passes_validation'] else 'fails'}" for t in sens["tried_k"])
        lines.append(f"- sensitivity search from '{sens['base']}' ({sens['rows']}): most damaging layers {top}; "
                     f"on validation rows {tried}")
    elif sens:
        lines.append(f"- sensitivity search: {sens.get('skipped', sens)}")
    chosen = info.get("chosen")
    if chosen and "size_breakdown" in chosen:
        size = chosen["size_breakdown"]
        lines.append(f"- int8 file bytes: {_sizes(size)}; {size['file_mb'] / rec['fp32']['size_mb']:.1%} of fp32")
    return "\n".join(lines)


def _smoothing(c: dict) -> str:
    """A SmoothQuant candidate's smoothing: layers, the largest activation range before and after, fp32 parity."""
    sm = c.get("smoothing")
    if not sm:
        return ""
    return (f" (SmoothQuant α={sm['alpha']} on {sm['layers']} layers, {sm['rows']}: largest activation range "
            f"{sm['range_before']['max']:.3g} → {sm['range_after']['max']:.3g}, median "
            f"{sm['range_before']['median']:.3g} → {sm['range_after']['median']:.3g}; smoothed fp32 graph max "
            f"|Δ logit| {sm['fp32_max_abs_logit_diff']:.2g})")


def _sizes(size: dict) -> str:
    roles = ", ".join(f"{k} {v} MB" for k, v in size["by_role_mb"].items() if v)
    dupes = f"; duplicated initializers {size['duplicates']}" if size["duplicates"] else "; no duplicated initializers"
    return f"{size['file_mb']} MB file ({roles}{dupes})"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return _worker(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-run", type=Path, required=True)
    ap.add_argument("--image-run", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--append", action="store_true", help="add the results, dated, to bench/RESULTS.md")
    args = ap.parse_args()
    import onnxruntime
    import torch

    load = os.getloadavg()[0]
    parts = []
    for title, run in (("MiniLM-L6 on Banking77", args.text_run), ("EfficientNet-Lite0 on PneumoniaMNIST",
                                                                   args.image_run)):
        rows, info = measure(run, args.repeats)
        parts.append(f"### {title} (run {run.name})\n\n{markdown(rows)}\n\n{gate_notes(info)}\n")
    text = (f"\n## {dt.date.today()} — edge export: eager PyTorch vs ONNX Runtime fp32 / int8 ({platform.machine()}, "
            f"{os.cpu_count()} cores, {platform.processor() or 'cpu'}, torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}; 1-min load average at start {load:.1f})\n\n"
            + "\n".join(parts))
    print(text)
    if args.append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
