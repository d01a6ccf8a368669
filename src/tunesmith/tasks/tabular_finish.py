"""After a tabular model is trained: the decision threshold (chosen on validation), scores with intervals on
validation and test, the baselines on the same test rows and the paired comparisons, the warm-start three-way
comparison and forgetting check, feature importances, predictions, results.json, model card and report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.config import RunConfig, TabularConfig
from tunesmith.data.load import ROW
from tunesmith.data.tabular import Schema, encode, unseen_categories
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json
from tunesmith.tasks.base import TaskData
from tunesmith.tasks.tabular import DECISION, MODEL_DIR, SCHEMA, source_config, write_csv

MAX_CONTRIB_ROWS = 2000  # rows whose per-feature contributions are averaged for the report


def finish(task, cfg: RunConfig, data: TaskData, training: dict, run_dir: Path) -> dict:
    from tunesmith.evaluate.tabular import best_baseline, compare_models, headline_metric
    from tunesmith.models.gbdt import load_model

    folder = run_dir / MODEL_DIR
    schema = Schema.from_json(json.loads((folder / SCHEMA).read_text()))
    model = load_model(folder)
    labels = schema.labels
    positive = labels.index(schema.positive_label) if schema.positive_label is not None else None
    splits = ["validation", "test"] if cfg.eval.test else ["validation"]
    X = {s: encode(data.splits[s], schema) for s in ["train", *splits]}
    y = {s: _indices(task, data.splits[s], labels) for s in ["train", *splits]}
    out = {s: task.probabilities(model.predict(X[s]), schema) for s in splits}

    decision = choose_threshold(y["validation"], out["validation"], positive, cfg.eval.costs)
    atomic_write_json(folder / DECISION, {**decision, "positive_label": schema.positive_label})
    score = _scorer(task, cfg, labels, positive, decision)
    results = {"task": cfg.task, "model": cfg.tabular.model, "method": cfg.tabular.model, "labels": labels,
               "positive_label": schema.positive_label, "target": schema.target, "decision": decision,
               "headline": headline_metric(labels, positive), "training": training,
               "validation": score(y["validation"], out["validation"]),
               "importance": importance(model, schema, X[splits[-1]])}
    if cfg.eval.test:
        results["unseen_categories"] = unseen_categories(data.splits["test"], schema)
        results["test"] = score(y["test"], out["test"])
        both = baselines(task, cfg, schema, X, y, labels)
        others = {name: o["test"] for name, o in both.items()}
        results["baselines"] = {}
        for name, o in both.items():  # each baseline decides at its own threshold, chosen on validation as well
            own = choose_threshold(y["validation"], o["validation"], positive, cfg.eval.costs)
            results["baselines"][name] = {"decision": own, "test": _scorer(task, cfg, labels, positive, own)(
                y["test"], o["test"])}
        metric = results["headline"]
        best = best_baseline({k: v["test"] for k, v in results["baselines"].items()}, metric)
        pairs = compare_models(y["test"], out["test"], others, labels, positive, cfg.eval, cfg.train.seed)
        results["comparisons"] = pairs
        results["comparison"] = {"best_baseline": best, "metric": metric, **pairs[best]} if best else {}
        if cfg.tabular.init_from:
            results["warm_start"] = warm_start_report(task, cfg, schema, model, pairs, results)
    for split in splits:
        write_csv(run_dir / f"{split}_predictions.csv", predictions(data.splits[split], out[split], schema, decision))
    atomic_write_json(run_dir / "results.json", results)
    if cfg.eval.test:
        from tunesmith.evaluate.report import write_report
        from tunesmith.evaluate.tabular_report import write_tabular_card

        write_tabular_card(run_dir)
        write_report(run_dir)
    return results


def _indices(task, df: pd.DataFrame, labels: list[str]) -> np.ndarray:
    if task.regression:
        return df["label"].to_numpy(dtype=float)
    return df["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()


def _scorer(task, cfg: RunConfig, labels: list[str], positive: int | None, decision: dict):
    from tunesmith.evaluate.tabular import classification_scores, regression_scores

    def score(y: np.ndarray, out: np.ndarray) -> dict:
        if task.regression:
            return regression_scores(y, out, cfg.eval, cfg.train.seed)
        return classification_scores(y, out, labels, positive, decision["threshold"], decision["costs"], cfg.eval,
                                     cfg.train.seed)
    return score


def choose_threshold(y_val: np.ndarray, out_val: np.ndarray, positive: int | None, costs: dict | None) -> dict:
    """Binary with eval.costs: the cost-minimising threshold on validation rows (never test). Else 0.5."""
    from tunesmith.evaluate.binary import cost_threshold

    if positive is None or not costs:
        return {"threshold": 0.5, "costs": dict(costs) if costs else None, "chosen_on": "default"}
    return cost_threshold((y_val == positive).astype(int), out_val[:, positive], costs)


def baselines(task, cfg: RunConfig, schema: Schema, X: dict, y: dict, labels: list[str]) -> dict[str, dict]:
    """Validation and test outputs of: the majority class (the training mean for regression); a logistic (linear)
    regression on the same features; a default LightGBM when the run's model or settings differ; and, for a warm
    start, the model trained on this data alone and the source model as it was."""
    from tunesmith.models.gbdt import load_model

    t = cfg.tabular
    out: dict[str, dict] = {}
    if task.regression:
        out["mean"] = {s: np.full(len(X[s]), float(np.mean(y["train"]))) for s in ("validation", "test")}
    else:
        prior = np.bincount(y["train"], minlength=len(labels)) / len(y["train"])
        out["majority_class"] = {s: np.tile(prior, (len(X[s]), 1)) for s in ("validation", "test")}
    fit_y = task.target(_frame_with(y["train"], labels, task), schema)
    fit_val = task.target(_frame_with(y["validation"], labels, task), schema)

    def trained(settings: TabularConfig) -> dict:
        model, weight = task.build(cfg, schema, fit_y, settings)
        model.fit(X["train"], fit_y, X["validation"], fit_val, weight)
        return {s: task.probabilities(model.predict(X[s]), schema) for s in ("validation", "test")}

    linear = "linear_regression" if task.regression else "logistic_regression"
    if t.model != "logistic":
        out[linear] = trained(TabularConfig(model="logistic", logistic_c=t.logistic_c, class_weight=t.class_weight))
    defaults = TabularConfig(threads=t.threads)
    tuned = t.model_copy(update={"drop_columns": [], "init_from": None, "positive_label": None,
                                 "max_categories": defaults.max_categories})
    if tuned != defaults and not t.init_from:
        out["lightgbm_default"] = trained(defaults)
    if t.init_from:
        out["target_only"] = trained(t.model_copy(update={"init_from": None}))
        source = load_model(Path(t.init_from) / MODEL_DIR)
        out["source_only"] = {s: task.probabilities(source.predict(X[s]), schema) for s in ("validation", "test")}
    return out


def _frame_with(y: np.ndarray, labels: list[str], task) -> pd.DataFrame:
    return pd.DataFrame({"label": y if task.regression else [labels[i] for i in y]})


def warm_start_report(task, cfg: RunConfig, schema: Schema, model, pairs: dict, results: dict) -> dict:
    """Warm-started vs target-only vs source-only on this test split, and the source run's own test split
    scored before (source model) and after (warm-started model) the warm start."""
    from tunesmith.data.split import fingerprint
    from tunesmith.evaluate.tabular import compare_models, headline_metric
    from tunesmith.models.gbdt import load_model

    metric = results["headline"]
    rows = {"warm_start": results["test"][metric],
            **{k: results["baselines"][k]["test"][metric] for k in ("target_only", "source_only")}}
    report = {"source_run": str(cfg.tabular.init_from), "metric": metric, "test": rows,
              "vs_target_only": pairs["target_only"], "vs_source_only": pairs["source_only"]}
    source_cfg = source_config(cfg.tabular.init_from)
    saved = json.loads((Path(cfg.tabular.init_from) / "splits.json").read_text())["test"]["sha256"]
    try:  # the source run's data, split as it was
        src = task.load_data(source_cfg)
        if fingerprint(src.splits["test"])["sha256"] != saved and source_cfg.audit.enabled:
            src, _ = task.audit(source_cfg, src)
    except UserError as err:
        report["forgetting"] = {"checked": False, "why": f"the source run's data could not be read ({err})"}
        return report
    if fingerprint(src.splits["test"])["sha256"] != saved:
        report["forgetting"] = {"checked": False, "why": "the source run's test split could not be rebuilt from its "
                                "config (its data file changed?)"}
        return report
    Xs = encode(src.splits["test"], schema)
    ys = _indices(task, src.splits["test"], schema.labels)
    before = task.probabilities(load_model(Path(cfg.tabular.init_from) / MODEL_DIR).predict(Xs), schema)
    after = task.probabilities(model.predict(Xs), schema)
    positive = schema.labels.index(schema.positive_label) if schema.positive_label is not None else None
    score = _scorer(task, cfg, schema.labels, positive, results["decision"])
    change = compare_models(ys, after, {"source_model": before}, schema.labels, positive, cfg.eval, cfg.train.seed)
    report["forgetting"] = {"checked": True, "rows": int(len(ys)), "metric": headline_metric(schema.labels, positive),
                            "source_model": score(ys, before)[metric], "warm_started": score(ys, after)[metric],
                            "change": change["source_model"]}
    return report


def importance(model, schema: Schema, X: pd.DataFrame) -> list[dict]:
    """Gain, split counts and mean |contribution| per feature, highest gain first (boosters only)."""
    imp = model.importance()
    if not imp:
        return []
    sample = X.iloc[:: max(1, len(X) // MAX_CONTRIB_ROWS)]
    contrib = model.contributions(sample)
    rows = [{"feature": name, "gain": float(imp["gain"][i]), "splits": int(imp["splits"][i]),
             "mean_abs_contribution": float(contrib[i])} for i, name in enumerate(schema.features)]
    return sorted(rows, key=lambda r: -r["gain"])


def predictions(df: pd.DataFrame, out: np.ndarray, schema: Schema, decision: dict) -> pd.DataFrame:
    """Row number, true target, prediction (the saved threshold for binary), its probability and the score."""
    if not schema.labels:
        return pd.DataFrame({"row": df[ROW].values, "label": df["label"].values, "predicted": out})
    labels, columns = schema.labels, decide(out, schema, decision["threshold"])
    return pd.DataFrame({"row": df[ROW].values, "label": df["label"].values,
                         "predicted": [labels[i] for i in columns["predicted"]], **columns["extra"]})


def decide(probs: np.ndarray, schema: Schema, threshold: float) -> dict:
    """Predicted class indices (binary: positive when its probability >= threshold), the probability of the
    predicted class, and for binary the positive-class score."""
    if schema.positive_label is None:
        pred = probs.argmax(1)
        return {"predicted": pred, "extra": {"probability": probs.max(1).round(6)}}
    pos = schema.labels.index(schema.positive_label)
    flagged = probs[:, pos] >= threshold
    pred = np.where(flagged, pos, 1 - pos)
    return {"predicted": pred, "extra": {"probability": probs[np.arange(len(pred)), pred].round(6),
                                         "score": probs[:, pos].round(6)}}
