"""Tabular models behind one surface, following scikit-learn's contract (`fit` returns self; learned state ends
in `_`): LightGBM and XGBoost boosters (early stopping on validation, warm start from another booster) and a
regularised logistic / linear regression. Each saves in its ecosystem's format, never pickle: LightGBM's text
model, XGBoost's JSON, the linear model's coefficients as JSON; `load_model` reads any of them back.

Objectives: "binary" (predict gives P(positive), shape n), "multiclass" (n x k probabilities), "regression".
Inputs are `tunesmith.data.tabular.encode` matrices: float columns and pandas categoricals.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tunesmith.io import atomic_write_json

INFO = "model_info.json"  # which model, objective and rounds: written beside the model file
# after each boosting round: (round, {"train": loss, "validation": loss}, a function giving the validation
# predictions of the model so far, for metrics other than the loss)
OnRound = Callable[[int, dict, Callable[[], np.ndarray]], None]


class _Boosted:
    """The settings both boosting libraries take (scikit-learn style: learned state ends in `_`)."""

    def __init__(self, objective: str, n_classes: int = 2, params: dict | None = None, num_boost_round: int = 1000,
                 early_stopping_rounds: int | None = 50, seed: int = 0, threads: int | None = None):
        self.objective, self.n_classes, self.params = objective, n_classes, dict(params or {})
        self.num_boost_round, self.early_stopping_rounds = num_boost_round, early_stopping_rounds
        self.seed, self.threads = seed, threads


class LightGBMModel(_Boosted):
    file = "lightgbm.txt"

    def _params(self) -> dict:
        base = {"binary": {"objective": "binary", "metric": "binary_logloss"},
                "multiclass": {"objective": "multiclass", "metric": "multi_logloss", "num_class": self.n_classes},
                "regression": {"objective": "regression", "metric": "l2"}}[self.objective]
        return {**base, "verbosity": -1, "seed": self.seed, "deterministic": True, "force_row_wise": True,
                **({"num_threads": self.threads} if self.threads else {}), **self.params}

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray,
            weight: np.ndarray | None = None, init_model: "LightGBMModel | None" = None,
            on_round: OnRound | None = None) -> "LightGBMModel":
        import lightgbm as lgb

        tic = time.perf_counter()
        params = self._params()
        train = lgb.Dataset(X, label=y, weight=weight, free_raw_data=False)
        valid = lgb.Dataset(X_val, label=y_val, reference=train, free_raw_data=False)
        history: dict = {}
        callbacks = [lgb.record_evaluation(history)]
        if self.early_stopping_rounds:
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False))
        if on_round is not None:
            def report(env) -> None:
                losses = {d: v for d, m, v, _ in env.evaluation_result_list if m == params["metric"]}
                on_round(env.iteration + 1, losses, lambda: env.model.predict(X_val, num_iteration=env.iteration + 1))

            callbacks.append(report)
        # the initial booster's trees stay in the model; its predictions are the starting scores of training
        booster = lgb.train(params, train, self.num_boost_round, valid_sets=[train, valid],
                            valid_names=["train", "validation"], callbacks=callbacks,
                            init_model=init_model.booster_ if init_model is not None else None)
        self.booster_ = booster
        self.init_rounds_ = init_model.best_round_ if init_model is not None else 0
        self.best_round_ = int(booster.best_iteration or booster.current_iteration())
        self.rounds_ = int(booster.current_iteration())
        metric = params["metric"]
        self.history_ = {"train": history["train"][metric], "validation": history["validation"][metric]}
        self.fit_seconds_ = time.perf_counter() - tic
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster_.predict(X, num_iteration=self.best_round_))

    def importance(self) -> dict[str, list[float]]:
        """Total gain and split counts per feature (f0, f1, ... order)."""
        return {"gain": self.booster_.feature_importance("gain", iteration=self.best_round_).tolist(),
                "splits": self.booster_.feature_importance("split", iteration=self.best_round_).astype(float).tolist()}

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Mean absolute SHAP-style contribution per feature (LightGBM's own pred_contrib), summed over classes."""
        raw = np.asarray(self.booster_.predict(X, num_iteration=self.best_round_, pred_contrib=True))
        n_feat = X.shape[1]
        per_class = raw.reshape(len(X), -1, n_feat + 1)[:, :, :n_feat]
        return np.abs(per_class).mean(0).sum(0)

    def save(self, folder: Path) -> None:
        self.booster_.save_model(str(folder / self.file), num_iteration=self.best_round_)
        _info(folder, "lightgbm", self)

    @classmethod
    def load(cls, folder: Path, info: dict) -> "LightGBMModel":
        import lightgbm as lgb

        model = cls(info["objective"], info["n_classes"])
        model.booster_ = lgb.Booster(model_file=str(folder / cls.file))
        model.best_round_ = model.rounds_ = int(model.booster_.current_iteration())
        return model


