"""Tabular prediction with gradient boosting (LightGBM by default, XGBoost) or a linear model: rows are a
table's typed columns and a target. These tasks train outside the torch loop: `fit` replaces prepare + train.

Warm start (`tabular.init_from`): the source run's booster continues on this data with the source's feature
schema; the evaluation adds the target-only model (same settings, from scratch) and the source model as it was,
all on this run's test split, and re-scores the source run's own test split (how much was forgotten).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.config import RunConfig, build_config
from tunesmith.data.load import ROW, read_table
from tunesmith.data.tabular import (Column, Schema, check_columns, convert, describe, encode, fit_levels, missing,
                                    row_hash, type_columns, typed_frame)
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json
from tunesmith.tasks import register_task
from tunesmith.tasks.base import TaskData

MODEL_DIR = "model"
SCHEMA, DECISION = "schema.json", "decision.json"  # in model/: the feature schema; the decision threshold
REPORT_EVERY = 10  # boosting rounds between records in metrics.jsonl (and reports to a search)


@register_task("tabular-classification")
class TabularClassification:
    name: str
    regression = False

    # -- config ----------------------------------------------------------------------------
    def data_settings(self, cfg: RunConfig) -> dict:
        """Loading reads the feature settings (dropped columns, category limit, positive class, the
        warm-start source's schema); the booster's own parameters apply after loading."""
        return cfg.tabular.model_dump(mode="json", include={"drop_columns", "positive_label", "init_from",
                                                            "max_categories"})

    def configure(self, cfg: RunConfig) -> RunConfig:
        """Checks that only this task makes, each naming its field."""
        d, t = cfg.data, cfg.tabular
        if d.time_column and d.group_column:
            raise UserError("data.time_column and data.group_column: choose one split mode (time order, or groups)")
        if d.label_column in t.drop_columns:
            raise UserError(f"tabular.drop_columns: {d.label_column!r} is the target (data.label_column)")
        for field in ("time_column", "group_column"):
            if getattr(d, field) == d.label_column:
                raise UserError(f"data.{field} = {d.label_column!r} is the target (data.label_column)")
        if cfg.eval.costs is not None and set(cfg.eval.costs) != {"fn", "fp"}:
            raise UserError(f"eval.costs = {cfg.eval.costs}: give both fn (a missed positive) and fp (a false alarm)")
        if cfg.eval.costs is not None and self.regression:
            raise UserError("eval.costs: a cost matrix applies to binary classification, not tabular-regression")
        if t.model == "xgboost":
            import importlib.util

            if importlib.util.find_spec("xgboost") is None:
                raise UserError("tabular.model = 'xgboost': the xgboost package is not installed; pip install "
                                "'tunesmith[tabular]'")
        if t.init_from is not None:
            source = source_config(t.init_from)
            if source.task != cfg.task:
                raise UserError(f"tabular.init_from = {t.init_from!r}: a {source.task} run; this is {cfg.task}")
            if source.tabular.model != t.model or t.model == "logistic":
                raise UserError(f"tabular.init_from = {t.init_from!r}: its model is {source.tabular.model}; a warm "
                                f"start continues a booster of the same kind (tabular.model = {t.model})")
            if source.data.label_column != d.label_column:
                raise UserError(f"tabular.init_from: the source run predicts {source.data.label_column!r}, this run "
                                f"{d.label_column!r} (data.label_column)")
        if cfg.model.name == type(cfg.model).model_fields["name"].default:  # name the run after its model
            cfg = cfg.model_copy(deep=True)
            cfg.model.name = t.model
        return cfg

    # -- data ------------------------------------------------------------------------------
    def load_data(self, cfg: RunConfig) -> TaskData:
        from tunesmith.data.split import check_label_sets

        d, t = cfg.data, cfg.tabular
        excluded = {c: "tabular.drop_columns" for c in t.drop_columns}
        for field in ("time_column", "group_column"):
            if getattr(d, field):
                excluded[getattr(d, field)] = f"data.{field}"
        raw = read_table(d.train)
        features = check_columns(raw, str(d.train), d.label_column, excluded)
        if t.init_from is not None:  # the source model's columns and kinds
            source = Schema.from_json(json.loads((Path(t.init_from) / MODEL_DIR / SCHEMA).read_text()))
            lacking = [c.name for c in source.columns if c.name not in raw.columns]
            if lacking:
                raise UserError(f"{d.train}: no column {lacking[0]!r}, a feature of the source model "
                                f"(tabular.init_from = {t.init_from})")
            columns = [Column(c.name, c.kind) for c in source.columns]
        else:
            columns = type_columns(raw, features, str(d.train), t.max_categories)
        files, report = {"train": str(d.train)}, {}
        frames = {"train": self._frame(raw, columns, str(d.train), cfg, report)}
        for split in ("validation", "test"):
            path = getattr(d, split)
            if path is not None:
                table = read_table(path)
                check_columns(table, str(path), d.label_column, {c: f for c, f in excluded.items() if c in table})
                lacking = [c.name for c in columns if c.name not in table.columns]
                if lacking:
                    raise UserError(f"{path}: no column {lacking[0]!r}, a feature column of the training file")
                frames[split], files[split] = self._frame(table, columns, str(path), cfg, report), str(path)
        splits, mode = self._split(cfg, frames)
        # whether dates carry a time of day (an hour feature), for the data report
        columns = [fit_levels([c], splits["train"])[0] if c.kind == "datetime" else c for c in columns]
        labels = [] if self.regression else check_label_sets(splits, files)
        return TaskData(splits=splits, labels=labels, data_report={
            "files": files, "target": d.label_column, "split_mode": mode, "missing_target": report,
            "excluded_columns": excluded, "columns": [vars(c) for c in columns],
            "column_report": describe(columns, splits)})

    def _frame(self, raw: pd.DataFrame, columns: list[Column], path: str, cfg: RunConfig, report: dict) -> pd.DataFrame:
        """Typed features, the target as `label`, the split columns, the row number and a row hash."""
        d = cfg.data
        target = raw[d.label_column]
        gone = missing(target)
        if gone.any():
            rows = ", ".join(str(r) for r in raw.loc[gone, ROW].head(5))
            if not d.drop_missing:
                raise UserError(f"{path}: {int(gone.sum())} rows have no value in the target column "
                                f"{d.label_column!r} (first at row {rows}); fill them or set data.drop_missing=true "
                                "to drop them")
            report[path] = int(gone.sum())
            raw = raw.loc[~gone]
        if raw.empty:
            raise UserError(f"{path}: no rows with a target left")
        out = typed_frame(raw, columns, path)
        out["sha256"] = row_hash(raw, [c.name for c in columns])
        if self.regression:
            out["label"] = convert(raw[d.label_column], "numeric", raw[ROW], path, d.label_column).values
        else:
            out["label"] = raw[d.label_column].astype(str).str.strip().values
        if d.time_column:
            kind = "numeric" if pd.api.types.is_numeric_dtype(raw[d.time_column]) or \
                pd.to_numeric(raw[d.time_column], errors="coerce").notna().all() else "datetime"
            out[d.time_column] = convert(raw[d.time_column], kind, raw[ROW], path, d.time_column).values
        if d.group_column:
            out[d.group_column] = raw[d.group_column].values
        return out.reset_index(drop=True)

    def _split(self, cfg: RunConfig, frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], str]:
        from tunesmith.data.split import make_splits
        from tunesmith.data.split_by import grouped, time_ordered

        d, source = cfg.data, str(cfg.data.train)
        if d.max_train_rows and len(frames["train"]) > d.max_train_rows:
            frames["train"] = frames["train"].sample(d.max_train_rows, random_state=cfg.train.seed)
        given = [s for s in ("validation", "test") if s in frames]
        if len(given) == 2:
            return frames, "files"
        if d.time_column or d.group_column:
            if given:
                raise UserError(f"data.{given[0]}: with data.time_column or data.group_column give both validation "
                                "and test files, or neither (tunesmith then splits the training file)")
            if d.time_column:
                return time_ordered(frames["train"], d.time_column, d.validation_size, d.test_size, source), "time"
            return grouped(frames["train"], d.group_column, d.validation_size, d.test_size, cfg.train.seed,
                           source), "group"
        if self.regression:
            from sklearn.model_selection import train_test_split

            train, rest = frames["train"], dict(frames)
            if "test" not in rest:
                train, rest["test"] = train_test_split(train, test_size=d.test_size, random_state=cfg.train.seed)
            if "validation" not in rest:
                train, rest["validation"] = train_test_split(train, test_size=d.validation_size / (1 - d.test_size),
                                                             random_state=cfg.train.seed + 1)
            rest["train"] = train
            return {k: v.reset_index(drop=True) for k, v in rest.items()}, "random"
        return make_splits(frames["train"], frames.get("validation"), frames.get("test"), d.validation_size,
                           d.test_size, cfg.train.seed, source), "stratified"

    def audit(self, cfg: RunConfig, data: TaskData) -> tuple[TaskData, dict]:
        """Audit the splits; audit.on_issue=fix removes repeated evaluation rows and drops leaky columns."""
        from tunesmith.data.clean import apply_fixes
        from tunesmith.data.split import check_label_sets
        from tunesmith.data.tabular_audit import audit_table

        columns = data.data_report["columns"]
        report = audit_table(data.splits, columns, data.labels, cfg.data.time_column, cfg.train.seed)
        no_text_fixes = cfg.audit.model_copy(update={"mask_pii": False})
        splits, report["fixes"] = apply_fixes(dict(data.splits), report, no_text_fixes, cfg.train.seed)
        data_report = dict(data.data_report)
        if cfg.audit.on_issue == "fix":
            leaky = {r["column"] for f in report["findings"] if f["check"] in ("leaky_column", "time_orders_label")
                     for r in f["rows"]}
            if leaky:
                data_report["columns"] = [c for c in columns if c["name"] not in leaky]
                report["fixes"].append({"fix": "drop_leaky_columns", "rows": 0,
                                        "detail": f"columns dropped: {', '.join(sorted(leaky))}"})
                if not data_report["columns"]:
                    raise UserError("audit.on_issue=fix dropped every feature column as leaky; nothing left to learn")
        labels = data.labels if self.regression else check_label_sets(
            splits, {"train": str(cfg.data.train), "validation": str(cfg.data.validation), "test": str(cfg.data.test)})
        return TaskData(splits=splits, labels=labels, data_report=data_report), report

    def profile(self, data: TaskData) -> dict:
        train = data.splits["train"]
        out = {"rows": len(train), "features": len(data.data_report["columns"])}
        if self.regression:
            return {**out, "target_mean": float(train["label"].mean()), "target_std": float(train["label"].std())}
        return {**out, "label_counts": {str(k): int(v) for k, v in train["label"].value_counts().items()}}

    # -- training --------------------------------------------------------------------------
    def schema(self, cfg: RunConfig, data: TaskData) -> Schema:
        """Category levels from the training split (warm start: the source model's), the classes and the scored one."""
        columns = [Column(**c) for c in data.data_report["columns"]]
        if cfg.tabular.init_from is not None:
            source = Schema.from_json(json.loads((Path(cfg.tabular.init_from) / MODEL_DIR / SCHEMA).read_text()))
            kept = {c["name"] for c in data.data_report["columns"]}
            columns = [c for c in source.columns if c.name in kept]
            if len(columns) < len(source.columns):
                raise UserError("tabular.init_from: the audit dropped a column the source model uses; a warm start "
                                "needs every source feature (set audit.on_issue to fail or warn)")
        else:
            columns = fit_levels(columns, data.splits["train"])
        positive = None
        if len(data.labels) > 2:  # settings that only a binary target can use
            binary_only = (("eval.costs", cfg.eval.costs), ("tabular.positive_label", cfg.tabular.positive_label))
            for field, value in binary_only:
                if value is not None:
                    raise UserError(f"{field} = {value}: applies to a binary target; {cfg.data.label_column!r} has "
                                    f"{len(data.labels)} classes ({', '.join(data.labels[:5])})")
        if len(data.labels) == 2:
            counts = data.splits["train"]["label"].value_counts()
            positive = cfg.tabular.positive_label or min(data.labels, key=lambda l: (counts.get(l, 0), l))
            if positive not in data.labels:
                raise UserError(f"tabular.positive_label = {positive!r}: not a class of the target; classes: "
                                f"{', '.join(data.labels)}")
        return Schema(columns, cfg.data.label_column, list(data.labels), positive)

    def objective(self, schema: Schema) -> str:
        return "regression" if self.regression else "binary" if len(schema.labels) == 2 else "multiclass"

    def target(self, df: pd.DataFrame, schema: Schema) -> np.ndarray:
        """Model targets: numbers (regression), 1 for the positive class (binary), or class indices."""
        if self.regression:
            return df["label"].to_numpy(dtype=float)
        if len(schema.labels) == 2:
            return (df["label"] == schema.positive_label).to_numpy().astype(int)
        return df["label"].map({l: i for i, l in enumerate(schema.labels)}).to_numpy()

    def probabilities(self, raw: np.ndarray, schema: Schema) -> np.ndarray:
        """A model's output as one probability column per label (regression: the predictions)."""
        if self.regression or len(schema.labels) != 2:
            return raw
        pos = schema.labels.index(schema.positive_label)
        probs = np.empty((len(raw), 2))
        probs[:, pos], probs[:, 1 - pos] = raw, 1 - raw
        return probs

    def build(self, cfg: RunConfig, schema: Schema, y: np.ndarray, tabular=None):
        """The configured model, unfitted, and row weights for tabular.class_weight=balanced."""
        from tunesmith.models.gbdt import make_model

        t = tabular or cfg.tabular
        objective = self.objective(schema)
        pos_weight, weight = None, None
        if t.class_weight == "balanced" and not self.regression:
            if objective == "binary" and t.model != "logistic":
                pos_weight = float((y == 0).sum() / max(1, (y == 1).sum()))
            elif objective == "multiclass" and t.model != "logistic":
                counts = np.bincount(y, minlength=len(schema.labels)).astype(float)
                weight = (len(y) / (len(counts) * np.maximum(counts, 1)))[y]
        return make_model(t, objective, max(2, len(schema.labels)), cfg.train.seed, pos_weight), weight

    def fit(self, cfg: RunConfig, data: TaskData, run_dir: Path, callbacks=()) -> dict:
        """Train on train with early stopping on validation; write metrics.jsonl and model/ (model file, schema)."""
        from tunesmith.io import replace_dir
        from tunesmith.models.gbdt import load_model

        schema = self.schema(cfg, data)
        X = {s: encode(data.splits[s], schema) for s in ("train", "validation")}
        y = {s: self.target(data.splits[s], schema) for s in ("train", "validation")}
        model, weight = self.build(cfg, schema, y["train"])
        source = load_model(Path(cfg.tabular.init_from) / MODEL_DIR) if cfg.tabular.init_from else None
        records: list[dict] = []

        def on_round(step: int, losses: dict, predict_validation) -> None:
            if step % REPORT_EVERY == 0 or step == 1:
                records.append({"type": "train", "step": step, "loss": losses.get("train")})
                records.append({"type": "eval", "step": step, "loss": losses.get("validation")})
            if callbacks and step % REPORT_EVERY == 0:  # a search may prune the trial by boosting round
                scores = self._validation_metrics(y["validation"], self.probabilities(predict_validation(), schema),
                                                  schema)
                for callback in callbacks:
                    callback({"evals": step // REPORT_EVERY, "last_eval": scores})

        model.fit(X["train"], y["train"], X["validation"], y["validation"], weight, init_model=source,
                  on_round=on_round)
        atomic_write_json_lines(run_dir / "metrics.jsonl", records)
        tmp = run_dir / f".{MODEL_DIR}.tmp"
        tmp.mkdir(exist_ok=True)
        model.save(tmp)
        atomic_write_json(tmp / SCHEMA, schema.to_json())
        replace_dir(tmp, run_dir / MODEL_DIR)
        val = self.probabilities(model.predict(X["validation"]), schema)
        final = self._validation_metrics(y["validation"], val, schema)
        if not any(r["type"] == "eval" for r in records):  # no boosting rounds (linear model): report once
            for callback in callbacks:
                callback({"evals": 1, "last_eval": final})
        history = model.history_["validation"]
        rounds_trained = model.rounds_ - model.init_rounds_
        return {"model": cfg.tabular.model, "rounds": model.best_round_, "rounds_trained": rounds_trained,
                "init_rounds": model.init_rounds_, "best_step": model.best_round_,
                "global_step": model.best_round_, "epochs_completed": 1, "epochs_planned": 1,
                "stopped_early": bool(cfg.tabular.early_stopping_rounds)
                and rounds_trained < cfg.tabular.num_boost_round,
                "best_validation_loss": float(min(history)) if history else final["loss"],
                **{f"best_validation_{k}": v for k, v in final.items() if k != "loss"},
                "train_seconds": round(model.fit_seconds_, 3), "train_samples_per_second":
                    round(len(X["train"]) * max(1, rounds_trained) / max(model.fit_seconds_, 1e-9), 1),
                "features": schema.features}

    def _validation_metrics(self, y: np.ndarray, out: np.ndarray, schema: Schema) -> dict:
        from tunesmith.evaluate.metrics import classification_metrics
        from tunesmith.evaluate.tabular import rmse

        if self.regression:
            return {"loss": rmse(y, out) ** 2, "rmse": rmse(y, out)}
        idx = y if len(schema.labels) != 2 else np.where(y == 1, schema.labels.index(schema.positive_label),
                                                         1 - schema.labels.index(schema.positive_label))
        m = classification_metrics(idx, np.log(np.clip(out, 1e-12, None)), schema.labels)
        return {"loss": m["loss"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    # -- after training --------------------------------------------------------------------
    def finish(self, cfg: RunConfig, data: TaskData, prepared, accelerator, training: dict, run_dir: Path) -> dict:
        from tunesmith.tasks.tabular_finish import finish

        return finish(self, cfg, data, training, run_dir)


@register_task("tabular-regression")
class TabularRegression(TabularClassification):
    name: str
    regression = True


def source_config(run_dir: str | Path) -> RunConfig:
    """The resolved config of a finished tabular run (warm-start source)."""
    import yaml

    path = Path(run_dir)
    if not (path / MODEL_DIR / SCHEMA).is_file() or not (path / "config.yaml").is_file():
        raise UserError(f"tabular.init_from = {str(run_dir)!r}: not a finished tabular run folder (no config.yaml "
                        f"and {MODEL_DIR}/{SCHEMA})")
    return build_config(yaml.safe_load((path / "config.yaml").read_text()), source=str(path / "config.yaml"))


def atomic_write_json_lines(path: Path, records: list[dict]) -> None:
    from tunesmith.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def write_csv(path: Path, df: pd.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
