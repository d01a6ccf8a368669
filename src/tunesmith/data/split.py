"""Seeded stratified splits and the fingerprints that prove which rows went where."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from tunesmith.errors import UserError


def row_hashes(df: pd.DataFrame) -> list[str]:
    """A short content hash per row (text, or an image's pixel hash, and label), in row order."""
    content = df["sha256"] if "sha256" in df.columns else df["text"]
    return [hashlib.sha256(f"{t}\x1f{l}".encode()).hexdigest()[:16] for t, l in zip(content, df["label"])]


def sample_stratified(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A seeded sample of at most n rows, stratified by label where every class has two rows."""
    if n >= len(df):
        return df
    counts = df["label"].value_counts()
    strat = df["label"] if counts.min() >= 2 and n >= len(counts) else None
    keep, _ = train_test_split(df, train_size=n, random_state=seed, stratify=strat)
    return keep.reset_index(drop=True)


def fingerprint(df: pd.DataFrame) -> dict:
    """Row count, the ordered row hashes and one hash over all of them."""
    rows = row_hashes(df)
    return {"rows": len(rows), "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(), "row_hashes": rows}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_off(df: pd.DataFrame, size: float, seed: int, what: str, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = df["label"].value_counts()
    rare = counts[counts < 2]
    if len(rare):
        raise UserError(f"{source}: class {rare.index[0]!r} has {int(rare.iloc[0])} row; a stratified {what} split "
                        f"needs at least 2 rows per class ({len(rare)} classes are this small); add rows, "
                        f"remove the class, or give data.{what} as a file")
    n_out = max(round(len(df) * size), len(counts))
    if n_out >= len(df):
        raise UserError(f"{source}: {len(df)} rows are too few to split off a {what} set with one row of each "
                        f"of {len(counts)} classes; give data.{what} as a file")
    keep, out = train_test_split(df, test_size=n_out, random_state=seed, stratify=df["label"])
    return keep.reset_index(drop=True), out.reset_index(drop=True)


def make_splits(train: pd.DataFrame, validation: pd.DataFrame | None, test: pd.DataFrame | None,
                validation_size: float, test_size: float, seed: int, source: str) -> dict[str, pd.DataFrame]:
    """Split off test, then validation, from the training rows when no file provides them."""
    if test is None:
        train, test = _split_off(train, test_size, seed, "test", source)
    if validation is None:
        train, validation = _split_off(train, validation_size / (1 - test_size), seed + 1, "validation", source)
    return {"train": train, "validation": validation, "test": test}


def check_label_sets(splits: dict[str, pd.DataFrame], files: dict[str, str]) -> list[str]:
    """At least two classes in training; evaluation labels must all be known. Returns the label names."""
    from tunesmith.data.load import ROW

    labels = sorted(splits["train"]["label"].unique())
    if len(labels) < 2:
        raise UserError(f"{files['train']}: only one class ({labels[0]!r}) in column data.label_column; "
                        "classification needs at least two")
    known = set(labels)
    for name in ("validation", "test"):
        df = splits[name]
        unseen = df.loc[~df["label"].isin(known)]
        if len(unseen):
            row = unseen.iloc[0]
            raise UserError(f"{files.get(name, files['train'])}: row {row[ROW]}: label {row['label']!r} never appears "
                            f"in training ({len(unseen)} {name} rows have unseen labels); training labels: "
                            f"{', '.join(labels[:10])}{' …' if len(labels) > 10 else ''}")
    return labels
