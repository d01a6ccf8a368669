"""Chat / instruction data: rows in any of the supported layouts become conversations.

A conversation is a list of {role, content} messages. The layouts: `messages` (a column of chat
turns), `alpaca` (instruction, optional input, output) and `prompt-response` (two named columns).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.config import SftConfig
from tunesmith.data.load import ROW, blank
from tunesmith.errors import UserError

ROLES = ("system", "user", "assistant")


def cell_messages(value, where: str) -> list[dict]:
    """One cell (a list, or its JSON text) as checked {role, content} messages; `where` names the row."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{where}: messages are not a JSON list of {{role, content}}") from None
    if not isinstance(value, (list, tuple, np.ndarray)) or not len(value):
        raise UserError(f"{where}: expected a non-empty list of {{role, content}} messages, found "
                        f"{type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise UserError(f"{where}: message {i + 1} is not an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise UserError(f"{where}: message {i + 1} has role {m['role']!r}; expected one of {', '.join(ROLES)}")
        out.append({"role": m["role"], "content": "" if m["content"] is None else str(m["content"])})
    return out


def data_format(columns: list[str], path: Path, settings: SftConfig) -> str:
    """The layout of a table: sft.format, or with auto, the one its columns fit."""
    s = settings
    if s.format != "auto":
        return s.format
    if s.messages_column in columns:
        return "messages"
    if {"instruction", "output"} <= set(columns):
        return "alpaca"
    if {s.prompt_column, s.response_column} <= set(columns):
        return "prompt-response"
    raise UserError(f"{path}: cannot tell the data layout from the columns ({', '.join(map(str, columns))}); "
                    f"expected a {s.messages_column!r} column of chat turns, instruction/input/output "
                    f"columns, or {s.prompt_column!r} and {s.response_column!r} (sft.prompt_column, "
                    "sft.response_column)")


def conversations(df: pd.DataFrame, path: Path, settings: SftConfig) -> pd.DataFrame:
    """The rows of one file as conversations (column `messages`), with `text` (a plain rendering, for
    the audit) and the row number. The layout comes from sft.format or, with auto, from the columns."""
    s = settings
    columns = [c for c in df.columns if c != ROW]
    fmt = data_format(columns, path, s)
    need = {"messages": [s.messages_column], "alpaca": ["instruction", "output"],
            "prompt-response": [s.prompt_column, s.response_column]}[fmt]
    for col in need:
        if col not in columns:
            raise UserError(f"{path}: no column {col!r} (sft.format {fmt}); columns found: "
                            f"{', '.join(map(str, columns))}")
    where = "line" if path.suffix.lower() != ".parquet" else "row"
    used = need + (["input"] if fmt == "alpaca" and "input" in columns else [])
    missing = {c: blank(df[c]).to_numpy() for c in used}

    def text(col: str, i: int) -> str:  # a cell as text; missing or blank cells are ''
        return "" if col not in missing or missing[col][i] else str(df[col].iat[i])

    rows = []
    for i, row in enumerate(df[ROW]):
        if fmt == "messages":
            value = df[s.messages_column].iat[i]
            msgs = [] if missing[s.messages_column][i] else cell_messages(value, f"{path}: {where} {row}")
        elif fmt == "alpaca":
            prompt = text("instruction", i) + (f"\n\n{text('input', i)}" if text("input", i) else "")
            msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text("output", i)}]
        else:
            msgs = [{"role": "user", "content": text(s.prompt_column, i)},
                    {"role": "assistant", "content": text(s.response_column, i)}]
        if s.system_prompt and msgs and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": s.system_prompt}, *msgs]
        rows.append({"messages": msgs, ROW: int(row)})
    out = pd.DataFrame(rows, columns=["messages", ROW])
    out["text"] = out["messages"].map(plain_text)
    out["label"] = "conversation"  # one class: the shared audit checks need a label column
    return out


def plain_text(messages: list[dict]) -> str:
    """A conversation as `role: content` lines (what the text audit checks compare)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def split_off(df: pd.DataFrame, size: float, seed: int, what: str, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random share `size` of the conversations split off as the `what` set: (kept, split off)."""
    from sklearn.model_selection import train_test_split

    n_out = max(1, round(len(df) * size))
    if n_out >= len(df):
        raise UserError(f"{source}: {len(df)} conversations are too few to split off a {what} set; give data.{what} "
                        "as a file")
    keep, out = train_test_split(df, test_size=n_out, random_state=seed)
    return keep.reset_index(drop=True), out.reset_index(drop=True)


def mask_conversations(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """E-mail addresses, phone and card numbers masked in every message; returns the rows and how many changed."""
    from tunesmith.data.pii import mask_pii

    masked = df["messages"].map(lambda ms: [{**m, "content": mask_pii(m["content"])} for m in ms])
    changed = int((masked.map(plain_text) != df["text"]).sum())
    return df.assign(messages=masked, text=masked.map(plain_text)), changed
