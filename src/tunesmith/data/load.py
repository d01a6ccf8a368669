"""Read labelled tables (CSV, TSV, JSONL, Parquet) and check their columns and rows.

Every problem becomes one UserError line naming the file, the row and what was expected.
Row numbers are the ones a user sees in an editor: for CSV/TSV the line number (header = 1),
for JSONL the line number, for Parquet the 1-based row.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tunesmith.errors import UserError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
ROW = "__row__"  # column holding the user-visible row number


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a file into a DataFrame of strings with a ROW column; blank lines stay as empty rows."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unknown file type {path.suffix!r}; expected one of "
                        f"{', '.join(sorted(FORMATS))}")
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty; expected a header row and labelled rows")
    if fmt == "parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a damaged file
            raise UserError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from None
        df[ROW] = range(1, len(df) + 1)
    else:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise UserError(f"{path}: line {line}: bytes {raw[err.start:err.start + 4]!r} are not valid "
                            "UTF-8; re-save the file as UTF-8") from None
        df = _read_jsonl(path, text) if fmt == "jsonl" else _read_delimited(path, text, fmt)
    if len(df) == 0:
        raise UserError(f"{path}: file has a header but no rows")
    return df


def _read_delimited(path: Path, text: str, fmt: str) -> pd.DataFrame:
    import io

    try:
        df = pd.read_csv(io.StringIO(text), sep="\t" if fmt == "tsv" else ",", dtype=str,
                         keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: file is empty; expected a header row and labelled rows") from None
    except pd.errors.ParserError as err:
        raise UserError(f"{path}: not a valid {fmt.upper()} file: {str(err).strip()}") from None
    # pandas turns blank lines into all-empty rows (kept, so row numbers match the file) and
    # drops a trailing newline; line number = index + 2 when no field spans lines.
    df[ROW] = range(2, len(df) + 2)
    return df


def _read_jsonl(path: Path, text: str) -> pd.DataFrame:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            records.append({ROW: number})
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}: line {number}: expected a JSON object, found {type(obj).__name__}")
        obj[ROW] = number
        records.append(obj)
    return pd.DataFrame.from_records(records)


def blank(series: pd.Series) -> pd.Series:
    """True where a cell is missing or only whitespace."""
    return series.isna() | series.astype(str).str.strip().eq("")


def _where(path: Path) -> str:
    return "line" if FORMATS.get(path.suffix.lower()) != "parquet" else "row"


def select_columns(df: pd.DataFrame, path: str | Path, text_column: str, label_column: str) -> pd.DataFrame:
    """The text and label columns (renamed `text`, `label`) and the row number; unknown columns are named."""
    columns = [c for c in df.columns if c != ROW]
    for role, name in (("text_column", text_column), ("label_column", label_column)):
        if name not in columns:
            raise UserError(f"{path}: no column {name!r} (data.{role}); columns found: {', '.join(map(str, columns))}")
    return pd.DataFrame({"text": df[text_column], "label": df[label_column], ROW: df[ROW]})


def labelled_rows(df: pd.DataFrame, path: str | Path, text_column: str, label_column: str,
                  drop_missing: bool) -> tuple[pd.DataFrame, dict]:
    """Keep the text and label columns as clean strings; rows missing either are an error
    (naming how many and where) unless drop_missing, in which case they are dropped and counted."""
    path = Path(path)
    out = select_columns(df, path, text_column, label_column)
    blank_text, blank_label = blank(out["text"]), blank(out["label"])
    blank_line = blank_text & blank_label
    bad = blank_text | blank_label
    report = {"file": str(path), "rows_read": int(len(df)), "blank_rows": int(blank_line.sum()),
              "missing_text": int((blank_text & ~blank_line).sum()),
              "missing_label": int((blank_label & ~blank_line).sum()), "dropped": 0}
    if bad.any():
        first = ", ".join(str(r) for r in out.loc[bad, ROW].head(5))
        what = (f"{report['blank_rows']} blank, {report['missing_text']} without text, "
                f"{report['missing_label']} without a label")
        if not drop_missing:
            raise UserError(f"{path}: {int(bad.sum())} rows lack text or label ({what}; first at {_where(path)} "
                            f"{first}); fix them or set data.drop_missing=true to drop them")
        report["dropped"] = int(bad.sum())
        out = out.loc[~bad]
    out = out.assign(text=out["text"].astype(str), label=out["label"].astype(str).str.strip())
    if out.empty:
        raise UserError(f"{path}: no labelled rows left after dropping rows without text or label")
    return out.reset_index(drop=True), report
