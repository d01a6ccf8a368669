"""Silos from a table: seeded, every row exactly once, no empty silo, Dirichlet skew at small alpha."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunesmith.errors import UserError
from tunesmith.federate.partition import label_distribution, partition_rows


def table(n: int = 600, classes: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"text": [f"t{i}" for i in range(n)], "label": [f"c{i % classes}" for i in range(n)],
                         "branch": rng.choice(["north", "south", "east"], size=n)})


@pytest.mark.parametrize("spec", ["iid", "dirichlet:0.3", "dirichlet:100", "by-column:branch"])
def test_every_row_lands_in_exactly_one_silo_and_the_seed_fixes_the_silos(spec):
    df = table()
    silos = partition_rows(df, spec, 3, seed=5)
    together = np.concatenate(silos)
    assert sorted(together.tolist()) == list(range(len(df)))  # each row once: no loss, no copy
    assert all(len(s) > 0 for s in silos)
    again = partition_rows(df, spec, 3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(silos, again))


def test_another_seed_gives_other_silos():
    df = table()
    assert not np.array_equal(partition_rows(df, "dirichlet:0.3", 3, seed=1)[0],
                              partition_rows(df, "dirichlet:0.3", 3, seed=2)[0])
    assert not np.array_equal(partition_rows(df, "iid", 3, seed=1)[0], partition_rows(df, "iid", 3, seed=2)[0])


def _skew(df: pd.DataFrame, silos: list[np.ndarray]) -> float:
    """Mean over silos of the share of its largest class (0.25 = balanced over 4 classes, 1 = one class)."""
    counts = label_distribution(df["label"], silos, sorted(df["label"].unique()))
    return float(np.mean([max(c.values()) / sum(c.values()) for c in counts]))


def test_small_alpha_concentrates_classes_and_large_alpha_does_not():
    df = table(2000)
    skewed = np.mean([_skew(df, partition_rows(df, "dirichlet:0.1", 5, seed=s)) for s in range(5)])
    even = np.mean([_skew(df, partition_rows(df, "dirichlet:1000", 5, seed=s)) for s in range(5)])
    iid = np.mean([_skew(df, partition_rows(df, "iid", 5, seed=s)) for s in range(5)])
    assert skewed > 0.6
    assert even < 0.3 and iid < 0.3


def test_by_column_gives_one_silo_per_value():
    df = table()
    silos = partition_rows(df, "by-column:branch", 3, seed=0)
    assert [set(df["branch"].iloc[s]) for s in silos] == [{"east"}, {"north"}, {"south"}]


@pytest.mark.parametrize("spec, clients, said", [
    ("by-column:branch", 4, "federated.clients = 4: column 'branch' has 3 distinct values"),
    ("by-column:region", 3, "no column 'region'"),
    ("iid", 7, "federated.clients = 7: the training split has only 6 rows"),
])
def test_impossible_partitions_are_one_line_naming_the_field(spec, clients, said):
    with pytest.raises(UserError, match=said.replace("(", r"\(").replace(")", r"\)")):
        partition_rows(table(6 if clients == 7 else 60), spec, clients, seed=0)


def test_tiny_alpha_on_few_rows_still_fills_every_silo():
    df = table(12, classes=2)
    silos = partition_rows(df, "dirichlet:0.01", 6, seed=3)
    assert all(len(s) > 0 for s in silos)
    assert sorted(np.concatenate(silos).tolist()) == list(range(12))
