"""`tunesmith export RUN --format onnx [--int8]`: the graph, what the runtime needs, and the parity gate."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tunesmith.errors import UserError
from tunesmith.export import gate
from tunesmith.export.runtime import MANIFEST, OnnxImageClassifier, OnnxTextClassifier, require

FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
LATENCY_THREADS = 2


def _manifest(run, predictor, info: dict) -> dict:
    base = {"task": run.config.task, "model_file": FP32_FILE, "labels": predictor.labels,
            "temperature": predictor.temperature, "inputs": info["inputs"], "opset": info["opset"],
            "exporter": info["exporter"]}
    if run.config.task == "text-classification":
        w = predictor.windows
        return {**base, "max_length": predictor.max_length, "pad_token_id": int(predictor.tokenizer.pad_token_id or 0),
                "windows": {"overlap": w.overlap, "max_windows": w.max_windows}}
    from tunesmith.models.vision import preprocess_of

    pre = preprocess_of(predictor.model)
    return {**base, "max_side": run.config.image.max_side,
            "preprocess": {"size": pre.size, "mean": list(pre.mean), "std": list(pre.std), "resize": "bilinear",
                           "crop": "center"}}


def _write_graph(run, predictor, folder: Path) -> dict:
    from tunesmith.export.graph import export_image, export_text

    if run.config.task == "text-classification":
        info = export_text(run.model_dir, folder / FP32_FILE, predictor.max_length)
        shutil.copy2(run.model_dir / "tokenizer.json", folder / "tokenizer.json")
    else:
        info = export_image(run.model_dir, folder / FP32_FILE)
    (folder / MANIFEST).write_text(json.dumps(_manifest(run, predictor, info), indent=2) + "\n")
    return info


def _onnx_predictor(run, folder: Path, model_file: str | None = None):
    cls = OnnxTextClassifier if run.config.task == "text-classification" else OnnxImageClassifier
    return cls(folder, model_file, threads=LATENCY_THREADS)


def _scores(predictor, rows: dict) -> dict[str, np.ndarray]:
    return {split: predictor.logits(inputs) for split, (inputs, _) in rows.items()}


def _torch_latency(predictor, inputs: list) -> dict:
    """Eager latency at torch's own thread setting (recorded): forcing threads onto a busy machine makes
    torch's OpenMP workers spin-wait and measures the machine, not the model (bench/ compares like for like)."""
    import torch

    return {"latency_ms_batch1": gate.latency_ms(predictor.logits, inputs, repeats=20),
            "threads": torch.get_num_threads()}


def _calibration(run, onnx_predictor, rows: int = 64, batch: int = 8):
    """A seeded sample of training rows, as graph inputs (static quantization's calibration set)."""
    def feeds() -> list[dict]:
        from tunesmith.data.split import sample_stratified
        from tunesmith.tasks import get_task

        train = get_task(run.config.task).load_data(run.config).splits["train"]
        sample = sample_stratified(train, rows, run.config.train.seed)
        inputs = sample["text"].tolist() if "image" not in sample.columns else list(sample["image"])
        if isinstance(onnx_predictor, OnnxTextClassifier):
            cut, _ = onnx_predictor.cut(inputs)
            return [onnx_predictor.encode(cut[i:i + batch]) for i in range(0, len(cut), batch)]
        return [{"pixel_values": onnx_predictor.pixels(inputs[i:i + batch])} for i in range(0, len(inputs), batch)]

    return feeds


SENSITIVITY_ROWS = 128  # validation rows on which each layer's damage is measured (the ranking only)


SMOOTHING_ROWS = 256  # training rows whose activation maxima set SmoothQuant's scales


class _Sources:
    """The fp32 graph each candidate quantizes: the prepared graph (dynamic), the one prepared with symbolic shape
    inference (static QDQ of a fused graph), or the prepared graph smoothed with the candidate's α (SmoothQuant;
    written once per α, the activation maxima measured once). A smoothed graph must give the fp32 logits of the
    graph it came from on the smoothing rows."""

    def __init__(self, by_kind: dict[str, Path], work: Path, feeds) -> None:
        self.by_kind, self.work, self.feeds = by_kind, work, feeds
        self.smoothed: dict[float, tuple[Path, dict]] = {}
        self.maxima = None

    def __call__(self, cand) -> Path:
        alpha = cand.options.get("smooth")
        if alpha is None:
            return self.by_kind[cand.kind]
        if alpha not in self.smoothed:
            from tunesmith.export.graph import PROBE_TOLERANCE
            from tunesmith.export.runtime import session
            from tunesmith.export.smooth import smooth

            source, out = self.by_kind["dynamic"], self.work / f"smoothed{alpha}.onnx"
            feeds = self.feeds()
            record = smooth(source, out, feeds, alpha, self.maxima)
            self.maxima = record.pop("maxima")
            before, after = session(source, threads=LATENCY_THREADS), session(out, threads=LATENCY_THREADS)
            diff = max(float(np.abs(before.run(["logits"], f)[0] - after.run(["logits"], f)[0]).max()) for f in feeds)
            record.update({"rows": f"activation maxima of {sum(len(next(iter(f.values()))) for f in feeds)} "
                                   "training rows", "fp32_max_abs_logit_diff": diff})
            if diff > PROBE_TOLERANCE:
                raise ValueError(f"the smoothed fp32 graph's logits moved by {diff:.3g} on the smoothing rows")
            self.smoothed[alpha] = out, record
        return self.smoothed[alpha][0]

    def record(self, cand) -> dict | None:
        """The smoothing record of a SmoothQuant candidate (None for the others)."""
        alpha = cand.options.get("smooth")
        return self.smoothed[alpha][1] if alpha in self.smoothed else None


