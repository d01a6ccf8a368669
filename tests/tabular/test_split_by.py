"""Time-ordered and grouped splits (tunesmith.data.split_by)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunesmith.data.load import ROW
from tunesmith.data.split_by import grouped, time_ordered
from tunesmith.errors import UserError


def _frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60, size=n), unit="D")  # many ties
    return pd.DataFrame({"when": when, "customer": rng.integers(0, 40, size=n).astype(str),
                         "label": rng.choice(["a", "b"], size=n), ROW: range(2, n + 2)})


def test_validation_and_test_come_after_training_in_time_and_ties_stay_together():
    s = time_ordered(_frame(), "when", 0.2, 0.2, "t.csv")
    assert s["train"]["when"].max() < s["validation"]["when"].min()
    assert s["validation"]["when"].max() < s["test"]["when"].min()
    assert sum(len(v) for v in s.values()) == 200
    assert abs(len(s["test"]) - 40) <= 10  # about the share asked for, moved to a time boundary


def test_no_customer_lands_in_two_splits():
    s = grouped(_frame(), "customer", 0.2, 0.2, 0, "t.csv")
    groups = {k: set(v["customer"]) for k, v in s.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert len(groups["test"]) == 8 and sum(len(v) for v in s.values()) == 200


def test_a_row_without_a_time_is_one_error():
    df = _frame()
    df.loc[5, "when"] = pd.NaT
    with pytest.raises(UserError, match=r"t.csv: row 7: no value in data.time_column 'when'"):
        time_ordered(df, "when", 0.2, 0.2, "t.csv")
