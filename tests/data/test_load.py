from __future__ import annotations

import pandas as pd
import pytest

from tunesmith.data.load import ROW, labelled_rows, read_table
from tunesmith.errors import UserError


@pytest.fixture
def frame():
    return pd.DataFrame({"text": ["fine day", "bad day", "ok"], "label": ["pos", "neg", "pos"]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_formats_read_the_same_rows(tmp_path, frame, suffix):
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    rows, report = labelled_rows(read_table(path), path, "text", "label", drop_missing=False)
    assert rows["text"].tolist() == frame["text"].tolist()
    assert rows["label"].tolist() == frame["label"].tolist()
    assert report["dropped"] == 0


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty.csv: file is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "head.csv").write_text("text,label\n")
    with pytest.raises(UserError, match="header but no rows"):
        read_table(tmp_path / "head.csv")
    with pytest.raises(UserError, match="unknown file type '.xlsx'"):
        read_table(tmp_path / "x.xlsx")


def test_unknown_column_lists_the_columns(tmp_path, frame):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"no column 'category' \(data.label_column\); columns found: text, label"):
        labelled_rows(read_table(path), path, "text", "category", False)


def test_rows_without_text_or_label_are_counted_with_line_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,pos\n,neg\n\nbad,\nok,pos\n")
    with pytest.raises(UserError) as e:
        labelled_rows(read_table(path), path, "text", "label", False)
    msg = str(e.value)
    assert "3 rows lack text or label" in msg
    assert "1 blank, 1 without text, 1 without a label" in msg
    assert "line 3, 4, 5" in msg and "data.drop_missing=true" in msg
    rows, report = labelled_rows(read_table(path), path, "text", "label", True)
    assert rows["text"].tolist() == ["fine", "ok"] and rows[ROW].tolist() == [2, 6]
    assert report["dropped"] == 3 and report["blank_rows"] == 1


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\nfine,pos\ncaf\xe9 au lait,neg\n")
    with pytest.raises(UserError, match=r"d.csv: line 3: bytes .* not valid UTF-8"):
        read_table(path)


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": oops}\n')
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        read_table(path)


def test_real_banking77_blank_lines_and_missing_labels(needs_shared):
    path = needs_shared / "data" / "banking77_train.csv"
    with pytest.raises(UserError, match=r"banking77_train.csv: \d+ rows lack text or label"):
        labelled_rows(read_table(path), path, "text", "category", False)
    rows, report = labelled_rows(read_table(path), path, "text", "category", True)
    assert report["blank_rows"] >= 1 and report["missing_label"] >= 1
    assert len(rows) == report["rows_read"] - report["dropped"]
    assert rows["label"].nunique() == 77