def _scored(run, work: Path, cand, sources: _Sources, out: Path, calibration, reference: dict, ys: dict,
            rows: dict) -> dict:
    """Quantize with `cand` and put it through the gate on validation and test rows; a record for export.json."""
    from tunesmith.export.graph import file_mb
    from tunesmith.export.quantize import quantize

    record = {"setting": cand.name}
    try:
        source = sources(cand)
        if sources.record(cand) is not None:
            record["smoothing"] = sources.record(cand)
        quantize(cand, source, out, calibration)
        pred = _onnx_predictor(run, work, out.name)
        result = gate.compare(reference, _scores(pred, rows), ys, run.config.train.seed)
        ok, why = gate.passes(result, gate.INT8_AGREEMENT, gate.INT8_MAX_LOSS)
        record.update({"passes": ok, "why": why, **result, "size_mb": file_mb(out),
                       "latency_ms_batch1": gate.latency_ms(pred.logits, rows["test"][0])})
    except Exception as err:  # a setting ORT cannot apply to this graph is a failed candidate, not a crash
        record.update({"passes": False, "why": f"quantization failed: {type(err).__name__}: "
                                               f"{str(err).splitlines()[0][:200] if str(err) else ''}"})
    record["file"] = out
    return record


def _passes_on_validation(logits: np.ndarray, reference: np.ndarray, y: np.ndarray) -> bool:
    """The int8 bound on validation rows alone (agreement, and accuracy loss as a point estimate): it chooses
    how many layers the sensitivity-guided setting keeps in fp32, so test rows play no part in that choice."""
    agree = float((logits.argmax(1) == reference.argmax(1)).mean())
    loss = float((reference.argmax(1) == y).mean() - (logits.argmax(1) == y).mean())
    return agree >= gate.INT8_AGREEMENT and loss <= gate.INT8_MAX_LOSS


