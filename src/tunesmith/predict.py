"""Predict labels with a finished run's model: `predict(run_dir, texts)` and the `predict` command."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tunesmith.errors import UserError


def run_logits(run_dir: str | Path, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, list[str], float]:
    """Raw logits of RUN_DIR/model for each text, the label names, and the saved calibration temperature."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.models import quiet_hf
    from tunesmith.run import load_run

    quiet_hf()
    run = load_run(run_dir)
    if run.config.task != "text-classification":
        raise UserError(f"{run.path}: a {run.config.task} run; predict --text and eval take text-classification "
                        "runs (image-classification: predict --input IMAGES_FOLDER; sft: tunesmith chat RUN_DIR)")
    if not (run.model_dir / "config.json").is_file():
        raise UserError(f"{run.path}: no trained model in model/ (run status: {run.status})")
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir).eval()
    temperature = _temperature(run.model_dir)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = [str(t) for t in texts[start:start + batch_size]]
            enc = tokenizer(chunk, truncation=True, max_length=run.config.model.max_length, padding=True,
                            return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    logits = np.concatenate(out) if out else np.zeros((0, len(labels)), dtype=np.float32)
    return logits, labels, temperature


def predict(run_dir: str | Path, texts: Sequence[str] | pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
    """Label and calibrated probability for each text, from RUN_DIR/model; for a tabular run, give a DataFrame
    of feature columns (see tunesmith.predict_tabular.predict_table)."""
    from tunesmith.evaluate.metrics import softmax

    if isinstance(texts, pd.DataFrame):  # a table's rows, for a tabular run
        from tunesmith.predict_tabular import predict_table

        return predict_table(run_dir, texts)
    logits, labels, temperature = run_logits(run_dir, texts, batch_size)
    probs = softmax(logits / temperature)
    return pd.DataFrame({"label": [labels[i] for i in probs.argmax(1)], "probability": probs.max(1).round(6)})


def _temperature(model_dir: Path) -> float:
    from tunesmith.evaluate.calibration import CALIBRATION

    path = model_dir / CALIBRATION
    return json.loads(path.read_text())["temperature"] if path.is_file() else 1.0


def predict_images(run_dir: str | Path, files: Sequence[Path], batch_size: int = 64) -> pd.DataFrame:
    """Label and calibrated probability for each image file, from an image-classification run's model."""
    import torch

    from tunesmith.data.images import read_image
    from tunesmith.data.transforms import pipeline, to_chw
    from tunesmith.evaluate.metrics import softmax
    from tunesmith.models.vision import load_saved
    from tunesmith.run import load_run

    run = load_run(run_dir)
    if not (run.model_dir / "model.safetensors").is_file():
        raise UserError(f"{run.path}: no trained model in model/ (run status: {run.status})")
    model, labels, pre = load_saved(run.model_dir)
    transform = pipeline(pre, None)
    out = []
    with torch.no_grad():
        for start in range(0, len(files), batch_size):
            batch = []
            for f in files[start:start + batch_size]:
                try:
                    img = read_image(f, run.config.image.max_side)
                except Exception as err:  # PIL raises many types for damaged files
                    reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
                    raise UserError(f"{f}: not a readable image ({reason})") from None
                batch.append(transform(to_chw(img)))
            out.append(model(torch.stack(batch)).float().numpy())
    probs = softmax(np.concatenate(out) / _temperature(run.model_dir))
    return pd.DataFrame({"label": [labels[i] for i in probs.argmax(1)], "probability": probs.max(1).round(6)})


def _write_csv(out: pd.DataFrame, output_path: str | Path) -> None:
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    out.to_csv(tmp, index=False)
    os.replace(tmp, output_path)


def predict_image_folder(run_dir: str | Path, input_path: str | Path, output_path: str | Path) -> int:
    """Predict every image under a folder (or one image file); write image, predicted, probability."""
    from tunesmith.data.images import SUFFIXES

    root = Path(input_path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        names = [str(p.relative_to(root)) for p in files]
    elif root.is_file():
        files, names = [root], [root.name]
    else:
        raise UserError(f"{root}: not found; expected a folder of images or one image file")
    if not files:
        raise UserError(f"{root}: no images found (looked for {', '.join(sorted(SUFFIXES))})")
    preds = predict_images(run_dir, files)
    _write_csv(pd.DataFrame({"image": names, "predicted": preds["label"], "probability": preds["probability"]}),
               output_path)
    return len(files)


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 text_column: str | None = None) -> int:
    """Read a table, predict each row's text, write the table with `predicted` and `probability` columns.
    For an image-classification run, the input is a folder of images (or one image)."""
    from tunesmith.data.load import ROW, blank, read_table
    from tunesmith.run import load_run

    run = load_run(run_dir)
    if run.config.task == "image-classification":
        return predict_image_folder(run_dir, input_path, output_path)
    if run.config.task.startswith("tabular"):
        from tunesmith.predict_tabular import predict_table

        df = read_table(input_path)
        out = df.drop(columns=[ROW]).join(predict_table(run_dir, df, str(input_path)).set_index(df.index),
                                          rsuffix="_predicted")
        _write_csv(out, output_path)
        return len(out)
    column = text_column or run.config.data.text_column
    df = read_table(input_path)
    if column not in df.columns:
        cols = ", ".join(c for c in df.columns if c != ROW)
        raise UserError(f"{input_path}: no column {column!r} (the run's text column); columns found: {cols}; "
                        "pass --text-column")
    texts = df[column]
    empty = blank(texts)
    if empty.any():
        rows = ", ".join(str(r) for r in df.loc[empty, ROW].head(5))
        raise UserError(f"{input_path}: {int(empty.sum())} rows have no text in column {column!r} (first at line {rows})")
    preds = predict(run_dir, texts.astype(str).tolist())
    out = df.drop(columns=[ROW]).assign(predicted=preds["label"].values, probability=preds["probability"].values)
    _write_csv(out, output_path)
    return len(out)
