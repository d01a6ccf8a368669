"""The full evaluation on a run: baselines with intervals, paired verdict, calibration used by predict,
model card, eval on new data with drift warnings, runs list/compare."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_rows, tiny_config
from tunesmith.config import build_config
from tunesmith.run import fine_tune


@pytest.fixture(scope="module")
def finished(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalrun")
    train = tmp / "train.csv"
    make_rows(200, seed=1).to_csv(train, index=False)
    return fine_tune(build_config(tiny_config(tiny_model, train, tmp / "runs")))


def verdict_of(test: dict) -> str:
    """The verdict a paired comparison must carry, from its interval."""
    if test["low"] > 0:
        return "better, and not by chance"
    return "worse, and not by chance" if test["high"] < 0 else "not distinguishable"


def test_results_hold_baselines_intervals_and_a_verdict(finished):
    res = finished.results
    assert set(res["baselines"]) == {"majority_class", "tfidf_logreg", "linear_probe", "zero_shot"}
    for m in [res["test"], *[b["test"] for b in res["baselines"].values()]]:
        for key in ("accuracy", "macro_f1"):
            assert m["ci"][key]["low"] <= m[key] <= m["ci"][key]["high"]
    comp = res["comparison"]
    baseline_accuracy = {name: b["test"]["accuracy"] for name, b in res["baselines"].items()}
    assert comp["best_baseline"] == max(baseline_accuracy, key=lambda k: (baseline_accuracy[k], k)) == "tfidf_logreg"
    for key in ("accuracy", "macro_f1"):
        c = comp[key]
        assert c["difference"] == pytest.approx(res["test"][key] - res["baselines"]["tfidf_logreg"]["test"][key])
        assert c["low"] <= c["difference"] <= c["high"] and c["verdict"] == verdict_of(c)
    # both score every one of the 20 test rows right: no difference to detect
    assert res["test"]["accuracy"] == baseline_accuracy["tfidf_logreg"] == 1.0
    assert comp["accuracy"]["verdict"] == "not distinguishable" and comp["accuracy"]["p_value"] == 1.0
    assert res["overfitting"]["summary"] and "gap" in res["overfitting"]["summary"]
    assert len(res["error_analysis"]["highest_loss"]) == 10
    html = (finished.path / "report.html").read_text()
    assert "Against the best baseline" in html and "Calibration" in html and "Highest-loss examples" in html


def test_predict_uses_the_temperature_probabilities_change_labels_do_not(finished):
    from transformers import pipeline

    from tunesmith.predict import predict

    t = json.loads((finished.model_dir / "calibration.json").read_text())["temperature"]
    assert t == pytest.approx(finished.results["calibration"]["temperature"]) and abs(t - 1.0) > 0.01
    texts = ["great superb food", "awful broken day", "the staff was nice and good", "meh sad service"]
    raw = pipeline("text-classification", model=str(finished.model_dir), device="cpu")(texts)
    ours = predict(finished.path, texts)
    assert ours["label"].tolist() == [r["label"] for r in raw]
    assert not np.allclose(ours["probability"], [r["score"] for r in raw], atol=1e-3)


def test_model_card(finished):
    card = (finished.model_dir / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "fine-tuned (full)" in card and "Intended use" in card
    splits = json.loads((finished.path / "splits.json").read_text())
    assert splits["test"]["sha256"][:16] in card


def test_eval_on_new_data_warns_about_drift(finished, tmp_path):
    from tunesmith.predict import eval_run

    same = tmp_path / "same.csv"
    make_rows(60, seed=11).to_csv(same, index=False)
    rep = eval_run(finished.path, same)
    assert rep["metrics"]["n"] == 60 and rep["drift"]["warnings"] == []
    shifted = tmp_path / "shifted.csv"
    df = make_rows(120, seed=12)
    df = df[df["label"] == "pos"].assign(text=lambda d: d["text"] + " " + "the day was and it is " * 6)
    df.to_csv(shifted, index=False)
    rep = eval_run(finished.path, shifted)
    text = " ".join(rep["drift"]["warnings"])
    assert "label distribution differs" in text and "longer than in training" in text
    assert (finished.path / "evals" / "shifted.json").is_file()


def test_eval_rejects_unknown_labels(finished, tmp_path):
    from tunesmith.errors import UserError
    from tunesmith.predict import eval_run

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["good", "bad"], "label": ["pos", "angry"]}).to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"row 3: label 'angry' is not one the model knows"):
        eval_run(finished.path, bad)


def test_runs_list_and_compare(finished, tiny_model, tmp_path, capsys):
    from tunesmith.cli import main
    from tunesmith.runs import compare_runs, list_runs

    rows = list_runs(finished.path.parent)
    assert [r["run"] for r in rows] == ["run"] and rows[0]["status"] == "completed"
    assert "[" in rows[0]["accuracy"]  # with its interval
    train = tmp_path / "train.csv"
    make_rows(200, seed=1).to_csv(train, index=False)
    cfg = tiny_config(tiny_model, train, tmp_path / "runs", method="linear-probe", learning_rate=5e-2)
    other = fine_tune(build_config(cfg))
    out = compare_runs([finished.path, other.path])
    pair = out["paired_accuracy"][0]
    # the second run minus the reference, on the same test rows
    gap = other.results["test"]["accuracy"] - finished.results["test"]["accuracy"]
    assert (pair["a"], pair["b"]) == ("run", other.path.name) and pair["difference"] == pytest.approx(gap)
    assert pair["low"] <= pair["difference"] <= pair["high"] and pair["verdict"] == verdict_of(pair)
    capsys.readouterr()
    assert main(["runs", "compare", str(finished.path), str(other.path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if " vs run: " in ln)
    assert line == (f"{other.path.name} vs run: accuracy {pair['difference']:+.4f} [{pair['low']:+.4f}, "
                    f"{pair['high']:+.4f}], p = {pair['p_value']:.3f}: {pair['verdict']}")