class XGBoostModel(_Boosted):
    file = "xgboost.json"

    def _params(self) -> dict:
        base = {"binary": {"objective": "binary:logistic", "eval_metric": "logloss"},
                "multiclass": {"objective": "multi:softprob", "eval_metric": "mlogloss", "num_class": self.n_classes},
                "regression": {"objective": "reg:squarederror", "eval_metric": "rmse"}}[self.objective]
        return {**base, "tree_method": "hist", "seed": self.seed, "verbosity": 0,
                **({"nthread": self.threads} if self.threads else {}), **self.params}

    def fit(self, X, y, X_val, y_val, weight=None, init_model: "XGBoostModel | None" = None,
            on_round: OnRound | None = None) -> "XGBoostModel":
        import xgboost as xgb

        tic = time.perf_counter()
        params = self._params()
        train = xgb.DMatrix(X, label=y, weight=weight, enable_categorical=True)
        valid = xgb.DMatrix(X_val, label=y_val, enable_categorical=True)
        history: dict = {}
        metric = params["eval_metric"]
        callbacks = []
        if on_round is not None:
            class Report(xgb.callback.TrainingCallback):
                def after_iteration(self, model, epoch, evals_log) -> bool:
                    on_round(epoch + 1, {k: v[metric][-1] for k, v in evals_log.items()},
                             lambda: model.predict(valid, iteration_range=(0, epoch + 1)))
                    return False
            callbacks.append(Report())
        booster = xgb.train(params, train, self.num_boost_round, evals=[(train, "train"), (valid, "validation")],
                            early_stopping_rounds=self.early_stopping_rounds, evals_result=history,
                            verbose_eval=False, callbacks=callbacks,
                            xgb_model=init_model.booster_ if init_model is not None else None)
        self.booster_ = booster
        self.init_rounds_ = init_model.best_round_ if init_model is not None else 0
        self.rounds_ = int(booster.num_boosted_rounds())
        best = getattr(booster, "best_iteration", None)
        self.best_round_ = int(best) + 1 if self.early_stopping_rounds and best is not None else self.rounds_
        self.history_ = {"train": history["train"][metric], "validation": history["validation"][metric]}
        self.fit_seconds_ = time.perf_counter() - tic
        return self

    def predict(self, X) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(self.booster_.predict(xgb.DMatrix(X, enable_categorical=True),
                                                iteration_range=(0, self.best_round_)))

    def importance(self) -> dict[str, list[float]]:
        n = self.booster_.num_features()
        gain = self.booster_.get_score(importance_type="total_gain")
        splits = self.booster_.get_score(importance_type="weight")
        names = self.booster_.feature_names or [f"f{i}" for i in range(n)]
        return {"gain": [float(gain.get(f, 0.0)) for f in names], "splits": [float(splits.get(f, 0.0)) for f in names]}

    def contributions(self, X) -> np.ndarray:
        import xgboost as xgb

        raw = np.asarray(self.booster_.predict(xgb.DMatrix(X, enable_categorical=True), pred_contribs=True,
                                               iteration_range=(0, self.best_round_)))
        raw = raw.reshape(len(X), -1, X.shape[1] + 1)[:, :, : X.shape[1]]
        return np.abs(raw).mean(0).sum(0)

    def save(self, folder: Path) -> None:
        booster = self.booster_[: self.best_round_] if self.best_round_ < self.rounds_ else self.booster_
        booster.save_model(str(folder / self.file))
        _info(folder, "xgboost", self)

    @classmethod
    def load(cls, folder: Path, info: dict) -> "XGBoostModel":
        import xgboost as xgb

        model = cls(info["objective"], info["n_classes"])
        model.booster_ = xgb.Booster()
        model.booster_.load_model(str(folder / cls.file))
        model.best_round_ = model.rounds_ = int(model.booster_.num_boosted_rounds())
        return model


