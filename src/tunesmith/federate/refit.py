"""Refit the classifier head from class statistics pooled across silos (linear discriminant analysis).

With skewed silos, averaging each silo's head leaves the global head biased towards whichever labels the
silos held (FedAvg's classifier drift); the body learns well, the head does not. After the rounds, each silo
sends, under the best global body, its per-label row counts, feature means and within-label scatter; the
server pools them exactly (what one site holding every row would compute) and solves the LDA head in
closed form: W = mean_k S^-1, b_k = -mean_k S^-1 mean_k / 2 + log prior_k, with S the pooled within-label
covariance shrunk towards a scaled identity. This is classifier calibration with pooled class statistics
(CCVR, Luo et al. 2021; FED3R, Fanì et al. 2024, for pre-trained features). The refit head is kept only when
it validates better than the averaged one.

What travels: K counts, a K x d matrix of means and a d x d scatter per silo, once. These are aggregates, not
rows, but they are not noised: the refit is off when federated.dp is set.
"""
from __future__ import annotations

import numpy as np

SHRINKAGES = (0.05, 0.2, 0.5)


def silo_statistics(x: np.ndarray, y: np.ndarray, n_labels: int) -> dict[str, np.ndarray]:
    """counts [K], means [K, d] (zero for absent labels) and the scatter about each label's own mean [d, d]."""
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    sums = np.zeros((n_labels, x.shape[1]))
    np.add.at(sums, y, x)
    means = sums / np.maximum(counts, 1)[:, None]
    centred = x - means[y]
    return {"counts": counts, "means": means, "scatter": centred.T @ centred}


def pool(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The statistics of all silos' rows together, exactly: counts, means and the within-label covariance."""
    stats = [{k: np.asarray(v, dtype=np.float64) for k, v in s.items()} for s in stats]
    counts = sum(s["counts"] for s in stats)
    means = sum(s["counts"][:, None] * s["means"] for s in stats) / np.maximum(counts, 1)[:, None]
    scatter = sum(s["scatter"] for s in stats)
    for s in stats:  # each silo's label means sit off the pooled ones: their spread is within-label scatter too
        gap = s["means"] - means
        scatter = scatter + (gap * s["counts"][:, None]).T @ gap
    present = int((counts > 0).sum())
    return {"counts": counts, "means": means, "covariance": scatter / max(counts.sum() - present, 1)}


def lda_head(pooled: dict[str, np.ndarray], shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight [K, d], bias [K]) of the LDA classifier; a label no silo holds gets a bias of -1e4."""
    cov, means, counts = pooled["covariance"], pooled["means"], pooled["counts"]
    d = cov.shape[0]
    shrunk = (1 - shrinkage) * cov + shrinkage * (np.trace(cov) / d) * np.eye(d)
    weight = np.linalg.solve(shrunk, means.T).T
    prior = counts / counts.sum()
    bias = -0.5 * np.einsum("kd,kd->k", weight, means) + np.log(np.maximum(prior, 1e-300))
    bias = np.where(counts > 0, bias, -1e4)
    return weight, bias
