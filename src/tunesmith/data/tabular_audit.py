"""Audit of a table's splits: rows repeated across splits, a column that predicts the target almost perfectly
(a leak), a timestamp that orders the target, an identifier column, missing values, class balance.

Splits hold typed feature columns (tunesmith.data.tabular), `label`, the row number and a row hash `sha256`.
Findings have the shape of tunesmith.data.audit's, so the gate, the fixes and the report treat them alike.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tunesmith.data.audit import BLOCKING, INFO, SPLIT_ORDER, WARNING, finding, check_classes, run_checks
from tunesmith.data.load import ROW

LEAK_AUC = 0.99  # a single column separating the classes this well is almost surely known only after the fact
CHANCE = 0.01  # a repeated row less likely than this to match an earlier row by chance is a copy
_NA = "\x00missing"  # missing compares as a value of its own, as in the row hash


def _fine(values: pd.Series) -> bool:
    """Nearly unique per row apart from its most common value (at least half as many distinct values as values
    other than the mode: an amount that is 0 for most customers and in cents otherwise is fine): the column's own
    value frequencies say how rare a value is. Other (coarse) columns are coded or binned levels, often derived
    from one another, so they are judged together by how often their joint pattern occurs."""
    v = values.dropna()
    rest = v[v != v.mode().iloc[0]] if len(v) else v
    return len(rest) >= 20 and rest.nunique() >= 0.5 * len(rest)


def _as_keys(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The values as strings (missing as a value of its own): equal values count alike whatever their dtype."""
    cells = df[names].astype(object)
    return cells.where(cells.notna(), _NA).astype(str).reset_index(drop=True)


def _count_in(earlier: pd.Series, rows: pd.Series) -> np.ndarray:
    """For each row, how many earlier values equal its value."""
    return rows.map(earlier.value_counts()).fillna(0).to_numpy(dtype=float)


def _identity(df: pd.DataFrame) -> pd.Series:
    """The key two rows share when they repeat each other: the row hash and the target."""
    return (df["sha256"].astype(str) + "\x1f" + df["label"].astype(str)).reset_index(drop=True)


