"""Data audit: what is wrong with the rows before any compute is spent on them.

`audit_splits(frames, cfg)` takes split name -> DataFrame (columns text, label and the user-visible
row number) and returns a JSON-ready report: one finding per check, with its severity, count,
the affected rows (split and row number as the user sees them) and a few examples.
Blocking findings (leakage, conflicting duplicates, unseen labels, missing values) stop a run
unless `audit.on_issue` says otherwise; see `gate` and `tunesmith.data.clean.apply_fixes`.
"""
from __future__ import annotations

import time
import unicodedata
from collections import Counter
from typing import Callable

import numpy as np
import pandas as pd

from tunesmith.config import AuditConfig
from tunesmith.data.load import ROW, blank
from tunesmith.errors import UserError

BLOCKING, WARNING, INFO = "blocking", "warning", "info"
MAX_EXAMPLES = 5
SPLIT_ORDER = ("train", "validation", "test")


def normalize(text: str) -> str:
    """Compare texts after unicode (NFKC), case and whitespace normalisation."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def finding(check: str, severity: str, rows: list[dict], message: str, examples: list[dict] | None = None,
            **extra) -> dict:
    """One check's entry in the report: severity 'ok' when nothing was found (info findings keep theirs)."""
    return {"check": check, "severity": severity if rows or severity == INFO else "ok", "count": len(rows),
            "message": message, "rows": rows, "examples": (examples or rows)[:MAX_EXAMPLES], **extra}


def check_missing(frames: dict[str, pd.DataFrame]) -> dict:
    rows = []
    for split, df in frames.items():
        t, l = blank(df["text"]), blank(df["label"])
        for kind, mask in (("blank row", t & l), ("missing text", t & ~l), ("missing label", l & ~t)):
            rows += [{"split": split, "row": int(r), "problem": kind} for r in df.loc[mask, ROW]]
    rows.sort(key=lambda r: (SPLIT_ORDER.index(r["split"]), r["row"]))
    kinds = Counter(r["problem"] for r in rows)
    return finding("missing_values", BLOCKING, rows, ", ".join(f"{n} {k}s" for k, n in kinds.items())
                    or "no blank rows, missing texts or missing labels")


def complete(df: pd.DataFrame) -> pd.DataFrame:
    return df.loc[~(blank(df["text"]) | blank(df["label"]))]


def check_exact(frames: dict[str, pd.DataFrame], key_column: str | None = None) -> list[dict]:
    """Exact duplicates within a split, duplicates whose labels disagree, and rows shared across splits.
    Rows are compared by their normalised text, or by `key_column` (e.g. a hash of an image's pixels)."""
    dups, conflicts, leaks = [], [], []
    first_seen: dict[str, dict[str, tuple[int, str]]] = {}
    what = "text" if key_column is None else "content"
    for split in [s for s in SPLIT_ORDER if s in frames]:
        df = frames[split]
        keys = df["text"].map(normalize) if key_column is None else df[key_column]
        seen: dict[str, tuple[int, str]] = {}
        labels_of: dict[str, set] = {}
        for key, row, label, text in zip(keys, df[ROW], df["label"], df["text"]):
            labels_of.setdefault(key, set()).add(label)
            if key in seen:
                dups.append({"split": split, "row": int(row), "duplicate_of": seen[key][0], "label": label})
            else:
                seen[key] = (int(row), label)
            for earlier, index in first_seen.items():
                if key in index:
                    leaks.append({"split": split, "row": int(row), "matches": {"split": earlier, "row": index[key][0]},
                                  "label": label, "text": str(text)[:200]})
                    break
        conflicting = {k for k, labs in labels_of.items() if len(labs) > 1}
        conflicts += [{"split": split, "row": int(r), "label": l, "labels": sorted(labels_of[k])}
                      for k, r, l in zip(keys, df[ROW], df["label"]) if k in conflicting]
        first_seen[split] = seen
    n_groups = len({(c["split"], tuple(c["labels"])) for c in conflicts})
    return [
        finding("exact_duplicates", WARNING, dups, f"{len(dups)} rows repeat an earlier row of the same split "
                 + ("(after case, whitespace and unicode normalisation)" if key_column is None else "(same pixels)")),
        finding("conflicting_duplicates", BLOCKING, conflicts, f"{len(conflicts)} rows share their {what} with rows "
                 f"that carry a different label ({n_groups} label sets)"),
        finding("leakage_exact", BLOCKING, leaks, f"{len(leaks)} evaluation rows also appear in an earlier split "
                 "(train -> validation -> test): scores on them measure memory, not generalisation"),
    ]


def _shingles(text: str, k: int = 5) -> set[str]:
    t = normalize(text)
    return {t[i:i + k] for i in range(max(1, len(t) - k + 1))}


