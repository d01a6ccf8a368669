"""Tabular columns: what kind each column is, its values converted, datetime-derived features, and the
model matrix with fixed category levels (unseen categories become missing).

Pure functions over DataFrames; the learned part (`Schema`: kinds and training category levels) is
saved beside the model as JSON, so `predict` encodes new rows exactly as training did.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from tunesmith.data.load import ROW
from tunesmith.errors import UserError

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}  # cells read as missing (case-insensitive)
TRUE, FALSE = {"true", "yes", "y", "t"}, {"false", "no", "n", "f"}
KINDS = ("numeric", "boolean", "datetime", "categorical")
MIXED_SHARE = 0.9  # a column this share numbers (or dates) but not all is a data error, not a category
RESERVED = ("label", "sha256", ROW)  # names the pipeline gives its own columns
DATE_PARTS = ("year", "month", "day_of_week")


@dataclass
class Column:
    """One input column: its kind; category levels seen in training; datetime parts derived from it."""
    name: str
    kind: str
    levels: list[str] | None = None
    with_hour: bool = False  # datetime: an hour feature (some times are not midnight)

    def derived(self) -> list[str]:
        """Model features this column becomes."""
        if self.kind != "datetime":
            return [self.name]
        return [f"{self.name}.{part}" for part in DATE_PARTS + (("hour",) if self.with_hour else ())]


@dataclass
class Schema:
    """Feature columns in order, the target and its classes: all predict needs to encode new rows."""
    columns: list[Column]
    target: str
    labels: list[str] = field(default_factory=list)  # classes (classification); empty for regression
    positive_label: str | None = None  # binary: the class scored

    @property
    def features(self) -> list[str]:
        return [name for c in self.columns for name in c.derived()]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "categorical"]

    def to_json(self) -> dict:
        return {"target": self.target, "labels": self.labels, "positive_label": self.positive_label,
                "columns": [asdict(c) for c in self.columns], "features": self.features}

    @classmethod
    def from_json(cls, obj: dict) -> "Schema":
        return cls([Column(**c) for c in obj["columns"]], obj["target"], obj.get("labels", []),
                   obj.get("positive_label"))


def missing(series: pd.Series) -> pd.Series:
    """True where a cell is missing: NaN/None, or a blank or NA-like string."""
    as_text = series.astype(str).str.strip().str.lower()
    return series.isna() | as_text.isin(MISSING)


def _mixed(series: pd.Series, ok: pd.Series, rows: pd.Series, path: str, name: str, what: str) -> UserError:
    bad = ~ok
    first = series[bad].iloc[0]
    return UserError(f"{path}: column {name!r} holds {what} except {int(bad.sum())} of {len(series)} values (first "
                     f"at row {rows[bad].iloc[0]}: {first!r}); fix them, leave them empty (missing), or list the "
                     "column in tabular.drop_columns")


def infer_kind(series: pd.Series, rows: pd.Series, path: str, name: str) -> str:
    """numeric, boolean, datetime or categorical, from the dtype or the non-missing values. A column that is
    almost all numbers (or dates) with a few other values is a data error (one line naming a bad value)."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    present = ~missing(series)
    values, rows = series[present].astype(str).str.strip(), rows[present]
    if values.empty:
        return "numeric"  # all missing: kept as a numeric column of NaN (the model ignores it)
    lower = values.str.lower()
    if lower.isin(TRUE | FALSE).all():
        return "boolean"
    numbers = pd.to_numeric(values, errors="coerce").notna()
    if numbers.all():
        return "numeric"
    if numbers.mean() >= MIXED_SHARE:
        raise _mixed(values, numbers, rows, path, name, "numbers")
    if values.str.match(r"^\d{4}-\d{2}-\d{2}").mean() >= MIXED_SHARE:
        dates = pd.to_datetime(values, errors="coerce", format="ISO8601").notna()
        if dates.all():
            return "datetime"
        raise _mixed(values, dates, rows, path, name, "dates (YYYY-MM-DD...)")
    return "categorical"


def convert(series: pd.Series, kind: str, rows: pd.Series, path: str, name: str) -> pd.Series:
    """Values of one column as its kind: float (numeric, boolean 0/1), datetime64, or str; NaN/NaT when missing.
    A value that does not fit the kind (e.g. in a test file) is one error line."""
    gone = missing(series)
    if kind == "categorical":
        return series.astype(str).str.strip().where(~gone, np.nan).astype(object)
    if kind == "datetime":
        out = pd.to_datetime(series.where(~gone, None), errors="coerce", format="ISO8601") \
            if not pd.api.types.is_datetime64_any_dtype(series) else series
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_convert("UTC").dt.tz_localize(None)
        ok = out.notna() | gone
        what = "dates (YYYY-MM-DD...)"
    elif kind == "boolean":
        if pd.api.types.is_bool_dtype(series):
            return series.astype(float)
        lower = series.astype(str).str.strip().str.lower()
        out = pd.Series(np.where(lower.isin(TRUE), 1.0, np.where(lower.isin(FALSE), 0.0, np.nan)), index=series.index)
        ok = lower.isin(TRUE | FALSE) | gone
        what = "true/false or yes/no"
    else:
        out = pd.to_numeric(series.where(~gone, None), errors="coerce").astype(float)
        ok = out.notna() | gone
        what = "numbers"
    if not ok.all():
        raise _mixed(series[~gone], ok[~gone], rows[~gone], path, name, what)
    return out