class LinearModel:
    """Logistic regression (classification) or ridge regression on one-hot categories and standardised numbers,
    missing numbers imputed with the training median plus a missing indicator."""
    file = "linear.json"

    def __init__(self, objective: str, n_classes: int = 2, c: float = 1.0, class_weight: str | None = None,
                 seed: int = 0):
        self.objective, self.n_classes, self.c = objective, n_classes, c
        self.class_weight, self.seed = class_weight, seed

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        cols = []
        for name, kind in self.layout_:
            if kind == "categorical":
                levels = self.levels_[name]
                codes = pd.Categorical(X[name].astype(object), categories=levels).codes
                cols.append((codes[:, None] == np.arange(len(levels))[None, :]).astype(float))
            else:
                v = X[name].to_numpy(dtype=float)
                gone = np.isnan(v)
                v = (np.where(gone, self.medians_[name], v) - self.means_[name]) / self.scales_[name]
                cols.append(np.c_[v, gone.astype(float)] if name in self.indicators_ else v[:, None])
        return np.hstack(cols) if cols else np.zeros((len(X), 0))

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val=None, y_val=None, weight=None, init_model=None,
            on_round=None) -> "LinearModel":
        from sklearn.linear_model import LogisticRegression, Ridge

        tic = time.perf_counter()
        self.layout_ = [(c, "categorical" if isinstance(X[c].dtype, pd.CategoricalDtype) else "numeric")
                        for c in X.columns]
        self.levels_ = {c: [str(v) for v in X[c].cat.categories] for c, k in self.layout_ if k == "categorical"}
        num = [c for c, k in self.layout_ if k == "numeric"]
        self.medians_ = {c: float(np.nan_to_num(np.nanmedian(X[c].to_numpy(dtype=float)))) if X[c].notna().any()
                         else 0.0 for c in num}
        filled = {c: X[c].fillna(self.medians_[c]).to_numpy(dtype=float) for c in num}
        self.means_ = {c: float(filled[c].mean()) for c in num}
        self.scales_ = {c: float(filled[c].std()) or 1.0 for c in num}
        self.indicators_ = [c for c in num if X[c].isna().any()]
        design = self._design(X)
        if self.objective == "regression":
            est = Ridge(alpha=1.0 / self.c).fit(design, y, sample_weight=weight)
            self.coef_, self.intercept_ = est.coef_[None, :], np.atleast_1d(est.intercept_)
        else:
            est = LogisticRegression(C=self.c, max_iter=2000, class_weight="balanced" if self.class_weight ==
                                     "balanced" else None, random_state=self.seed).fit(design, y, sample_weight=weight)
            self.coef_, self.intercept_ = est.coef_, est.intercept_
            self.classes_ = est.classes_.tolist()
        self.best_round_ = self.rounds_ = self.init_rounds_ = 0
        self.history_ = {"train": [], "validation": []}
        self.fit_seconds_ = time.perf_counter() - tic
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        z = self._design(X) @ self.coef_.T + self.intercept_
        if self.objective == "regression":
            return z[:, 0]
        if self.objective == "binary":
            p = 1 / (1 + np.exp(-z[:, 0]))
            return p if self.classes_ == [0, 1] else np.full(len(X), float(self.classes_[0]))
        e = np.exp(z - z.max(1, keepdims=True))
        probs = np.zeros((len(X), self.n_classes))
        probs[:, self.classes_] = e / e.sum(1, keepdims=True)
        return probs

    def importance(self) -> dict[str, list[float]]:
        return {}

    def save(self, folder: Path) -> None:
        atomic_write_json(folder / self.file, {
            "layout": self.layout_, "levels": self.levels_, "medians": self.medians_, "means": self.means_,
            "scales": self.scales_, "indicators": self.indicators_, "coef": self.coef_.tolist(),
            "intercept": np.asarray(self.intercept_).tolist(), "classes": getattr(self, "classes_", None),
            "c": self.c})
        _info(folder, "logistic", self)

    @classmethod
    def load(cls, folder: Path, info: dict) -> "LinearModel":
        s = json.loads((folder / cls.file).read_text())
        model = cls(info["objective"], info["n_classes"], s["c"])
        model.layout_ = [tuple(x) for x in s["layout"]]
        model.levels_, model.medians_, model.means_ = s["levels"], s["medians"], s["means"]
        model.scales_, model.indicators_ = s["scales"], s["indicators"]
        model.coef_, model.intercept_ = np.asarray(s["coef"]), np.asarray(s["intercept"])
        if s["classes"] is not None:
            model.classes_ = s["classes"]
        model.best_round_ = model.rounds_ = 0
        return model


MODELS = {"lightgbm": LightGBMModel, "xgboost": XGBoostModel, "logistic": LinearModel}


def _info(folder: Path, kind: str, model) -> None:
    atomic_write_json(folder / INFO, {"model": kind, "objective": model.objective, "n_classes": model.n_classes,
                                      "rounds": model.best_round_, "file": model.file})


def booster_params(kind: str, t, class_weight_pos: float | None = None) -> dict:
    """Library parameters from a TabularConfig (tree shape, shrinkage, sampling, regularisation)."""
    if kind == "lightgbm":
        params = {"learning_rate": t.learning_rate, "num_leaves": t.num_leaves, "max_depth": t.max_depth,
                  "min_child_samples": t.min_child_samples, "feature_fraction": t.feature_fraction,
                  "bagging_fraction": t.bagging_fraction, "bagging_freq": 1 if t.bagging_fraction < 1 else 0,
                  "lambda_l2": t.lambda_l2}
        if class_weight_pos:
            params["scale_pos_weight"] = class_weight_pos
        return params
    params = {"eta": t.learning_rate, "max_depth": 6 if t.max_depth < 0 else t.max_depth,
              "colsample_bytree": t.feature_fraction, "subsample": t.bagging_fraction, "lambda": t.lambda_l2 or 1.0}
    if class_weight_pos:
        params["scale_pos_weight"] = class_weight_pos
    return params


def make_model(t, objective: str, n_classes: int, seed: int, class_weight_pos: float | None = None):
    """The configured model (TabularConfig `t`), unfitted."""
    if t.model == "logistic":
        return LinearModel(objective, n_classes, t.logistic_c, t.class_weight, seed)
    return MODELS[t.model](objective, n_classes, booster_params(t.model, t, class_weight_pos), t.num_boost_round,
                           t.early_stopping_rounds, seed, t.threads)


def load_model(folder: str | Path):
    """A saved model (any kind) from a run's model/ folder."""
    folder = Path(folder)
    info = json.loads((folder / INFO).read_text())
    return MODELS[info["model"]].load(folder, info)
