"""`tunesmith runs list|compare`: a table of run folders, and paired comparisons on a shared test split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunesmith.errors import UserError


def _read(path: Path, name: str) -> dict:
    f = path / name
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{f}: not valid JSON ({str(err).splitlines()[0]}); the run folder is damaged") from None
    return data if isinstance(data, dict) else {}


def run_row(path: Path) -> dict:
    """One run's summary: status, model, method, data fingerprint, key metrics with intervals, wall time."""
    status, res, splits = _read(path, "status.json"), _read(path, "results.json"), _read(path, "splits.json")
    test = res.get("test", {})

    def ci(key: str) -> str:
        if key not in test:
            return "-"
        c = test.get("ci", {}).get(key)
        return f"{test[key]:.4f} [{c['low']:.3f}, {c['high']:.3f}]" if c else f"{test[key]:.4f}"

    return {"run": path.name, "path": str(path), "status": status.get("status", "unknown"),
            "model": res.get("model", "-"), "method": res.get("method", "-"),
            "train_sha": splits.get("train", {}).get("sha256", "")[:10],
            "test_sha": splits.get("test", {}).get("sha256", ""),
            "accuracy": ci("accuracy"), "macro_f1": ci("macro_f1"),
            "train_seconds": res.get("training", {}).get("train_seconds", "-"), "time": status.get("time", "")}


def list_runs(root: str | Path = "runs") -> list[dict]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of runs")
    return [run_row(p) for p in sorted(root.iterdir()) if (p / "status.json").is_file()]


def compare_runs(paths: list[str | Path], resamples: int = 1000, seed: int = 0) -> dict:
    """Rows for each run, plus a paired bootstrap of each run's test accuracy minus the first run's,
    where the test splits are identical (same row fingerprints)."""
    import pandas as pd

    from tunesmith.evaluate.stats import accuracy, paired_bootstrap

    runs = [Path(p) for p in paths]
    for p in runs:
        if not (p / "status.json").is_file():
            raise UserError(f"{p}: not a tunesmith run folder (no status.json)")
    rows = [run_row(p) for p in runs]
    pairs = []
    ref = runs[0]
    for other, row in zip(runs[1:], rows[1:]):
        if row["test_sha"] != rows[0]["test_sha"] or not row["test_sha"]:
            pairs.append({"a": ref.name, "b": other.name, "verdict": "different test splits: not comparable"})
            continue
        if not all((p / "test_predictions.csv").is_file() for p in (ref, other)):  # sft runs, search trials
            pairs.append({"a": ref.name, "b": other.name, "verdict": "no test predictions to pair: not compared"})
            continue
        a = pd.read_csv(ref / "test_predictions.csv")
        b = pd.read_csv(other / "test_predictions.csv")
        y = a["label"].astype(str).to_numpy()
        correct_a = (a["predicted"].astype(str).to_numpy() == y).astype(int)
        correct_b = (b["predicted"].astype(str).to_numpy() == y).astype(int)
        ones = np.ones_like(correct_a)
        res = paired_bootstrap(ones, correct_b, correct_a, accuracy, resamples, seed=seed)  # b minus a
        pairs.append({"a": ref.name, "b": other.name, **res})
    return {"runs": rows, "paired_accuracy": pairs}