def check_columns(df: pd.DataFrame, path: str, target: str, excluded: dict[str, str]) -> list[str]:
    """The feature columns of a table: every column but the target and the excluded ones (name -> config field,
    each must exist). Returns them in file order."""
    columns = [c for c in df.columns if c != ROW]
    if target not in columns:
        raise UserError(f"{path}: no column {target!r} (data.label_column, the target); columns found: "
                        f"{', '.join(map(str, columns))}")
    for name, where in excluded.items():
        if name not in columns:
            raise UserError(f"{path}: no column {name!r} ({where}); columns found: {', '.join(map(str, columns))}")
    features = [c for c in columns if c != target and c not in excluded]
    clash = [c for c in features if c in RESERVED]
    if clash:
        raise UserError(f"{path}: column {clash[0]!r} is a name tunesmith uses for its own columns; rename it "
                        "(or list it in tabular.drop_columns)")
    if not features:
        raise UserError(f"{path}: no feature columns left besides the target {target!r}")
    return features


def type_columns(df: pd.DataFrame, features: list[str], path: str, max_categories: int) -> list[Column]:
    """The kind of each feature column from a training table; too many categories stop the run."""
    columns = []
    for name in features:
        kind = infer_kind(df[name], df[ROW], path, name)
        col = Column(str(name), kind)
        if kind == "categorical":
            n = df[name][~missing(df[name])].astype(str).str.strip().nunique()
            if n > max_categories:
                raise UserError(f"{path}: column {name!r} has {n} distinct values in {len(df)} rows, more than "
                                f"tabular.max_categories = {max_categories} (an identifier or free text?); list it "
                                "in tabular.drop_columns, or raise tabular.max_categories")
        columns.append(col)
    return columns


def typed_frame(df: pd.DataFrame, columns: list[Column], path: str) -> pd.DataFrame:
    """The feature columns converted to their kinds, plus ROW and a content hash per row (`sha256`)."""
    out = pd.DataFrame({c.name: convert(df[c.name], c.kind, df[ROW], path, c.name) for c in columns},
                       index=df.index)
    out[ROW] = df[ROW].values
    return out


def row_hash(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """A content hash of each row's feature values (row identity for fingerprints and duplicate checks)."""
    cells = df[columns].astype(object)
    # missing cells hash as empty (pandas may keep NaN through astype(str))
    text = cells.where(cells.notna(), "").map(str).agg("\x1f".join, axis=1) if columns else pd.Series([""] * len(df))
    return [hashlib.sha256(t.encode()).hexdigest()[:16] for t in text]


def fit_levels(columns: list[Column], train: pd.DataFrame) -> list[Column]:
    """Category levels (sorted) from the training split only, and whether datetimes carry a time of day."""
    out = []
    for c in columns:
        if c.kind == "categorical":
            c = Column(c.name, c.kind, levels=sorted(map(str, train[c.name].dropna().unique())))
        elif c.kind == "datetime":
            t = train[c.name].dropna()
            c = Column(c.name, c.kind, with_hour=bool(len(t) and (t.dt.normalize() != t).any()))
        out.append(c)
    return out


def encode(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The model matrix: floats, date parts, and pandas categoricals with the schema's levels (a category unseen
    in training becomes missing, which the models handle). Columns are named f0, f1, ... in schema order."""
    parts = []
    for c in schema.columns:
        values = df[c.name]
        if c.kind == "categorical":
            known = values.astype(object).where(values.isin(set(c.levels or [])), None)  # unseen -> missing
            parts.append(pd.Categorical(known, categories=c.levels))
        elif c.kind == "datetime":
            d = pd.to_datetime(values)
            parts += [d.dt.year.astype(float), d.dt.month.astype(float), d.dt.day_of_week.astype(float)]
            if c.with_hour:
                parts.append(d.dt.hour.astype(float))
        else:
            parts.append(pd.to_numeric(values, errors="coerce").astype(float))
    out = pd.DataFrame({f"f{i}": np.asarray(p) if not isinstance(p, pd.Categorical) else p
                        for i, p in enumerate(parts)}, index=df.index)
    return out


def unseen_categories(df: pd.DataFrame, schema: Schema) -> dict[str, int]:
    """Per categorical column, how many rows hold a value never seen in training (encoded as missing)."""
    out = {}
    for c in schema.columns:
        if c.kind == "categorical":
            v = df[c.name].dropna().astype(str)
            n = int((~v.isin(set(c.levels or []))).sum())
            if n:
                out[c.name] = n
    return out


def describe(columns: list[Column], frames: dict[str, pd.DataFrame]) -> dict:
    """For data_report.json: each column's kind, missing share in training, levels and derived features."""
    train = frames["train"]
    return {c.name: {"kind": c.kind, "missing_share": round(float(train[c.name].isna().mean()), 4),
                     **({"levels": len(c.levels or [])} if c.kind == "categorical" else {}),
                     **({"derived": c.derived()} if c.kind == "datetime" else {})} for c in columns}
