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


def test_macro_f1_with_a_class_absent_from_labels_and_predictions():
    """Class 2 never occurs in y or pred: the point estimate and every resample use one definition
    (the classes present, as scikit-learn's default), so the estimate lies inside its interval."""
    from sklearn.metrics import f1_score

    from tunesmith.config import EvalConfig
    from tunesmith.evaluate.evaluation import scored

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.85, y, 1 - y)
    logits = np.eye(3)[pred] * 4.0  # three labels; the third is never predicted
    out = scored(y, logits, ["a", "b", "c"], EvalConfig(bootstrap_resamples=300), seed=0)
    expected = f1_score(y, pred, average="macro")  # labels unset: classes present in y or pred
    assert np.isclose(macro_f1(y, pred, 3), expected) and np.isclose(out["macro_f1"], expected)
    ci = out["ci"]["macro_f1"]
    assert ci["value"] == out["macro_f1"] and ci["low"] <= out["macro_f1"] <= ci["high"]
    assert ci["low"] > 0.75  # not dragged towards 2/3 of the score by the absent class


def test_equally_accurate_models_are_not_distinguishable_under_the_null():
    """Two different models with the same true accuracy (errors on independent rows): the paired test
    calls them 'not distinguishable' in at least 90% of seeds (nominally 95%)."""
    verdicts = []
    for seed in range(60):
        rng = np.random.default_rng(100 + seed)
        y = rng.integers(0, 3, 300)
        a = np.where(rng.random(300) < 0.75, y, (y + 1) % 3)
        b = np.where(rng.random(300) < 0.75, y, (y + 2) % 3)
        assert not np.array_equal(a, b)
        for fn in (accuracy, lambda yy, pp: macro_f1(yy, pp, 3)):
            verdicts.append(paired_bootstrap(y, a, b, fn, resamples=400, seed=seed)["verdict"])
    share = verdicts.count("not distinguishable") / len(verdicts)
    assert share >= 0.9, share
