"""Binary scores and the cost-chosen threshold (tunesmith.evaluate.binary)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tunesmith.evaluate.binary import average_precision, cost_threshold, precision_at_k, recall_at_fpr, roc_auc


def test_average_precision_and_roc_auc_match_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.1).astype(int)
    score = np.round(rng.random(500) * 0.5 + 0.4 * y, 2)  # rounded: many tied scores
    assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_recall_at_a_false_positive_rate_allows_only_that_many_false_alarms():
    y = np.array([0] * 100 + [1] * 4)
    score = np.r_[np.linspace(0, 0.9, 100), [0.95, 0.895, 0.5, 0.1]]
    r = recall_at_fpr(y, score, 0.01)  # 1 of 100 negatives may be flagged: threshold = the 2nd highest negative
    assert r["false_positives_allowed"] == 1 and r["fpr"] == 0.01
    assert r["recall"] == 0.5  # 0.95 and 0.895 are above 0.8909..., 0.5 and 0.1 are not
    assert precision_at_k(y, score, 2) == 0.5


def test_costs_pick_a_threshold_other_than_one_half():
    # three score groups of 10 rows: 0.1 (no positives), 0.3 (3 positives), 0.7 (7 positives); fn = 5, fp = 1.
    # Costs: flag none 50; flag 0.7 only 3*5 + 3 = 18 (what 0.5 gives); flag 0.3 and 0.7: 0 + 10 = 10; all: 20.
    score = np.repeat([0.1, 0.3, 0.7], 10)
    y = np.r_[np.zeros(10), np.r_[np.ones(3), np.zeros(7)], np.r_[np.ones(7), np.zeros(3)]].astype(int)
    d = cost_threshold(y, score, {"fn": 5, "fp": 1})
    assert d["threshold"] == pytest.approx(0.2)
    assert d["validation_cost_per_row"] == pytest.approx(10 / 30)
    assert d["validation_cost_at_0.5"] == pytest.approx(18 / 30)
    # equal costs: flagging 0.7 only (3 missed + 3 alarms = 6) beats flagging 0.3 too (10 alarms)
    assert cost_threshold(y, score, {"fn": 1, "fp": 1})["threshold"] == pytest.approx(0.5)
