"""Column kinds, conversion, datetime parts, unseen categories and the errors for bad columns
(tunesmith.data.tabular)."""
from __future__ import annotations

import pandas as pd
import pytest

from tunesmith.data.load import ROW, read_table
from tunesmith.data.tabular import Column, Schema, encode, fit_levels, infer_kind, type_columns, typed_frame
from tunesmith.errors import UserError


def _rows(values) -> tuple[pd.Series, pd.Series]:
    s = pd.Series(values)
    return s, pd.Series(range(2, len(s) + 2))


@pytest.mark.parametrize("values, kind", [
    (["1.5", "NA", "-3", "", "2e3"], "numeric"),
    (["yes", "No", "", "YES"], "boolean"),
    (["2024-01-03", "2024-02-29 13:00:00", "", "2023-12-31"], "datetime"),
    (["oslo", "lima", "", "12"], "categorical"),
])
def test_kinds_from_csv_strings(values, kind):
    assert infer_kind(*_rows(values), "t.csv", "c") == kind


def test_kinds_from_parquet_dtypes(tmp_path):
    df = pd.DataFrame({"flag": [True, False, True], "n": [1, 2, 3], "when": pd.to_datetime(["2024-01-01"] * 3),
                       "y": ["a", "b", "a"]})
    df.to_parquet(tmp_path / "t.parquet")
    table = read_table(tmp_path / "t.parquet")
    kinds = [infer_kind(table[c], table[ROW], "t", c) for c in ("flag", "n", "when", "y")]
    assert kinds == ["boolean", "numeric", "datetime", "categorical"]


def test_a_column_of_numbers_with_a_stray_word_is_one_error_naming_it():
    values = [str(i) for i in range(30)] + ["twelve"] + [str(i) for i in range(30)]
    with pytest.raises(UserError, match=r"t.csv: column 'amount' holds numbers except 1 of 61 values \(first at "
                                        r"row 32: 'twelve'\)"):
        infer_kind(*_rows(values), "t.csv", "amount")


def test_too_many_categories_stop_the_run_naming_the_setting():
    df = pd.DataFrame({"id": [f"c{i}" for i in range(100_000)], ROW: range(2, 100_002)})
    with pytest.raises(UserError, match=r"column 'id' has 100000 distinct values .*tabular.max_categories = 1000"):
        type_columns(df, ["id"], "t.csv", 1000)


def test_datetime_parts_and_unseen_categories_encode_as_documented():
    train = pd.DataFrame({"when": ["2024-03-05 14:30:00", "2023-12-31 00:00:00"], "city": ["oslo", "lima"],
                          ROW: [2, 3]})
    columns = [Column("when", "datetime"), Column("city", "categorical")]
    typed = typed_frame(train, columns, "t.csv")
    schema = Schema(fit_levels(columns, typed), "y")
    assert schema.features == ["when.year", "when.month", "when.day_of_week", "when.hour", "city"]
    new = typed_frame(pd.DataFrame({"when": ["2025-07-04 09:00:00"], "city": ["rome"], ROW: [2]}), columns, "n.csv")
    X = encode(new, schema)
    assert X.iloc[0, :4].tolist() == [2025.0, 7.0, 4.0, 9.0]  # a Friday, 9 o'clock
    assert X["f4"].cat.categories.tolist() == ["lima", "oslo"]
    assert X["f4"].isna().iloc[0]  # rome was never seen: missing, not an error


def test_midnight_only_dates_get_no_hour_feature():
    train = pd.DataFrame({"day": ["2024-03-05", "2024-03-06"], ROW: [2, 3]})
    columns = fit_levels([Column("day", "datetime")], typed_frame(train, [Column("day", "datetime")], "t"))
    assert columns[0].derived() == ["day.year", "day.month", "day.day_of_week"]
