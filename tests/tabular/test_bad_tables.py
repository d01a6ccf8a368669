"""Bad tables and settings end with one `error:` line naming the file, column or field, and exit code 2."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.tabular.tables import config, make_table
from tunesmith.cli import main


def _break_one_class(df):
    return df.assign(fraud="no")


def _break_missing_target(df):
    df.loc[[3, 9], "fraud"] = ""
    return df


def _break_mixed_column(df):
    df["x1"] = df["x1"].astype(object)
    df.loc[7, "x1"] = "n/a (see notes)"
    return df


@pytest.mark.parametrize("breaks, expected", [
    (_break_one_class, "t.csv: only one class ('no') in column data.label_column"),
    (_break_missing_target, "t.csv: 2 rows have no value in the target column 'fraud' (first at row 5, 11)"),
    (_break_mixed_column, "t.csv: column 'x1' holds numbers except 1 of 300 values (first at row 9: "
                          "'n/a (see notes)')"),
])
def test_bad_table_is_one_error_line(tmp_path, capsys, breaks, expected):
    breaks(make_table(300)).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(tmp_path / "t.csv", tmp_path / "runs")))
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_a_categorical_with_100k_levels_is_one_error_line(tmp_path, capsys):
    n = 100_000
    rng = np.random.default_rng(0)
    import pandas as pd

    pd.DataFrame({"card": [f"card-{i}" for i in range(n)], "amount": rng.random(n).round(3),
                  "fraud": np.where(rng.random(n) < 0.05, "yes", "no")}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(tmp_path / "t.csv", tmp_path / "runs")))
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "column 'card' has 100000 distinct values" in err[0] and "tabular.drop_columns" in err[0]


def test_costs_on_a_multiclass_target_name_the_field(tmp_path, capsys):
    make_table(300).assign(fraud=["a", "b", "c"] * 100).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(tmp_path / "t.csv", tmp_path / "runs")))
    assert main(["train", str(tmp_path / "c.yaml"), "eval.costs={fn: 5, fp: 1}"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "eval.costs = {'fn': 5.0, 'fp': 1.0}: applies to a binary target; 'fraud' has 3 " \
        "classes" in err[0], err


@pytest.mark.parametrize("override, expected", [
    ("eval.costs={fn: 5}", "eval.costs = {'fn': 5.0}: give both fn (a missed positive) and fp (a false alarm)"),
    ("data.group_column=city", "data.time_column and data.group_column: choose one split mode"),
    ("tabular.drop_columns=[nope]", "t.csv: no column 'nope' (tabular.drop_columns)"),
    ("tabular.model=catboost", "tabular.model = 'catboost'"),
    ("tabular.positive_label=maybe", "tabular.positive_label = 'maybe': not a class of the target"),
])
def test_bad_settings_name_the_field(tmp_path, capsys, override, expected):
    make_table(300).to_csv(tmp_path / "t.csv", index=False)
    cfg = config(tmp_path / "t.csv", tmp_path / "runs", data={"time_column": "signup"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), override]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