def check_near(frames: dict[str, pd.DataFrame], threshold: float, num_perm: int = 128, seed: int = 1,
               compare: dict[str, pd.Series] | None = None, template: dict | None = None) -> list[dict]:
    """Near-duplicates by MinHash LSH over character 5-grams, verified by exact Jaccard similarity.

    `compare` holds, per split, the text compared for each row (default: the text without the prefix
    and suffix most rows share, see tunesmith.data.templates); `template` is what was set aside.
    Rows with nothing left to compare are skipped, and exact copies are check_exact's. Each pair
    carries both compared texts, so a reader can judge it without opening the files."""
    if compare is None:
        from tunesmith.data.templates import varying_text

        compare, template = varying_text({s: df["text"] for s, df in frames.items()})
    docs = [(split, int(row), str(text), label, str(original)) for split in SPLIT_ORDER if split in frames
            for row, text, label, original in zip(frames[split][ROW], compare[split], frames[split]["label"],
                                                  frames[split]["text"])]
    docs = [d for d in docs if normalize(d[2])]
    pairs = _similar_pairs([d[2] for d in docs], [normalize(d[4]) for d in docs], threshold, num_perm, seed)
    within, leaks = [], []
    order = {s: n for n, s in enumerate(SPLIT_ORDER)}
    for i, j, sim in pairs:
        a, b = sorted((docs[i], docs[j]), key=lambda d: (order[d[0]], d[1]))
        pair = {"split": b[0], "row": b[1], "matches": {"split": a[0], "row": a[1]}, "similarity": round(sim, 3),
                "label": b[3], "label_of_match": a[3], "text": b[2][:300], "text_of_match": a[2][:300]}
        (within if a[0] == b[0] else leaks).append(pair)
    how = f"Jaccard >= {threshold} on character 5-grams" + _template_note(template or {})
    extra = {"template": template} if template else {}
    return [
        finding("near_duplicates", WARNING, within, f"{len(within)} pairs of rows in the same split are near-"
                f"duplicates ({how})", **extra),
        finding("leakage_near", BLOCKING, leaks, f"{len(leaks)} evaluation rows nearly duplicate a row of an "
                f"earlier split ({how})", **extra),
    ]


def _template_note(template: dict) -> str:
    """' once ... is set aside' for a template {"prefix", "suffix"} or, in chats, {role: {"prefix", "suffix"}}."""
    by_role = template if template and not {"prefix", "suffix"} & set(template) else {"": template}
    parts = [f"the {len(text)}-character {kind}" + (f" of {role} turns" if role else "")
             for role, t in by_role.items() for kind, text in t.items() if text]
    if not parts:
        return ""
    return f", once {' and '.join(parts)} most rows share {'are' if len(parts) > 1 else 'is'} set aside"


def _similar_pairs(texts: list[str], keys: list[str], threshold: float, num_perm: int,
                   seed: int) -> list[tuple[int, int, float]]:
    """Index pairs (i < j) whose 5-gram Jaccard similarity reaches the threshold, skipping equal keys."""
    from datasketch import MinHash, MinHashLSH

    sets = [_shingles(t) for t in texts]
    hashes = MinHash.bulk([[s.encode() for s in sh] for sh in sets], num_perm=num_perm, seed=seed)
    # a lower LSH threshold catches pairs whose MinHash estimate falls just under the real similarity
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.15), num_perm=num_perm)
    for i, h in enumerate(hashes):
        lsh.insert(i, h)
    out = []
    for i, h in enumerate(hashes):
        for j in lsh.query(h):
            if j <= i or keys[i] == keys[j]:
                continue
            sim = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
            if sim >= threshold:
                out.append((i, j, sim))
    return out


def check_near_conversations(frames: dict[str, pd.DataFrame], threshold: float) -> list[dict]:
    """check_near for chat data (column `messages`): turns compared without the template most turns
    of their role share (an instruction line, a fixed system prompt), role tags left out."""
    from tunesmith.data.templates import varying_conversation_text

    compare, templates = varying_conversation_text(frames)
    return check_near(frames, threshold, compare=compare, template=templates)


