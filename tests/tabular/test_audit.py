"""The tabular audit flags leaky columns, identifiers, a date that orders the target, and rows repeated across
splits; the gate stops the run on the blocking ones (tunesmith.data.tabular_audit via the task)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.tabular.tables import config, make_table
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.tasks import get_task


def _audit(tmp_path, df: pd.DataFrame, **sections) -> dict:
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    cfg = build_config(config(path, tmp_path / "runs", **sections))
    task = get_task(cfg.task)
    _, report = task.audit(cfg, task.load_data(cfg))
    return {f["check"]: f for f in report["findings"]}


def _flagged(finding: dict) -> list[str]:
    return [r["column"] for r in finding["rows"]]


def test_clean_table_has_no_blocking_finding(tmp_path):
    found = _audit(tmp_path, make_table(400))
    assert [k for k, f in found.items() if f["severity"] == "blocking"] == []
    assert found["missing_values"]["shares"]["x2"] > 0


def test_leaky_columns_identifiers_and_ordering_dates_are_flagged(tmp_path):
    df = make_table(400)
    rng = np.random.default_rng(1)
    fraud = (df["fraud"] == "yes").to_numpy()
    df["chargeback"] = np.where(fraud, "filed", "none")  # a category known only after the outcome
    df["refund"] = (fraud * 100 + rng.random(len(df))).round(3)  # a number known only after the outcome
    df["txn_id"] = np.arange(len(df)) * 7 + 1000  # unique per row
    df["closed"] = (pd.Timestamp("2025-01-01") + pd.to_timedelta(np.where(fraud, 100, 0) + rng.integers(0, 50, len(df)),
                                                                 unit="D")).strftime("%Y-%m-%d")
    found = _audit(tmp_path, df)
    assert sorted(_flagged(found["leaky_column"])) == ["chargeback", "refund"]
    assert found["leaky_column"]["severity"] == "blocking"
    assert _flagged(found["time_orders_label"]) == ["closed"]
    assert _flagged(found["identifier_column"]) == ["txn_id"]
    assert found["leaky_column"]["single_column_scores"]["x1"] < 0.99  # a real feature is not flagged


def test_rows_repeated_across_splits_block_the_run_and_fix_removes_them(tmp_path):
    df = make_table(400)
    df = pd.concat([df, df.iloc[:40], df.iloc[:40]], ignore_index=True)  # 40 rows three times each
    found = _audit(tmp_path, df)
    leaks = found["leakage_exact"]
    assert leaks["severity"] == "blocking" and leaks["count"] > 0
    assert all(r["split"] in ("validation", "test") for r in leaks["rows"])
    path = tmp_path / "t.csv"
    cfg = build_config(config(path, tmp_path / "runs"))
    task = get_task(cfg.task)
    with pytest.raises(UserError, match="leakage_exact"):
        from tunesmith.data.audit import gate

        _, report = task.audit(cfg, task.load_data(cfg))
        gate(report, cfg.audit.on_issue, "audit.json")
    fixed_cfg = build_config(config(path, tmp_path / "runs", audit={"on_issue": "fix"}))
    data, report = task.audit(fixed_cfg, task.load_data(fixed_cfg))
    train = set(data.splits["train"]["sha256"])
    assert not train & set(data.splits["test"]["sha256"]) and report["fixes"][0]["rows"] == leaks["count"]


def test_repeats_in_a_table_of_coarse_columns_are_a_warning(tmp_path):
    rng = np.random.default_rng(2)  # coded columns: customers share whole rows by chance (as in ISLP's Caravan)
    df = pd.DataFrame({"age_band": rng.integers(1, 6, 400), "region": rng.choice(["n", "s", "e"], 400)})
    df["fraud"] = np.where(rng.random(400) < 0.3 + 0.1 * (df["region"] == "n"), "yes", "no")
    found = _audit(tmp_path, df)
    assert found["leakage_exact"]["count"] > 0 and found["leakage_exact"]["severity"] == "warning"
    assert "every column is coarse" in found["leakage_exact"]["message"]
