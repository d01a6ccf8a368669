"""The audit finds planted problems in real text, and the gate stops or fixes a run."""
from __future__ import annotations

import html
import json
import random

import pandas as pd
import pytest

from tests.conftest import make_rows, tiny_config
from tunesmith.config import AuditConfig, build_config
from tunesmith.data.audit import audit_files, audit_splits
from tunesmith.data.clean import apply_fixes
from tunesmith.data.load import ROW
from tunesmith.errors import UserError


def rows_of(report: dict, check: str) -> list[dict]:
    return next(f for f in report["findings"] if f["check"] == check)["rows"]


def frames_with_rows(**frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {k: v.reset_index(drop=True).assign(**{ROW: range(2, len(v) + 2)}) for k, v in frames.items()}


@pytest.mark.e2e
def test_planted_problems_in_real_bbc_news_are_found(tmp_path, monkeypatch):
    from tunesmith.demo import bbc_news_csv

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    rng = random.Random(0)
    df = pd.read_csv(bbc_news_csv()).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, test = df.iloc[:1700].copy(), df.iloc[1700:2100].copy()
    labels = sorted(df["label"].unique())
    picks = rng.sample(range(1700), 15 + 15 + 10 + 85)
    exact_src, near_src, leak_src, flip = picks[:15], picks[15:30], picks[30:40], picks[40:]
    exact = train.iloc[exact_src].assign(text=lambda d: d["text"].str.upper().str.replace(" ", "  ", n=3))

    def edit(text: str) -> str:
        words = text.split()
        del words[5], words[10]
        words[20] = "changed"
        return " ".join(words)

    near = train.iloc[near_src].assign(text=lambda d: d["text"].map(edit))
    leaks = train.iloc[leak_src].assign(text=lambda d: " " + d["text"].str.lower())
    for i in flip:
        train.iloc[i, train.columns.get_loc("label")] = rng.choice([l for l in labels if l != train.iloc[i]["label"]])
    train = pd.concat([train, exact, near], ignore_index=True)
    test = pd.concat([test, leaks], ignore_index=True)
    frames = frames_with_rows(train=train, test=test)
    report = audit_splits(frames, AuditConfig(), seed=0)

    exact_rows = {r["row"] for r in rows_of(report, "exact_duplicates")}
    planted_exact = {1700 + k + 2 for k in range(15)}
    assert planted_exact <= exact_rows
    leak_rows = {r["row"] for r in rows_of(report, "leakage_exact") if r["split"] == "test"}
    planted_leaks = {400 + k + 2 for k in range(10)}
    assert planted_leaks <= leak_rows
    near_pairs = {(r["row"], r["matches"]["row"]) for r in rows_of(report, "near_duplicates")}
    planted_near = {(1715 + k + 2, src + 2) for k, src in enumerate(near_src)}
    found_near = len(planted_near & near_pairs) / len(planted_near)
    assert found_near >= 0.9
    flagged = {r["row"] for r in rows_of(report, "label_errors")}
    flipped = {i + 2 for i in flip}
    precision = len(flagged & flipped) / max(1, len(flagged))
    recall = len(flagged & flipped) / len(flipped)
    print(f"near-dups found {found_near:.2f}; label errors precision {precision:.2f} recall {recall:.2f}; "
          f"seconds {report['seconds']}")
    assert precision >= 0.6 and recall >= 0.6
    assert {"leakage_exact"} <= set(report["blocking"])


def test_exact_duplicates_conflicts_and_leaks_on_small_data():
    train = pd.DataFrame({"text": ["Card lost", "card  LOST", "where is my card", "Where is my card?", "refund please",
                                   "refund please"], "label": ["lost", "lost", "arrival", "arrival", "refund", "lost"]})
    test = pd.DataFrame({"text": ["CARD lost", "new question here"], "label": ["lost", "refund"]})
    report = audit_splits(frames_with_rows(train=train, test=test), AuditConfig(label_errors=False))
    assert [(r["row"], r["duplicate_of"]) for r in rows_of(report, "exact_duplicates")] == [(3, 2), (7, 6)]
    assert sorted(r["row"] for r in rows_of(report, "conflicting_duplicates")) == [6, 7]
    assert [(r["split"], r["row"], r["matches"]["row"]) for r in rows_of(report, "leakage_exact")] == [("test", 2, 2)]
    assert set(report["blocking"]) == {"conflicting_duplicates", "leakage_exact"}
    fixed, fixes = apply_fixes(frames_with_rows(train=train, test=test), report,
                               AuditConfig(on_issue="fix", drop_duplicates=True), seed=0)
    assert fixed["test"]["text"].tolist() == ["new question here"]
    assert fixed["train"]["text"].tolist() == ["Card lost", "where is my card", "Where is my card?"]
    assert {f["fix"]: f["rows"] for f in fixes} == {"remove_leaks": 1, "drop_conflicting": 2, "drop_duplicates": 1}


def test_oversampling_and_masking_fixes():
    train = pd.DataFrame({"text": [f"text {i} mail me a{i}@x.org" for i in range(12)], "label": ["a"] * 9 + ["b"] * 3})
    report = audit_splits(frames_with_rows(train=train), AuditConfig(label_errors=False))
    assert len(rows_of(report, "personal_data")) == 12
    fixed, _ = apply_fixes(frames_with_rows(train=train), report, AuditConfig(mask_pii=True, balance="oversample"), 0)
    assert fixed["train"]["label"].value_counts().to_dict() == {"a": 9, "b": 9}
    assert fixed["train"]["text"].str.contains("[EMAIL]", regex=False).all()


def test_mojibake_and_missing_values_in_a_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nnice cafÃ© here,pos\n,neg\n\nfine,\nok day,pos\nbad day,neg\n", encoding="utf-8")
    report = audit_files(str(path), cfg=AuditConfig(label_errors=False))
    assert [r["row"] for r in rows_of(report, "mojibake")] == [2]
    assert [(r["row"], r["problem"]) for r in rows_of(report, "missing_values")] == [
        (3, "missing text"), (4, "blank row"), (5, "missing label")]
    assert "missing_values" in report["blocking"]


def test_real_banking77_blank_lines_and_missing_labels_by_row(needs_shared):
    path = needs_shared / "data" / "banking77_train.csv"
    report = audit_files(str(path), label_column="category", cfg=AuditConfig(label_errors=False))
    missing = rows_of(report, "missing_values")
    lines = path.read_text(encoding="utf-8").splitlines()
    blank = [r["row"] for r in missing if r["problem"] == "blank row"]
    no_label = [r["row"] for r in missing if r["problem"] == "missing label"]
    no_text = [r["row"] for r in missing if r["problem"] == "missing text"]
    assert blank == [i + 1 for i, line in enumerate(lines) if not line.strip()]  # every blank line, no other
    assert no_text == [i + 1 for i, line in enumerate(lines) if line.startswith(",")]
    assert no_label == [1293, 4485, 7614] and len(missing) == len(blank) + 5
    assert all(lines[r - 1].strip() and (lines[r - 1].rstrip().endswith(",") or "," not in lines[r - 1])
               for r in no_label)


def leaky_config(tiny_model, tmp_path, **audit) -> dict:
    train = make_rows(160, seed=1)
    test = pd.concat([make_rows(30, seed=9), train.iloc[:6]], ignore_index=True)  # 6 rows leak
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = tiny_config(tiny_model, tmp_path / "train.csv", tmp_path / "runs", epochs=2)
    cfg["data"]["test"] = str(tmp_path / "test.csv")
    cfg["audit"] = {"label_errors": False, **audit}
    return cfg


def test_a_run_on_leaked_data_stops_and_names_the_leak(tiny_model, tmp_path):
    from tunesmith.run import fine_tune

    cfg = leaky_config(tiny_model, tmp_path)
    with pytest.raises(UserError) as e:
        fine_tune(build_config(cfg))
    msg = str(e.value)
    test_rows = json.loads((tmp_path / "runs" / "run" / "audit.json").read_text())
    exact = [r for r in rows_of(test_rows, "leakage_exact") if r["split"] == "test"]
    assert f"{len(exact)} evaluation rows duplicate a row of an earlier split (leakage_exact)" in msg
    assert len(exact) >= 6
    assert "audit.on_issue=fix" in msg and "--force" in msg
    assert json.loads((tmp_path / "runs" / "run" / "status.json").read_text())["status"] == "failed"


def test_on_issue_fix_removes_the_leaks_and_trains(tiny_model, tmp_path):
    from tunesmith.run import fine_tune

    run = fine_tune(build_config(leaky_config(tiny_model, tmp_path, on_issue="fix")))
    audit = json.loads((run.path / "audit.json").read_text())
    removed = next(f for f in audit["fixes"] if f["fix"] == "remove_leaks")["rows"]
    leaked = len(rows_of(audit, "leakage_exact")) + len(rows_of(audit, "leakage_near"))
    assert removed == leaked >= 6
    splits = json.loads((run.path / "splits.json").read_text())
    assert splits["test"]["rows"] == 36 - removed  # the fingerprint is of the cleaned split
    page = (run.path / "report.html").read_text()
    assert "Data audit" in page and "Flagged pairs" in page
    from tunesmith.data.audit import flagged_pairs

    pairs = flagged_pairs(audit)
    assert len(pairs) >= 5 and all(f"<td>{p['row']}</td><td>{html.escape(p['text'])}</td><td>{p['matches']}</td>"
                                   f"<td>{html.escape(p['text_of_match'])}</td>" in page for p in pairs)


def test_audit_command_exit_codes(tmp_path):
    from tunesmith.cli import main

    make_rows(60).to_csv(tmp_path / "clean.csv", index=False)
    assert main(["audit", str(tmp_path / "clean.csv"), "--output", str(tmp_path / "a.json"), "--no-label-errors"]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["blocking"] == []
    test = make_rows(60).iloc[:5]
    test.to_csv(tmp_path / "test.csv", index=False)
    assert main(["audit", str(tmp_path / "clean.csv"), "--test", str(tmp_path / "test.csv"),
                 "--output", str(tmp_path / "b.json"), "--no-label-errors"]) == 1
    assert "leakage_exact" in json.loads((tmp_path / "b.json").read_text())["blocking"]
