"""Templates shared by most rows are set aside before near-duplicate checks: instruction data whose
prompts all start with one instruction line is not a pile of near-leaks, a real near-copy still is."""
from __future__ import annotations

import random

import pandas as pd

from tunesmith.config import AuditConfig
from tunesmith.data.audit import audit_splits, check_near, check_near_conversations
from tunesmith.data.load import ROW
from tunesmith.data.templates import shared_prefix, shared_suffix, strip_shared

INSTRUCTION = ("Below is a customer review of a restaurant. Read it carefully and answer with exactly one word, "
               "positive or negative, that describes its sentiment.")
WORDS = ["soup", "fries", "staff", "waiter", "salad", "bread", "music", "table", "view", "coffee", "cake", "wine",
         "lovely", "cold", "slow", "kind", "rude", "fresh", "stale", "loud", "quiet", "warm", "tasty", "bland"]
GOOD = {"lovely", "kind", "fresh", "quiet", "warm", "tasty"}


def reviews(n: int, seed: int) -> list[str]:
    """n distinct short reviews (3 to 5 words): most of each prompt is the instruction."""
    rng, out = random.Random(seed), {}
    while len(out) < n:
        text = " ".join(rng.sample(WORDS, rng.randint(3, 5)))
        out.setdefault(text, None)
    return list(out)


def conversation(review: str) -> list[dict]:
    answer = "positive" if len(GOOD & set(review.split())) * 2 >= len(review.split()) - 2 else "negative"
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{review}"}, {"role": "assistant", "content": answer}]


def chat_frames(texts: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
    """SFT audit frames: conversations, their plain rendering and the row numbers."""
    frames = {}
    for split, reviews_ in texts.items():
        msgs = [conversation(r) for r in reviews_]
        frames[split] = pd.DataFrame({"messages": msgs, "text": ["\n".join(f"{m['role']}: {m['content']}" for m in c)
                                                                 for c in msgs],
                                      "label": "conversation", ROW: range(2, len(msgs) + 2)})
    return frames


def templated_splits(plant: bool) -> dict[str, list[str]]:
    texts = reviews(400, seed=7)
    splits = {"train": texts[:300], "test": texts[300:]}
    if plant:  # a test row that copies a training review with one character changed
        splits["train"][17] = "the soup was lovely and the waiter kind but the cake was stale"
        splits["test"][40] = "the soup was lovely and the waiter kind, but the cake was stale"
    return splits


def test_shared_prefix_and_suffix_stop_between_words():
    texts = ["Answer: the cat sat", "Answer: the cow ran", "Answer: the cab", "no template here"]
    assert shared_prefix(texts) == "Answer: the "  # "Answer: the c" would cut into cat, cow, cab
    assert shared_suffix(["is it ok?", "was it ok?", "fine"]) == " it ok?"
    stripped, template = strip_shared(texts)
    assert stripped == ["cat sat", "cow ran", "cab", "no template here"] and template["prefix"] == "Answer: the "
    assert shared_prefix(["same", "other"]) == "" and shared_prefix(["x"]) == ""


def test_templated_instructions_without_a_leak_raise_no_near_leak():
    frames = chat_frames(templated_splits(plant=False))
    raw = check_near(frames, 0.8, compare={s: df["text"] for s, df in frames.items()})
    assert next(f for f in raw if f["check"] == "leakage_near")["count"] >= 20  # the whole text: over-fires
    found = {f["check"]: f for f in check_near_conversations(frames, 0.8)}
    assert found["leakage_near"]["count"] == 0 and found["near_duplicates"]["count"] == 0
    # the instruction, and the answer most rows give
    assert found["leakage_near"]["template"] == {"user": {"prefix": INSTRUCTION + "\n\n"},
                                                 "assistant": {"prefix": "positive"}}


def test_a_real_near_leak_inside_templated_data_is_still_flagged_with_both_texts():
    frames = chat_frames(templated_splits(plant=True))
    leak = {f["check"]: f for f in check_near_conversations(frames, 0.8)}["leakage_near"]
    assert leak["severity"] == "blocking" and leak["count"] == 1
    pair = leak["rows"][0]
    assert (pair["split"], pair["row"], pair["matches"]) == ("test", 42, {"split": "train", "row": 19})
    assert pair["text"] == "the soup was lovely and the waiter kind, but the cake was stale\nnegative"
    assert pair["text_of_match"] == "the soup was lovely and the waiter kind but the cake was stale\nnegative"
    assert f"{len(INSTRUCTION) + 2}-character prefix of user turns" in leak["message"]


def classification_frames(plant: bool) -> dict[str, pd.DataFrame]:
    return {s: pd.DataFrame({"text": [f"{INSTRUCTION}\n\nReview: {r}" for r in texts],
                             "label": [conversation(r)[1]["content"] for r in texts],
                             ROW: range(2, len(texts) + 2)}) for s, texts in templated_splits(plant).items()}


def test_templated_text_classification_rows_compare_what_varies():
    report = audit_splits(classification_frames(plant=True), AuditConfig(label_errors=False))
    leak = next(f for f in report["findings"] if f["check"] == "leakage_near")
    assert [(r["row"], r["matches"]["row"]) for r in leak["rows"]] == [(42, 19)]
    assert leak["rows"][0]["text"] == "the soup was lovely and the waiter kind, but the cake was stale"
    assert next(f for f in report["findings"] if f["check"] == "near_duplicates")["count"] == 0


def test_the_audit_command_shows_both_texts_of_a_flagged_pair(tmp_path, capsys, monkeypatch):
    from tunesmith.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # rich folds cells to the terminal width
    for split, df in classification_frames(plant=True).items():
        df.drop(columns=[ROW]).to_csv(tmp_path / f"{split}.csv", index=False)
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--no-label-errors",
                 "--output", str(tmp_path / "audit.json")]) == 1
    out = capsys.readouterr().out
    assert out.index("flagged pairs") > out.index("data audit")
    row = next(line for line in out[out.index("flagged pairs"):].splitlines() if "test:42" in line)
    assert "leakage near" in row and "train:19" in row
    assert "the waiter kind, but the cake was stale" in row and "the waiter kind but the cake was stale" in row