def _sensitivity_search(run, work: Path, base, sources: _Sources, calibration, reference: dict, ys: dict,
                        rows: dict) -> tuple[dict | None, dict]:
    """Rank the weight layers by damage under `base`, then keep the fewest most-damaging ones in fp32 that let the
    validation rows clear the bound. Returns the gate's record of that setting (None if no k did) and a note."""
    from tunesmith.export.quantize import fp32_counts, keeping, quantize, rank_layers

    val_inputs, val_y = rows["validation"][0], ys["validation"]
    step = max(1, len(val_inputs) // SENSITIVITY_ROWS)
    probe_inputs, probe_ref = val_inputs[::step][:SENSITIVITY_ROWS], reference["validation"][::step][:SENSITIVITY_ROWS]

    def damage(path: Path) -> float:  # mean squared logit change on the probe rows: finer than counting flips
        return float(((_onnx_predictor(run, work, path.name).logits(probe_inputs) - probe_ref) ** 2).mean())

    source = sources(base)
    ranked = rank_layers(base, source, work, calibration, damage)
    note = {"base": base.name, "rows": f"{len(probe_inputs)} validation rows rank the layers; all "
            f"{len(val_inputs)} validation rows choose how many stay fp32", "tried_k": [],
            "ranking": [{"layer": n, "mean_sq_logit_change": float(f"{d:.4g}")} for n, d in ranked]}
    for k in fp32_counts(len(ranked)):
        # int8-stored weights first (the file stays int8-sized); fp32 weights only when those fail
        for int8_weights in (True, False):
            cand = keeping(base, [n for n, _ in ranked[:k]], int8_weights)
            out = work / f"sensitive{k}.onnx"
            quantize(cand, source, out, calibration)
            logits = _onnx_predictor(run, work, out.name).logits(val_inputs)
            ok = _passes_on_validation(logits, reference["validation"], val_y)
            note["tried_k"].append({"k": k, "weights": "int8" if int8_weights else "fp32", "passes_validation": ok})
            out.unlink()
            if ok:
                return _scored(run, work, cand, sources, out, calibration, reference, ys, rows), note
    return None, note


def _int8_search(run, folder: Path, reference: dict, ys: dict, rows: dict, fp32_predictor) -> dict:
    """Try each quantization setting; keep the fastest within the bound as INT8_FILE. Returns the record."""
    from tunesmith.export.quantize import candidates, is_fused, prepared, static_op_types

    require("onnxruntime")
    tried, sensitivity = [], None
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        work = Path(tmp)
        for name in (MANIFEST, "tokenizer.json"):  # what a predictor on a candidate in `work` reads
            if (folder / name).is_file():
                shutil.copy2(folder / name, work / name)
        source = prepared(folder / FP32_FILE, work)
        # static QDQ of a fused graph calibrates only tensors whose types symbolic shape inference supplies
        sources = _Sources({"dynamic": source, "static": prepared(folder / FP32_FILE, work, symbolic=True)
                            if is_fused(folder / FP32_FILE) else source}, work,
                           _calibration(run, fp32_predictor, SMOOTHING_ROWS, batch=32))
        calibration = _calibration(run, fp32_predictor)
        # SmoothQuant rescales the inputs of MatMul-type layers: transformer graphs (a CNN's are Conv layers)
        plain = [c for c in candidates() if "smooth" not in c.options or static_op_types(source) is not None]
        for i, cand in enumerate(plain):
            tried.append(_scored(run, work, cand, sources, work / f"candidate{i}.onnx", calibration,
                                 reference, ys, rows))
        scored = [(r, c) for r, c in zip(tried, plain) if "agreement" in r]
        if any(r["passes"] for r in tried):
            sensitivity = {"skipped": "a plain setting already passes; keeping layers in fp32 only slows it"}
        elif scored:  # start from the setting that agreed best on validation rows (test rows play no part)
            base = max(scored, key=lambda rc: rc[0]["splits"]["validation"]["agreement"])[1]
            record, sensitivity = _sensitivity_search(run, work, base, sources, calibration, reference, ys, rows)
            tried.append(record if record is not None else {
                "setting": f"{base.name}, up to {sensitivity['tried_k'][-1]['k']} most sensitive layers fp32",
                "passes": False, "file": None, "why": "no number of layers kept in fp32 cleared the bound on the "
                                                      "validation rows"})
        passing = [r for r in tried if r["passes"]]
        chosen = min(passing, key=lambda r: r["latency_ms_batch1"]) if passing else None
        if chosen is not None:
            from tunesmith.export.weights import breakdown

            shutil.copy2(chosen["file"], folder / INT8_FILE)
            chosen["size_breakdown"] = breakdown(folder / INT8_FILE)
    for r in tried:
        r.pop("file")
    return {"bound": {"min_agreement": gate.INT8_AGREEMENT, "max_test_accuracy_loss": gate.INT8_MAX_LOSS},
            "candidates": tried, "chosen": chosen["setting"] if chosen else None, "sensitivity": sensitivity}


def export_onnx(run, folder: Path, int8: bool) -> tuple[dict, str | None]:
    """Write the ONNX export of a finished classification run into `folder` (a fresh temporary folder).
    Returns export.json's record and, when the int8 search found no setting within the bound, the refusal."""
    from tunesmith.export.graph import file_mb
    from tunesmith.export.rows import gate_rows
    from tunesmith.export.weights import breakdown
    from tunesmith.predict import load_predictor

    require("onnx", "onnxruntime", "onnxscript")
    torch_predictor = load_predictor(run.path, "torch")
    rows, how = gate_rows(run, torch_predictor.labels)
    info = _write_graph(run, torch_predictor, folder)
    ys = {split: y for split, (_, y) in rows.items()}
    reference = _scores(torch_predictor, rows)
    onnx_predictor = _onnx_predictor(run, folder)
    fp32 = gate.compare(reference, _scores(onnx_predictor, rows), ys, run.config.train.seed)
    ok, why = gate.passes(fp32, gate.FP32_AGREEMENT)
    test_inputs = rows["test"][0]
    record = {"format": "onnx", "run": str(run.path), "task": run.config.task, "exporter": info,
              "opset": info["opset"], "rows": how, "threads": LATENCY_THREADS,
              "pytorch": _torch_latency(torch_predictor, test_inputs),
              "fp32": {"file": FP32_FILE, "size_mb": file_mb(folder / FP32_FILE), "passes": ok, "why": why,
                       "size_breakdown": breakdown(folder / FP32_FILE),
                       "bound": {"min_agreement": gate.FP32_AGREEMENT}, **fp32,
                       "latency_ms_batch1": gate.latency_ms(onnx_predictor.logits, test_inputs)}}
    if not ok:
        raise UserError(f"{run.path}: the ONNX graph does not reproduce the PyTorch model ({why} on "
                        f"{sum(s['n'] for s in fp32['splits'].values())} validation and test rows); nothing written")
    refusal = None
    if int8:
        record["int8"] = _int8_search(run, folder, reference, ys, rows, onnx_predictor)
        if record["int8"]["chosen"]:
            manifest = json.loads((folder / MANIFEST).read_text())
            manifest["model_file"] = INT8_FILE
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        else:
            reasons = "; ".join(f"{c['setting']}: {c['why']}" for c in record["int8"]["candidates"])
            refusal = (f"int8: no quantization setting stays within {gate.INT8_AGREEMENT:.0%} agreement and "
                       f"{gate.INT8_MAX_LOSS * 100:.1f} points of test accuracy ({reasons}); kept the fp32 model")
    record["model_file"] = json.loads((folder / MANIFEST).read_text())["model_file"]
    return record, refusal
