import numpy as np

from tunesmith.evaluate.stats import accuracy, bootstrap_ci, macro_f1, paired_bootstrap


def test_interval_contains_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 2000):
        y = rng.integers(0, 3, n)
        pred = np.where(rng.random(n) < 0.8, y, (y + 1) % 3)
        ci = bootstrap_ci(y, pred, accuracy, resamples=500, seed=1)
        assert ci["low"] <= ci["value"] <= ci["high"]
        widths.append(ci["high"] - ci["low"])
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(20)


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    assert np.isclose(macro_f1(y, pred, 5), f1_score(y, pred, average="macro"))


def test_identical_predictions_are_not_distinguishable():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    pred = np.where(rng.random(500) < 0.7, y, 1 - y)
    res = paired_bootstrap(y, pred, pred.copy(), accuracy, resamples=500)
    assert res["difference"] == 0 and res["verdict"] == "not distinguishable" and res["p_value"] == 1.0


def test_a_clearly_better_model_is_called_better():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    good = np.where(rng.random(1000) < 0.9, y, 1 - y)
    bad = np.where(rng.random(1000) < 0.6, y, 1 - y)
    res = paired_bootstrap(y, good, bad, accuracy, resamples=500)
    assert res["verdict"] == "better, and not by chance" and res["low"] > 0.2 and res["p_value"] < 0.01
