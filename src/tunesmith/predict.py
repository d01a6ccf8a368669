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
    from tunesmith.evaluate.calibration import CALIBRATION
    from tunesmith.run import load_run

    quiet_hf()
    run = load_run(run_dir)
    if run.config.task != "text-classification":
        raise UserError(f"{run.path}: a {run.config.task} run; predict and eval take text-classification runs "
                        "(for sft: tunesmith chat RUN_DIR)")
    if not (run.model_dir / "config.json").is_file():
        raise UserError(f"{run.path}: no trained model in model/ (run status: {run.status})")
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir).eval()
    calibration = run.model_dir / CALIBRATION
    temperature = json.loads(calibration.read_text())["temperature"] if calibration.is_file() else 1.0
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


def predict(run_dir: str | Path, texts: Sequence[str], batch_size: int = 64) -> pd.DataFrame:
    """Label and calibrated probability for each text, from RUN_DIR/model."""
    from tunesmith.evaluate.metrics import softmax

    logits, labels, temperature = run_logits(run_dir, texts, batch_size)
    probs = softmax(logits / temperature)
    return pd.DataFrame({"label": [labels[i] for i in probs.argmax(1)], "probability": probs.max(1).round(6)})


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 text_column: str | None = None) -> int:
    """Read a table, predict each row's text, write the table with `predicted` and `probability` columns."""
    from tunesmith.data.load import ROW, blank, read_table
    from tunesmith.run import load_run

    column = text_column or load_run(run_dir).config.data.text_column
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
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    out.to_csv(tmp, index=False)
    os.replace(tmp, output_path)
    return len(out)
