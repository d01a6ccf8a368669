"""Chat data layouts become conversations: a pure function of the rows and the sft settings."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tunesmith.config import SftConfig
from tunesmith.data.chat import conversations, mask_conversations, split_off
from tunesmith.data.load import ROW
from tunesmith.errors import UserError


def table(**columns) -> pd.DataFrame:
    df = pd.DataFrame(columns)
    df[ROW] = range(2, len(df) + 2)
    return df


def test_layouts_are_told_from_the_columns():
    alpaca = conversations(table(instruction=["Add", "Sub"], input=["1 2", None], output=["3", "x"]),
                           Path("a.csv"), SftConfig(system_prompt="Be brief."))
    assert alpaca["messages"][0] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Add\n\n1 2"}, {"role": "assistant", "content": "3"}]
    assert alpaca["messages"][1][1]["content"] == "Sub"  # no input: the instruction alone
    assert alpaca["text"][0] == "system: Be brief.\nuser: Add\n\n1 2\nassistant: 3"
    qa = conversations(table(q=["hi"], a=["hello"]), Path("q.csv"), SftConfig(prompt_column="q", response_column="a"))
    assert qa["messages"][0] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert list(qa[ROW]) == [2]
    with pytest.raises(UserError, match=r"q.csv: cannot tell the data layout from the columns \(q, a\)"):
        conversations(table(q=["hi"], a=["hello"]), Path("q.csv"), SftConfig())
    with pytest.raises(UserError, match=r"m.jsonl: line 3: message 1 has role 'bot'"):
        conversations(table(messages=['[{"role": "user", "content": "x"}]', '[{"role": "bot", "content": "y"}]']),
                      Path("m.jsonl"), SftConfig())


def test_masking_and_splitting_conversations():
    df = conversations(table(prompt=["mail me at ann@example.com", "hi"], response=["ok", "hello"]), Path("p.csv"),
                       SftConfig())
    masked, changed = mask_conversations(df)
    assert changed == 1 and "[EMAIL]" in masked["messages"][0][0]["content"] and "[EMAIL]" in masked["text"][0]
    keep, out = split_off(pd.concat([df] * 5, ignore_index=True), 0.2, 0, "test", "p.csv")
    assert (len(keep), len(out)) == (8, 2)
    with pytest.raises(UserError, match="p.csv: 1 conversations are too few to split off a test set"):
        split_off(df.iloc[:1], 0.1, 0, "test", "p.csv")