def chance_of_repeat(earlier: pd.DataFrame, rows: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """For each row, the probability that at least one of the n earlier rows matches it by chance (all of
    `names`), from the value frequencies among the earlier rows; and, per fine column, how many earlier rows
    hold the row's value apart from the rows it repeats.

    A random earlier row matches with p = (c / n) * prod_f (k_f / n): c earlier rows share the row's joint
    pattern of coarse columns (empirical, so correlated codes are not taken as independent) and k_f its value
    in fine column f. k_f leaves out the m earlier rows the row repeats: otherwise a copied identifier would
    count as a value seen once, as likely as any other. Then P(some match) = 1 - (1 - p) ** n, computed as
    -expm1(n * log1p(-p)) so that tiny p stay exact."""
    n = len(earlier)
    before, now = _as_keys(earlier, names), _as_keys(rows, names)
    fine = [c for c in names if _fine(earlier[c])]
    coarse = [c for c in names if c not in fine]
    m = _count_in(_identity(earlier), _identity(rows))
    c = _count_in(pd.util.hash_pandas_object(before[coarse], index=False),
                  pd.util.hash_pandas_object(now[coarse], index=False)) if coarse else np.full(len(rows), float(n))
    apart = pd.DataFrame({f: np.maximum(_count_in(before[f], now[f]) - m, 0) for f in fine}, index=now.index)
    p = np.clip(c / n * np.prod(apart.to_numpy() / n, axis=1), 0, 1)
    with np.errstate(divide="ignore"):  # p = 1: log1p(-1) = -inf, a certain match
        return -np.expm1(n * np.log1p(-p)), apart


def check_duplicates(frames: dict[str, pd.DataFrame], columns: list[dict]) -> list[dict]:
    """Identical rows (every feature and the target) within a split, across splits (evaluation rows that a
    model saw in training), and identical features with different targets. A repeat across splits blocks the
    run only when chance cannot explain it (see leakage_finding): rows of common values repeat by chance."""
    dups, leaks, conflicts, where = [], [], [], []
    seen_before: dict[str, tuple[str, int]] = {}
    for split in [s for s in SPLIT_ORDER if s in frames]:
        df = frames[split]
        first: dict[str, int] = {}
        labels: dict[str, set] = {}
        for pos, (h, row, label) in enumerate(zip(df["sha256"], df[ROW], df["label"])):
            key = f"{h}\x1f{label}"
            labels.setdefault(h, set()).add(str(label))
            if key in seen_before:
                leaks.append({"split": split, "row": int(row), "matches": {"split": seen_before[key][0],
                                                                           "row": seen_before[key][1]}})
                where.append(pos)
            elif key in first:
                dups.append({"split": split, "row": int(row), "duplicate_of": first[key]})
            first.setdefault(key, int(row))
        conflicts += [{"split": split, "row": int(r), "labels": sorted(labels[h])}
                      for h, r in zip(df["sha256"], df[ROW]) if len(labels[h]) > 1]
        for key, row in first.items():
            seen_before.setdefault(key, (split, row))
    return [
        finding("exact_duplicates", WARNING, dups, f"{len(dups)} rows repeat an earlier row of the same split"),
        leakage_finding(frames, [c["name"] for c in columns] + ["label"], leaks, where),
        finding("conflicting_rows", INFO, conflicts, f"{len(conflicts)} rows share every feature with a row of "
                 "another target (noise the model cannot resolve)"),
    ]


def leakage_finding(frames: dict[str, pd.DataFrame], names: list[str], leaks: list[dict],
                    where: list[int]) -> dict:
    """Evaluation rows that repeat an earlier split's row (`where`: their positions in their split), each with
    its chance of matching an earlier row by chance (chance_of_repeat). Blocking when at least one is unlikely
    by chance (below CHANCE): a copy, e.g. of a row whose identifier or rare amount no other earlier row holds.
    Repeats of common values are a warning that shows how many chance predicts over all evaluation rows."""
    splits = [s for s in SPLIT_ORDER if s in frames]
    chances = {s: chance_of_repeat(pd.concat([frames[e] for e in splits[:i]], ignore_index=True), frames[s], names)
               for i, s in enumerate(splits) if i}
    expected = round(float(sum(q.sum() for q, _ in chances.values())), 2)
    unlikely = []
    for leak, pos in zip(leaks, where):
        q = chances[leak["split"]][0][pos]
        leak["chance"] = round(float(q), 4)
        if q < CHANCE:
            unlikely.append((leak, pos))
    head = f"{len(leaks)} evaluation rows repeat a row of an earlier split (every feature and the target)"
    if unlikely:
        message = (f"{head}; {len(unlikely)} of them are unlikely to match by chance "
                   f"(e.g. {_rarest_value(frames, chances, *unlikely[0])}), so they are copies, not chance (the "
                   f"columns' value frequencies predict about {expected} chance repeats): scores on them measure "
                   "memory, not generalisation")
    elif leaks:
        message = (f"{head}, each made of values common enough to match by chance (the columns' value frequencies "
                   f"predict about {expected} chance repeats): distinct rows of common values (coded levels, a "
                   "frequent amount) look alike; audit.on_issue=fix removes them")
    else:
        message = f"{head} (the columns' value frequencies predict about {expected} chance repeats)"
    return finding("leakage_exact", BLOCKING if unlikely else WARNING, leaks, message,
                   expected_by_chance=expected, unlikely_by_chance=len(unlikely))


def _rarest_value(frames: dict[str, pd.DataFrame], chances: dict, leak: dict, pos: int) -> str:
    """'test row 301: 'txn_id' 1037 occurs in no other earlier row': the fine column whose value in the row
    fewest earlier rows hold, apart from the rows it repeats (a row unlikely by chance has a fine column)."""
    apart = chances[leak["split"]][1].iloc[pos]
    column, others = apart.idxmin(), int(apart.min())
    value = frames[leak["split"]][column].iloc[pos]
    value = int(value) if isinstance(value, float) and value.is_integer() else value  # an id read as a float
    seen = "no other earlier row" if others == 0 else f"only {others} other earlier rows"
    return f"{leak['split']} row {leak['row']}: {column!r} {'missing' if pd.isna(value) else value} occurs in {seen}"


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from tunesmith.evaluate.binary import roc_auc

    auc = roc_auc(y, score)
    return max(auc, 1 - auc) if np.isfinite(auc) else float("nan")


def _out_of_fold_rates(values: pd.Series, y: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Each row's class rates among rows of the same value (or quantile bin) in the other half of the data:
    an honest single-column predictor (an identifier, unique per row, predicts nothing)."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        numeric = pd.Series(values.astype("int64") if pd.api.types.is_datetime64_any_dtype(values) else values)
        keys = pd.qcut(numeric.rank(method="first"), q=min(100, max(1, numeric.notna().sum())), labels=False,
                       duplicates="drop").astype("float").fillna(-1).to_numpy()
    else:
        keys = values.astype(str).where(values.notna(), "\x00missing").to_numpy()
    half = np.random.default_rng(seed).random(len(y)) < 0.5
    onehot = np.eye(n_classes)[y]
    prior = onehot.mean(0)
    out = np.zeros((len(y), n_classes))
    for fit, apply in ((half, ~half), (~half, half)):
        rates = pd.DataFrame(onehot[fit]).groupby(keys[fit]).mean()
        out[apply] = rates.reindex(keys[apply]).fillna(pd.Series(prior)).to_numpy()
    return out


def single_column_score(values: pd.Series, y: np.ndarray, n_classes: int, seed: int = 0) -> float:
    """How well one column alone separates the classes: ROC-AUC (either direction) of the raw values for a
    numeric column and a binary target, else the mean one-vs-rest AUC of out-of-fold value rates."""
    numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)
    if n_classes == 2 and numeric:
        v = values.astype("int64").where(values.notna(), None) if pd.api.types.is_datetime64_any_dtype(values) \
            else values
        v = pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
        v = np.where(np.isnan(v), np.nanmin(v) - 1 if np.isfinite(v).any() else 0.0, v)
        return _auc(y, v)
    rates = _out_of_fold_rates(values, y, n_classes, seed)
    classes = [1] if n_classes == 2 else range(n_classes)
    scores = [_auc((y == c).astype(int), rates[:, c]) for c in classes if 0 < (y == c).sum() < len(y)]
    return float(np.nanmean(scores)) if scores else float("nan")


def check_leaky_columns(train: pd.DataFrame, columns: list[dict], labels: list[str], time_column: str | None,
                        seed: int) -> list[dict]:
    """Columns (and the time column) that alone predict the target almost perfectly. Regression: |Spearman|."""
    leaks, ordered, time_rows, scores = [], [], [], {}
    targets = list(columns) + ([{"name": time_column, "kind": "time"}] if time_column else [])
    if labels:
        y = train["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    for c in targets:
        values = train[c["name"]]
        if values.notna().sum() < 10:
            continue
        if labels:
            score = single_column_score(values, y, len(labels), seed)
        else:
            v = values.astype("int64") if pd.api.types.is_datetime64_any_dtype(values) else values
            if not pd.api.types.is_numeric_dtype(v):
                continue
            score = abs(float(pd.Series(v).corr(train["label"].astype(float), method="spearman")))
        if not np.isfinite(score):
            continue
        scores[c["name"]] = round(score, 4)
        if score >= LEAK_AUC:
            row = {"column": c["name"], "kind": c["kind"], "score": round(score, 4)}
            (time_rows if c["kind"] == "time" else ordered if c["kind"] == "datetime" else leaks).append(row)
    what = "ROC-AUC" if labels else "|Spearman correlation|"
    return [
        finding("leaky_column", BLOCKING, leaks, f"{len(leaks)} columns alone predict the target almost perfectly "
                 f"({what} >= {LEAK_AUC} on training rows): "
                 + ", ".join(f"{r['column']} ({r['score']})" for r in leaks)
                 + " — a value known only after the outcome? List it in tabular.drop_columns" if leaks else
                 f"no column alone predicts the target ({what} < {LEAK_AUC})", single_column_scores=scores),
        finding("time_orders_label", BLOCKING, ordered, f"{len(ordered)} date columns order the target almost "
                 "perfectly: " + ", ".join(f"{r['column']} ({r['score']})" for r in ordered) + "; the label may "
                 "be defined by time (list the column in tabular.drop_columns)" if ordered else
                 "no date column orders the target"),
        finding("time_column_orders_label", WARNING, time_rows, f"data.time_column {time_column!r} orders the "
                 "target almost perfectly: a time-ordered split puts nearly one class in test" if time_rows else
                 "the time column does not order the target"),
    ]


def check_identifiers(train: pd.DataFrame, columns: list[dict]) -> dict:
    """Columns unique per row: categories, or whole numbers (a continuous measurement is unique by nature)."""
    rows = []
    for c in columns:
        v = train[c["name"]].dropna()
        if len(v) < 20 or v.nunique() < len(train):
            continue
        whole = c["kind"] == "numeric" and np.allclose(v.to_numpy(dtype=float) % 1, 0)
        if c["kind"] == "categorical" or whole:
            rows.append({"column": c["name"], "distinct": int(v.nunique())})
    return finding("identifier_column", WARNING, rows, f"{len(rows)} columns hold a different value in every "
                    "training row (an identifier?): " + ", ".join(r["column"] for r in rows) + "; list them in "
                    "tabular.drop_columns unless the value carries meaning" if rows else "no identifier-like column")


def check_missing_columns(frames: dict[str, pd.DataFrame], columns: list[dict]) -> dict:
    train = frames["train"]
    shares = {c["name"]: round(float(train[c["name"]].isna().mean()), 4) for c in columns}
    rows = [{"column": k, "missing_share": v} for k, v in shares.items() if v > 0]
    return finding("missing_values", INFO, rows, f"{len(rows)} feature columns have missing values in training "
                    "(the models handle them)" if rows else "no missing feature values", shares=shares)


def audit_table(frames: dict[str, pd.DataFrame], columns: list[dict], labels: list[str],
                time_column: str | None = None, seed: int = 0) -> dict:
    """Every tabular check; the report has the shape of tunesmith.data.audit.audit_splits'."""
    checks = [("duplicates", lambda: check_duplicates(frames, columns)),
              ("leaky_columns", lambda: check_leaky_columns(frames["train"], columns, labels, time_column, seed)),
              ("identifiers", lambda: check_identifiers(frames["train"], columns)),
              ("missing_values", lambda: check_missing_columns(frames, columns))]
    if labels:
        checks.append(("classes", lambda: check_classes({s: f.assign(label=f["label"].astype(str))
                                                         for s, f in frames.items()})))
    return run_checks(frames, checks)
