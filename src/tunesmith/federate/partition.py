"""Split a training table into silos for a federated simulation: iid, Dirichlet over labels, or by a column.

Data-level only (rows in, row indices per silo out; no model). Every row lands in exactly one silo and
no silo is empty; the same seed gives the same silos.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tunesmith.config import parse_partition
from tunesmith.errors import UserError


def partition_rows(df: pd.DataFrame, spec: str, clients: int, seed: int,
                   label_column: str = "label") -> list[np.ndarray]:
    """Row positions (0..len(df)-1) of each of CLIENTS silos, by SPEC (see config.parse_partition).

    by-column gives one silo per distinct value of the column, so CLIENTS must equal their number."""
    kind, arg = parse_partition(spec)
    n = len(df)
    if n < clients:
        raise UserError(f"federated.clients = {clients}: the training split has only {n} rows; every silo needs "
                        "at least one")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        silos = np.array_split(rng.permutation(n), clients)
    elif kind == "dirichlet":
        silos = dirichlet_silos(df[label_column].astype(str).to_numpy(), clients, float(arg), rng)
    else:
        silos = _by_column(df, str(arg), clients)
    silos = [np.sort(s) for s in silos]
    empty = [i for i, s in enumerate(silos) if len(s) == 0]
    if empty:
        raise UserError(f"federated.partition = {spec!r}: silo {empty[0]} would receive no rows; use fewer "
                        "clients or a larger alpha")
    return silos


def dirichlet_silos(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator,
                    max_tries: int = 100) -> list[np.ndarray]:
    """For each class, split its rows among the silos in shares drawn from Dirichlet(alpha, ..., alpha)
    (the scheme of Hsu et al. 2019 and flwr-datasets' DirichletPartitioner). Small alpha concentrates each
    class in a few silos. Draws again (same generator) while a silo would be empty; after MAX_TRIES,
    the emptiest silos take one row each from the largest, so every silo keeps a row."""
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for cls in classes:
            rows = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for silo, chunk in enumerate(np.split(rows, cuts)):
                parts[silo].append(chunk)
        silos = [np.concatenate(p) for p in parts]
        if all(len(s) for s in silos):
            return silos
    while any(len(s) == 0 for s in silos):  # very small alpha on few rows: move single rows
        big, small = int(np.argmax([len(s) for s in silos])), int(np.argmin([len(s) for s in silos]))
        silos[small], silos[big] = silos[big][-1:], silos[big][:-1]
    return silos


def _by_column(df: pd.DataFrame, column: str, clients: int) -> list[np.ndarray]:
    if column not in df.columns:
        raise UserError(f"federated.partition = 'by-column:{column}': the training data has no column {column!r}; "
                        f"columns: {', '.join(map(str, df.columns))}")
    values = df[column]
    if values.isna().any():
        raise UserError(f"federated.partition = 'by-column:{column}': {int(values.isna().sum())} training rows "
                        f"have no {column}; every row needs a silo")
    keys = sorted(values.astype(str).unique())
    if len(keys) != clients:
        raise UserError(f"federated.clients = {clients}: column {column!r} has {len(keys)} distinct values "
                        f"({', '.join(keys[:5])}{'...' if len(keys) > 5 else ''}); set clients to {len(keys)}")
    as_str = values.astype(str).to_numpy()
    return [np.flatnonzero(as_str == k) for k in keys]


def label_distribution(labels: pd.Series, silos: list[np.ndarray], names: list[str]) -> list[dict[str, int]]:
    """Rows of each label in each silo (for the report)."""
    values = labels.astype(str).to_numpy()
    return [{name: int((values[s] == name).sum()) for name in names} for s in silos]
