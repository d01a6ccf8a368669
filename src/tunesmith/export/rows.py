"""The run's own validation and test rows, proven to be the ones it was scored on.

Text runs wrote every validation and test row (text and label, after the audit's fixes) to
validation_predictions.csv and test_predictions.csv; image runs wrote only a reference per image,
so their rows are rebuilt from the data files with the task's own load_data and audit. Either way
each split's row hashes must equal the fingerprint in splits.json, or the export refuses: a parity
figure on other rows would claim more than it shows.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tunesmith.errors import UserError

SPLITS = ("validation", "test")


def verify_split(run, split: str, df: pd.DataFrame) -> None:
    from tunesmith.data.split import fingerprint

    saved = json.loads((run.path / "splits.json").read_text())[split]
    if fingerprint(df)["sha256"] != saved["sha256"]:
        raise UserError(f"{run.path / 'splits.json'}: the {split} rows found now ({len(df)}) do not match the "
                        f"{saved['rows']} the run was scored on (data files or their order changed); the parity "
                        "gate needs the run's own rows")


def _text_rows(run) -> dict[str, pd.DataFrame]:
    out = {}
    for split in SPLITS:
        path = run.path / f"{split}_predictions.csv"
        if not path.is_file():
            raise UserError(f"{path}: missing; the parity gate needs the run's {split} rows (was eval.test off?)")
        out[split] = pd.read_csv(path, dtype=str, keep_default_na=False)[["text", "label"]]
    return out


def _rebuilt_rows(run) -> dict[str, pd.DataFrame]:
    from tunesmith.tasks import get_task

    task = get_task(run.config.task)
    data = task.load_data(run.config)
    if run.config.audit.enabled:
        data, _ = task.audit(run.config, data)
    return {split: data.splits[split] for split in SPLITS}


def gate_rows(run, labels: list[str]) -> tuple[dict[str, tuple[list, np.ndarray]], str]:
    """{split: (inputs, label indices)} for validation and test, and how they were obtained."""
    if run.config.task == "text-classification":
        frames, how = _text_rows(run), "read from the run's validation/test_predictions.csv"
    else:
        frames, how = _rebuilt_rows(run), "rebuilt from the data files with the task's load_data and audit"
    index = {l: i for i, l in enumerate(labels)}
    out = {}
    for split, df in frames.items():
        verify_split(run, split, df)
        unknown = sorted(set(df["label"]) - set(index))
        if unknown:
            raise UserError(f"{run.path}: {split} labels {unknown[:3]} are not among the model's labels")
        inputs = df["text"].tolist() if "image" not in df.columns else list(df["image"])
        out[split] = (inputs, df["label"].map(index).to_numpy())
    return out, how + "; row hashes match splits.json"
