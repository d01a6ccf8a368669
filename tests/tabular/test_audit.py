"""The tabular audit flags leaky columns, identifiers, a date that orders the target, and rows repeated across
splits; the gate stops the run on the blocking ones (tunesmith.data.tabular_audit via the task)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.tabular.tables import config, make_credit_table, make_table
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
    leaks = found["leakage_exact"]
    assert leaks["count"] > 0 and leaks["severity"] == "warning" and leaks["unlikely_by_chance"] == 0
    assert leaks["expected_by_chance"] > 0 and f"about {leaks['expected_by_chance']} chance repeats" in leaks["message"]


def _credit(tmp_path, df: pd.DataFrame) -> dict:
    return _audit(tmp_path, df, data={"label_column": "default"})["leakage_exact"]


# amount 0 for 40% of customers: the amounts are over half distinct, and the old rule blocked the table for
# that; for 60% they are not, and the old rule took `amount` for a coarse column (copies of rare amounts warned)
ZERO_SHARES = pytest.mark.parametrize("zero_share", [0.4, 0.6])


@ZERO_SHARES
def test_a_credit_table_whose_repeats_are_common_values_warns_with_the_expected_count(tmp_path, zero_share):
    """Issue 24: customers with amount 0 and the same coded levels share whole rows by chance; the old rule
    blocked the run because `amount` is nearly unique per row."""
    leaks = _credit(tmp_path, make_credit_table(zero_share=zero_share))
    assert leaks["count"] > 0 and leaks["severity"] == "warning" and leaks["unlikely_by_chance"] == 0
    assert {r["split"] for r in leaks["rows"]} <= {"validation", "test"}
    assert all(r["chance"] >= 0.01 for r in leaks["rows"])
    assert leaks["expected_by_chance"] > 0 and f"about {leaks['expected_by_chance']} chance repeats" in leaks["message"]
    assert 0.5 * leaks["count"] < leaks["expected_by_chance"] < 2 * leaks["count"]  # chance explains them


@ZERO_SHARES
def test_copied_rows_with_a_rare_value_and_a_repeated_id_block(tmp_path, zero_share):
    credit = make_credit_table(zero_share=zero_share)
    copies = pd.concat([credit, credit[credit["amount"] > 0].sample(10, random_state=1)], ignore_index=True)
    leaks = _credit(tmp_path, copies)
    assert leaks["severity"] == "blocking" and 1 <= leaks["unlikely_by_chance"] <= 10
    assert sum(r["chance"] < 0.01 for r in leaks["rows"]) == leaks["unlikely_by_chance"]
    assert "'amount'" in leaks["message"] and "occurs in no other earlier row" in leaks["message"]
    assert leaks["count"] > leaks["unlikely_by_chance"]  # the chance repeats of amount 0 are still listed

    # rows of amount 0 that only an id column tells apart: their repeats are copies
    ids = credit.assign(customer_id=np.arange(len(credit)) * 7 + 10001)
    ids = pd.concat([ids, ids[ids["amount"] == 0].sample(30, random_state=2)], ignore_index=True)
    leaks = _credit(tmp_path, ids)
    assert leaks["count"] > 0 and leaks["severity"] == "blocking"
    assert leaks["unlikely_by_chance"] == leaks["count"] and "'customer_id'" in leaks["message"]


def test_coded_columns_derived_from_one_another_are_judged_together(tmp_path):
    """As in ISLP's Caravan, where 43 columns come from the zip code: ten codes of one area, taken as independent,
    would make a whole-row repeat look far too rare for chance; their joint pattern is as common as the area."""
    rng = np.random.default_rng(3)
    area = rng.integers(0, 12, 600)
    df = pd.DataFrame({f"area_code_{i}": (area * (i + 1)) % (3 + i) for i in range(10)})
    df["owns_car"] = rng.choice(["yes", "no"], 600)
    df["fraud"] = np.where(rng.random(600) < 0.2 + 0.2 * (area < 3), "yes", "no")
    leaks = _audit(tmp_path, df)["leakage_exact"]
    assert leaks["count"] > 0 and leaks["severity"] == "warning"
    assert min(r["chance"] for r in leaks["rows"]) > 0.5


def test_the_executable_trains_on_a_table_whose_repeats_are_chance(tmp_path):
    """`tunesmith train` on the credit table: the old rule stopped it (exit 2); now it trains, and audit.json
    and the report carry the warning with the expected count."""
    from tests.test_cli_paths import results, tunesmith, write

    make_credit_table().to_csv(tmp_path / "credit.csv", index=False)
    cfg = config(tmp_path / "credit.csv", tmp_path / "runs", data={"label_column": "default"})
    tunesmith("train", str(write(tmp_path / "c.yaml", cfg)), cwd=tmp_path)
    run_dir = tmp_path / "runs" / "run"
    results(run_dir)
    leaks = next(f for f in json.loads((run_dir / "audit.json").read_text())["findings"]
                 if f["check"] == "leakage_exact")
    assert leaks["severity"] == "warning" and leaks["count"] > 0
    assert f"about {leaks['expected_by_chance']} chance repeats" in (run_dir / "report.html").read_text()
