"""Splits for rows that are not exchangeable: in time order (validation and test after training), and by group
(every row of one customer in one split). Stratified random splits are data.split.make_splits."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tunesmith.data.load import ROW
from tunesmith.errors import UserError


def _sizes(n: int, validation_size: float, test_size: float, source: str, unit: str) -> tuple[int, int]:
    n_test, n_val = max(1, round(n * test_size)), max(1, round(n * validation_size))
    if n - n_test - n_val < 1:
        raise UserError(f"{source}: {n} {unit} are too few to split off validation and test sets")
    return n_val, n_test


def time_ordered(df: pd.DataFrame, column: str, validation_size: float, test_size: float,
                 source: str) -> dict[str, pd.DataFrame]:
    """Oldest rows train, then validation, then the newest test. Rows sharing a timestamp stay in one split,
    so every validation time is after every training time, and every test time after every validation time."""
    if df[column].isna().any():
        row = df.loc[df[column].isna(), ROW].iloc[0]
        raise UserError(f"{source}: row {row}: no value in data.time_column {column!r}; a time-ordered split needs "
                        "a time for every row")
    times = np.sort(df[column].to_numpy())
    n_val, n_test = _sizes(len(df), validation_size, test_size, source, "rows")
    # boundaries at distinct times: the first time of the test block, then of the validation block
    test_from = times[len(df) - n_test]
    val_from = times[len(df) - n_test - n_val]
    train = df[df[column] < val_from]
    validation = df[(df[column] >= val_from) & (df[column] < test_from)]
    test = df[df[column] >= test_from]
    if len(train) == 0 or len(validation) == 0:
        raise UserError(f"{source}: data.time_column {column!r} has too few distinct times to split off "
                        "validation and test after training")
    return {k: v.sort_values(column, kind="stable").reset_index(drop=True)
            for k, v in (("train", train), ("validation", validation), ("test", test))}


def grouped(df: pd.DataFrame, column: str, validation_size: float, test_size: float, seed: int,
            source: str) -> dict[str, pd.DataFrame]:
    """A seeded random assignment of whole groups to test, validation and train (sizes in groups)."""
    keys = df[column].astype(str).where(df[column].notna(), None)
    if keys.isna().any():
        row = df.loc[keys.isna(), ROW].iloc[0]
        raise UserError(f"{source}: row {row}: no value in data.group_column {column!r}")
    groups = np.array(sorted(keys.unique()))
    n_val, n_test = _sizes(len(groups), validation_size, test_size, source, f"groups of {column!r}")
    order = np.random.default_rng(seed).permutation(len(groups))
    test_g, val_g = set(groups[order[:n_test]]), set(groups[order[n_test:n_test + n_val]])
    split = keys.map(lambda k: "test" if k in test_g else "validation" if k in val_g else "train")
    return {name: df[split == name].reset_index(drop=True) for name in ("train", "validation", "test")}
