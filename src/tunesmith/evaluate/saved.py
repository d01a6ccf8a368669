"""`tunesmith eval RUN_DIR --data labelled.csv`: score a saved run on new labelled data and warn about drift."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from tunesmith.errors import UserError

# Thresholds beyond which the new data clearly differs from training.
LABEL_SHIFT_TVD = 0.2  # total variation distance between label distributions
LENGTH_RATIO = (2 / 3, 1.5)  # ratio of median word counts


def drift(train_profile: dict | None, labels: list[str], y: np.ndarray, words: np.ndarray) -> dict:
    """Label-distribution and text-length shift between training and the new data."""
    if not train_profile:
        return {"checked": False, "warnings": ["this run predates drift profiles; drift not checked"]}
    counts = np.array([train_profile["label_counts"].get(l, 0) for l in labels], dtype=float)
    p_train = counts / counts.sum()
    p_new = np.bincount(y, minlength=len(labels)) / max(1, len(y))
    tvd = float(0.5 * np.abs(p_train - p_new).sum())
    ratio = float(np.median(words) / max(1e-9, train_profile["median_words"]))
    warnings = []
    if tvd > LABEL_SHIFT_TVD:
        moved = np.argsort(-np.abs(p_new - p_train))[:3]
        warnings.append(f"label distribution differs from training (total variation {tvd:.2f} > {LABEL_SHIFT_TVD}): "
                        + ", ".join(f"{labels[i]} {p_train[i]:.1%} -> {p_new[i]:.1%}" for i in moved))
    if not LENGTH_RATIO[0] <= ratio <= LENGTH_RATIO[1]:
        warnings.append(f"texts are {'longer' if ratio > 1 else 'shorter'} than in training: median "
                        f"{np.median(words):.0f} words vs {train_profile['median_words']:.0f}")
    return {"checked": True, "label_tvd": tvd, "median_words_ratio": ratio, "warnings": warnings}


def eval_run(run_dir: str | Path, data: str | Path, text_column: str | None = None,
             label_column: str | None = None) -> dict:
    """Metrics with intervals, calibration and drift of RUN_DIR's model on a labelled file."""
    from tunesmith.data.load import ROW, labelled_rows, read_table
    from tunesmith.evaluate.calibration import calibration_report
    from tunesmith.evaluate.evaluation import scored
    from tunesmith.io import atomic_write_json
    from tunesmith.predict import run_logits
    from tunesmith.run import load_run

    run = load_run(run_dir)
    cfg = run.config
    df, _ = labelled_rows(read_table(data), data, text_column or cfg.data.text_column,
                          label_column or cfg.data.label_column, cfg.data.drop_missing)
    logits, labels, temperature = run_logits(run.path, df["text"].tolist())
    index = {l: i for i, l in enumerate(labels)}
    unknown = df.loc[~df["label"].isin(index)]
    if len(unknown):
        row = unknown.iloc[0]
        raise UserError(f"{data}: row {row[ROW]}: label {row['label']!r} is not one the model knows "
                        f"({len(unknown)} rows); known labels: {', '.join(labels[:10])}{' …' if len(labels) > 10 else ''}")
    y = df["label"].map(index).to_numpy()
    profile_path = run.path / "data_report.json"
    profile = json.loads(profile_path.read_text()).get("train_profile") if profile_path.is_file() else None
    report = {"run": str(run.path), "data": str(data), "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "metrics": scored(y, logits / temperature, labels, cfg.eval, cfg.train.seed),
              "calibration": calibration_report(logits, y, temperature),
              "drift": drift(profile, labels, y, df["text"].str.split().str.len().to_numpy())}
    out = run.path / "evals" / f"{Path(data).stem}.json"
    atomic_write_json(out, report)
    report["path"] = str(out)
    return report