def check_label_errors(train: pd.DataFrame, seed: int) -> dict:
    """Out-of-fold TF-IDF + logistic regression probabilities, fed to cleanlab's confident learning."""
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    counts = train["label"].value_counts()
    folds = int(min(5, counts.max()))
    usable = train[train["label"].isin(counts[counts >= max(folds, 2)].index)]
    if usable["label"].nunique() < 2 or len(usable) < 20:
        return finding("label_errors", INFO, [], "not checked: too few rows per class for out-of-fold predictions")
    labels = sorted(usable["label"].unique())
    y = usable["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    # Unigrams, weakly regularised: as accurate as bigrams here and several times faster (bench/RESULTS.md).
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2 if len(usable) >= 200 else 1),
                          LogisticRegression(max_iter=1000, C=10.0))
    probs = cross_val_predict(model, usable["text"].astype(str).tolist(), y, cv=StratifiedKFold(
        folds, shuffle=True, random_state=seed), method="predict_proba")
    # n_jobs=1: cleanlab forks a multiprocessing pool otherwise, and a pool forked from a process that runs
    # threads (torch, the serving loop) hung once in the test suite (a worker blocked on an inherited queue lock)
    issues = find_label_issues(y, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    rows = [{"split": "train", "row": int(usable[ROW].iloc[i]), "label": labels[y[i]],
             "suggested": labels[int(probs[i].argmax())], "label_probability": round(float(probs[i, y[i]]), 4),
             "text": str(usable["text"].iloc[i])[:200]} for i in issues]
    skipped = len(train) - len(usable)
    return finding("label_errors", WARNING, rows, f"{len(rows)} training rows are likely mislabelled "
                    f"(confident learning on {folds}-fold out-of-fold predictions"
                    + (f"; {skipped} rows of classes with < {folds} rows not checked)" if skipped else ")"))


def check_classes(frames: dict[str, pd.DataFrame]) -> list[dict]:
    counts = frames["train"]["label"].value_counts()
    ratio = float(counts.max() / counts.min())
    tiny = [{"label": l, "rows": int(n)} for l, n in counts.items() if n < 5]
    known = set(counts.index)
    unseen = [{"split": s, "row": int(r), "label": l} for s in ("validation", "test") if s in frames
              for r, l in zip(frames[s][ROW], frames[s]["label"]) if l not in known]
    severity = WARNING if ratio > 10 or tiny else INFO
    return [
        finding("class_balance", severity, tiny if tiny else ([{"ratio": ratio}] if ratio > 10 else []),
                 f"{len(counts)} classes; largest/smallest = {ratio:.1f}"
                 + (f"; {len(tiny)} classes have fewer than 5 training rows" if tiny else ""),
                 counts={str(k): int(v) for k, v in counts.items()}),
        finding("unseen_labels", BLOCKING, unseen, f"{len(unseen)} evaluation rows carry labels that never appear "
                 f"in training: {sorted({u['label'] for u in unseen})[:10]}" if unseen else "every evaluation label "
                 "appears in training"),
    ]


def check_lengths(frames: dict[str, pd.DataFrame], tokenizer=None, max_length: int | None = None) -> dict:
    words = {s: df["text"].astype(str).str.split().str.len() for s, df in frames.items()}
    q1, q3 = np.percentile(words["train"], [25, 75])
    high = q3 + 3 * (q3 - q1) + 1
    rows = [{"split": s, "row": int(r), "words": int(w)} for s, w in words.items()
            for r, w in zip(frames[s][ROW], w) if w > high or w == 0]
    extra = {"words": {s: {"median": float(w.median()), "p95": float(w.quantile(0.95)), "max": int(w.max())}
                       for s, w in words.items()}}
    msg = f"{len(rows)} rows are length outliers (more than {high:.0f} words, or no words)"
    severity = INFO
    if tokenizer is not None and max_length:
        n_tok = [len(ids) for ids in tokenizer(frames["train"]["text"].astype(str).tolist())["input_ids"]]
        share = float(np.mean([n > max_length for n in n_tok]))
        extra["truncated_share"] = round(share, 4)
        msg += f"; {share:.1%} of training texts exceed max_length {max_length} tokens and will be truncated"
        severity = WARNING if share > 0.1 else INFO
    return finding("lengths", severity, rows, msg, **extra)


def check_pii(frames: dict[str, pd.DataFrame]) -> dict:
    from tunesmith.data.pii import find_pii

    rows, kinds = [], Counter()
    for split, df in frames.items():
        for row, text in zip(df[ROW], df["text"].astype(str)):
            found = {k: len(v) for k, v in find_pii(text).items() if v}
            if found:
                kinds.update(found)
                rows.append({"split": split, "row": int(row), **found})
    return finding("personal_data", WARNING, rows, f"{len(rows)} rows contain personal data ("
                    + ", ".join(f"{n} {k}" for k, n in kinds.items()) + "); audit.mask_pii=true masks it"
                    if rows else "no e-mail addresses, phone or card numbers found", by_kind=dict(kinds))


def check_encoding(frames: dict[str, pd.DataFrame]) -> dict:
    from ftfy.badness import is_bad

    rows = [{"split": s, "row": int(r), "text": t[:200]} for s, df in frames.items()
            for r, t in zip(df[ROW], df["text"].astype(str)) if "\ufffd" in t or is_bad(t)]
    return finding("mojibake", WARNING, rows, f"{len(rows)} rows look like text decoded with the wrong encoding "
                    "(mojibake) or hold replacement characters")


def run_checks(frames: dict[str, pd.DataFrame], checks: list[tuple[str, Callable[[], dict | list[dict]]]]) -> dict:
    """Run named checks in order, timing each; returns the report (see module docstring)."""
    timings, findings = {}, []
    for name, check in checks:
        tic = time.perf_counter()
        out = check()
        timings[name] = round(time.perf_counter() - tic, 3)
        findings.extend(out if isinstance(out, list) else [out])
    return {"rows": {s: int(len(df)) for s, df in frames.items()},
            "blocking": [f["check"] for f in findings if f["severity"] == BLOCKING],
            "findings": findings, "seconds": timings, "fixes": []}


def audit_splits(frames: dict[str, pd.DataFrame], cfg: AuditConfig | None = None, seed: int = 0,
                 tokenizer=None, max_length: int | None = None) -> dict:
    """Run every check; returns the report (see module docstring)."""
    cfg = cfg or AuditConfig()
    if "train" not in frames:
        raise UserError("audit: a training split is required")
    clean = {s: complete(df) for s, df in frames.items()}
    checks = [("missing_values", lambda: check_missing(frames)),
              ("exact", lambda: check_exact(clean)),
              ("near", lambda: check_near(clean, cfg.near_duplicate_threshold)),
              ("classes", lambda: check_classes(clean)),
              ("lengths", lambda: check_lengths(clean, tokenizer, max_length)),
              ("personal_data", lambda: check_pii(clean)),
              ("mojibake", lambda: check_encoding(clean))]
    if cfg.label_errors:
        checks.append(("label_errors", lambda: check_label_errors(clean["train"], seed)))
    return run_checks(frames, checks)


_SHORT = {"leakage_exact": "evaluation rows duplicate a row of an earlier split",
          "leakage_near": "evaluation rows nearly duplicate a row of an earlier split",
          "conflicting_duplicates": "rows share their text with a differently labelled row",
          "unseen_labels": "evaluation rows carry labels unseen in training",
          "missing_values": "rows lack text or label"}


def flagged_pairs(report: dict, per_check: int = 5) -> list[dict]:
    """The first pairs of each leakage and near-duplicate finding, both sides with their text (or
    image file), so an audit table shows what matched, not only row numbers."""
    out = []
    for f in report["findings"]:
        for r in [r for r in f["rows"] if "matches" in r][:per_check]:
            m, text = r["matches"], str(r.get("text", r.get("image", "")))
            out.append({"check": f["check"], "row": f"{r['split']}:{r['row']}", "text": text,
                        "matches": f"{m['split']}:{m['row']}",
                        "text_of_match": str(r.get("text_of_match", m.get("image", text))),  # exact: the same text
                        "similarity": float(r.get("similarity", 1.0))})
    return out


def summary_line(report: dict) -> str:
    """One phrase per blocking finding, e.g. '3 evaluation rows duplicate ... (leakage_exact)'."""
    return "; ".join(f"{f['count']} {_SHORT.get(f['check'], f['check'])} ({f['check']})"
                     for f in report["findings"] if f["severity"] == BLOCKING)


def gate(report: dict, on_issue: str, where: str) -> None:
    """Stop on blocking findings unless the config says to warn (or they were fixed)."""
    if report["blocking"] and on_issue == "fail":
        raise UserError(f"data audit found blocking issues: {summary_line(report)} (details in {where}); set "
                        "audit.on_issue=fix to remove the offending rows, or audit.on_issue=warn / --force to "
                        "train anyway")


def audit_files(train: str, test: str | None = None, validation: str | None = None, text_column: str = "text",
                label_column: str = "label", cfg: AuditConfig | None = None, seed: int = 0,
                tokenizer=None, max_length: int | None = None) -> dict:
    """Audit files as given (no split, nothing dropped): the `tunesmith audit` command and `tunesmith.audit`."""
    from tunesmith.data.load import read_table, select_columns

    frames = {}
    for split, path in (("train", train), ("validation", validation), ("test", test)):
        if path is not None:
            df = select_columns(read_table(path), path, text_column, label_column)
            frames[split] = df.assign(label=df["label"].where(df["label"].isna(), df["label"].astype(str).str.strip()))
    report = audit_splits(frames, cfg, seed, tokenizer, max_length)
    report["files"] = {s: str(p) for s, p in (("train", train), ("validation", validation), ("test", test)) if p}
    return report
