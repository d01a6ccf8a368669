"""Fixes for what the audit found, each opt-in and recorded: rows in, rows (and a record) out."""
from __future__ import annotations

import pandas as pd

from tunesmith.config import AuditConfig
from tunesmith.data.load import ROW


def _finding(report: dict, check: str) -> dict:
    return next((f for f in report["findings"] if f["check"] == check), {"rows": []})


def drop_rows(frames: dict[str, pd.DataFrame], rows: list[dict]) -> tuple[dict[str, pd.DataFrame], int]:
    """The frames without the given rows ({"split", "row"} as in audit findings), and how many were dropped."""
    by_split: dict[str, set] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["row"])
    out, n = {}, 0
    for split, df in frames.items():
        mask = df[ROW].isin(by_split.get(split, set()))
        n += int(mask.sum())
        out[split] = df.loc[~mask].reset_index(drop=True)
    return out, n


def apply_fixes(frames: dict[str, pd.DataFrame], report: dict, cfg: AuditConfig,
                seed: int) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """Apply the configured fixes; on_issue=fix also removes leaks and conflicting duplicates."""
    fixes = []
    fix_blocking = cfg.on_issue == "fix"

    def record(name: str, rows: int, detail: str) -> None:
        fixes.append({"fix": name, "rows": rows, "detail": detail})

    if cfg.remove_leaks or fix_blocking:
        leaked = _finding(report, "leakage_exact")["rows"] + _finding(report, "leakage_near")["rows"]
        frames, n = drop_rows(frames, leaked)
        record("remove_leaks", n, "validation/test rows that duplicate or nearly duplicate an earlier split")
    if cfg.drop_conflicting or fix_blocking:
        frames, n = drop_rows(frames, _finding(report, "conflicting_duplicates")["rows"])
        record("drop_conflicting", n, "every copy of a text that carries different labels")
    if cfg.drop_duplicates:
        frames, n = drop_rows(frames, _finding(report, "exact_duplicates")["rows"])
        record("drop_duplicates", n, "exact duplicates within a split (first copy kept)")
    if cfg.mask_pii:
        from tunesmith.data.pii import mask_pii

        n = 0
        for split, df in frames.items():
            masked = df["text"].astype(str).map(mask_pii)
            n += int((masked != df["text"]).sum())
            frames[split] = df.assign(text=masked)
        record("mask_pii", n, "e-mail addresses, phone and card numbers replaced by [EMAIL], [PHONE], [CARD]")
    if cfg.balance == "oversample":
        train = frames["train"]
        counts = train["label"].value_counts()
        extra = [train[train["label"] == label].sample(counts.max() - n, replace=True, random_state=seed)
                 for label, n in counts.items() if n < counts.max()]
        if extra:
            frames["train"] = pd.concat([train, *extra], ignore_index=True)
        record("oversample", sum(len(e) for e in extra), "rare-class training rows repeated up to the largest class")
    return frames, fixes
