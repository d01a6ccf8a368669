from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import make_rows
from tunesmith.data.split import check_label_sets, fingerprint, make_splits
from tunesmith.errors import UserError


def test_stratified_seeded_split_and_fingerprints():
    df = make_rows(200, classes=2)
    a = make_splits(df, None, None, 0.1, 0.2, seed=3, source="d.csv")
    b = make_splits(df, None, None, 0.1, 0.2, seed=3, source="d.csv")
    c = make_splits(df, None, None, 0.1, 0.2, seed=4, source="d.csv")
    assert [len(a[s]) for s in ("train", "validation", "test")] == [140, 20, 40]
    for split in ("validation", "test"):
        assert (a[split]["label"].value_counts() == len(a[split]) // 2).all()  # stratified
        assert fingerprint(a[split])["sha256"] == fingerprint(b[split])["sha256"]
        assert fingerprint(a[split])["sha256"] != fingerprint(c[split])["sha256"]
    hashes = [set(fingerprint(a[s])["row_hashes"]) for s in a]
    assert sum(len(h) for h in hashes) == len(set().union(*hashes))  # no row in two splits


def test_given_files_are_not_split():
    train, val, test = make_rows(50), make_rows(10, seed=5), make_rows(12, seed=6)
    s = make_splits(train, val, test, 0.1, 0.1, seed=0, source="d.csv")
    assert len(s["train"]) == 50 and len(s["validation"]) == 10 and len(s["test"]) == 12


def test_single_class_is_rejected():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a"] * 30})
    splits = make_splits(df, None, None, 0.1, 0.1, seed=0, source="d.csv")
    with pytest.raises(UserError, match="only one class"):
        check_label_sets(splits, {"train": "d.csv"})


def test_test_label_unseen_in_training_is_named():
    train = make_rows(40)
    test = pd.DataFrame({"text": ["x", "y"], "label": ["pos", "angry"], "__row__": [2, 3]})
    splits = make_splits(train, make_rows(10, seed=2), test, 0.1, 0.1, seed=0, source="t.csv")
    with pytest.raises(UserError, match=r"test.csv: row 3: label 'angry' never appears in training"):
        check_label_sets(splits, {"train": "t.csv", "test": "test.csv"})


def test_class_too_small_to_stratify():
    df = pd.concat([make_rows(40), pd.DataFrame({"text": ["lonely"], "label": ["rare"]})])
    with pytest.raises(UserError, match="class 'rare' has 1 row"):
        make_splits(df, None, None, 0.1, 0.1, seed=0, source="d.csv")
