"""fine_tune end to end on the tiny model: run folder, methods, early stopping, accumulation, predict."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import make_rows, tiny_config
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.run import fine_tune, load_run

RUN_FILES = {"config.yaml", "splits.json", "environment.json", "data_report.json", "metrics.jsonl", "results.json",
             "test_predictions.csv", "validation_predictions.csv", "report.html", "status.json", "checkpoints",
             "model", "audit.json"}


def run(tiny_model, tiny_csv, tmp_path, **train):
    return fine_tune(build_config(tiny_config(tiny_model, tiny_csv, tmp_path / "runs", **train)))


def test_full_fine_tune_learns_and_writes_a_complete_run_folder(tiny_model, tiny_csv, tmp_path):
    r = run(tiny_model, tiny_csv, tmp_path)
    assert {p.name for p in r.path.iterdir()} == RUN_FILES
    assert json.loads((r.path / "status.json").read_text())["status"] == "completed"
    res = r.results
    assert res["test"]["accuracy"] >= 0.9 > res["baselines"]["majority_class"]["test"]["accuracy"]
    records = [json.loads(l) for l in (r.path / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in records if x["type"] == "eval"]
    trains = [x for x in records if x["type"] == "train"]
    assert len(evals) == 4 and trains and trains[-1]["step"] == res["training"]["global_step"] == 4 * 16
    assert trains[-1]["loss"] < trains[0]["loss"]
    # the split is recorded row by row, and the resolved config holds the derived values
    splits = json.loads((r.path / "splits.json").read_text())
    assert [splits[s]["rows"] for s in ("train", "validation", "test")] == [128, 16, 16]
    cfg = load_run(r.path).config
    assert cfg.train.epochs == 4 and cfg.model.max_length == 32
    html = (r.path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "majority class" in html and "Per-class" in html


def test_saved_model_loads_in_a_transformers_pipeline_with_label_names(tiny_model, tiny_csv, tmp_path):
    from transformers import pipeline

    from tunesmith.predict import predict

    r = run(tiny_model, tiny_csv, tmp_path)
    clf = pipeline("text-classification", model=str(r.model_dir), device="cpu")
    texts = ["the food was great and superb", "awful and broken service"]
    out = clf(texts)
    assert [o["label"] for o in out] == ["pos", "neg"]
    ours = predict(r.path, texts)
    assert ours["label"].tolist() == ["pos", "neg"]
    # predict divides the logits by the temperature fitted on validation
    t = json.loads((r.model_dir / "calibration.json").read_text())["temperature"]
    # log of the pipeline's softmax is the logits up to a constant, so dividing it by t is enough
    raw = [torch.log(torch.tensor([s["score"] for s in clf(x, top_k=None)])) for x in texts]
    expected = [float(torch.softmax(lp / t, 0).max()) for lp in raw]
    assert np.allclose(ours["probability"], expected, atol=1e-4)


def test_linear_probe_trains_only_the_head(tiny_model, tiny_csv, tmp_path):
    from transformers import AutoModelForSequenceClassification

    r = run(tiny_model, tiny_csv, tmp_path, method="linear-probe", learning_rate=5e-2)
    before = AutoModelForSequenceClassification.from_pretrained(tiny_model).state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(r.model_dir).state_dict()
    for name, value in before.items():
        if name.startswith("bert."):
            assert torch.equal(value, after[name]), name
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_linear_probe_caches_features_faithfully(tiny_model, tiny_csv, tmp_path):
    """The probe trains on the body's outputs computed once; the saved model (real body) predicts
    exactly what the run predicted from the cache."""
    import pandas as pd

    from tunesmith.predict import predict

    r = run(tiny_model, tiny_csv, tmp_path, method="linear-probe", learning_rate=5e-2)
    assert json.loads((r.path / "data_report.json").read_text())["feature_cache"] is True
    cached = pd.read_csv(r.path / "test_predictions.csv")
    fresh = predict(r.path, cached["text"].astype(str).tolist())
    assert fresh["label"].tolist() == cached["predicted"].tolist()
    assert np.allclose(fresh["probability"], cached["confidence"], atol=1e-5)


def test_lora_saves_adapter_and_merged_model_with_equal_outputs(tiny_model, tiny_csv, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    r = run(tiny_model, tiny_csv, tmp_path, method="lora", learning_rate=2e-2, lora={"rank": 4, "alpha": 8})
    assert (r.path / "adapter" / "adapter_config.json").is_file()
    tok = AutoTokenizer.from_pretrained(r.model_dir)
    batch = tok(["great food", "the worst day"], return_tensors="pt", padding=True)
    merged = AutoModelForSequenceClassification.from_pretrained(r.model_dir).eval()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    adapted = PeftModel.from_pretrained(base, r.path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapted(**batch).logits, atol=1e-5)
    assert r.results["test"]["accuracy"] > r.results["baselines"]["majority_class"]["test"]["accuracy"]


def test_early_stopping_fires_and_restores_the_best_checkpoint(tiny_model, tmp_path):
    train = tmp_path / "noisy.csv"
    df = make_rows(160, seed=3)
    df.loc[df.sample(frac=0.45, random_state=0).index, "label"] = "pos"  # noise: validation stops improving
    df.to_csv(train, index=False)
    r = run(tiny_model, train, tmp_path, epochs=30, eval_every_steps=4, early_stopping_patience=2,
            metric_for_best="loss", learning_rate=1e-2)
    tr = r.results["training"]
    assert tr["stopped_early"] and tr["epochs_completed"] < 30
    evals = [json.loads(l) for l in (r.path / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    best = min(evals, key=lambda e: e["loss"])
    assert tr["best_step"] == best["step"] < evals[-1]["step"]
    # the final model is the best one: its validation loss equals the best logged one
    assert r.results["validation"]["loss"] == pytest.approx(best["loss"], rel=1e-5)


def test_gradient_accumulation_halves_optimizer_steps(tiny_model, tiny_csv, tmp_path):
    r = run(tiny_model, tiny_csv, tmp_path, epochs=1, batch_size=4, gradient_accumulation_steps=2)
    assert r.results["training"]["global_step"] == 16  # 128 rows / (4 x 2)


def test_class_weights_and_label_smoothing_change_the_loss(tiny_model, tmp_path):
    from tunesmith.tasks import get_task

    train = tmp_path / "imb.csv"
    df = make_rows(120)
    df = df[(df["label"] == "pos") | (df.index % 6 == 1)]  # ~6:1 imbalance
    df.to_csv(train, index=False)
    cfg = build_config(tiny_config(tiny_model, train, tmp_path, class_weights="balanced", label_smoothing=0.1))
    task = get_task("text-classification")
    data = task.load_data(cfg)
    prep = task.prepare(cfg, data)
    w = prep.loss.class_weight
    counts = data.splits["train"]["label"].value_counts()
    assert w[data.labels.index("neg")] / w[data.labels.index("pos")] == pytest.approx(counts["pos"] / counts["neg"])
    assert prep.loss.label_smoothing == 0.1
    batch = prep.collate(prep.encoded["train"][:8])
    assert not torch.isclose(prep.loss(prep.model, batch), task.loss(prep.model, batch))  # the plain loss
    assert vars(task) == {}  # the settings travel in Prepared, not on the task


def test_training_minimises_the_runs_own_loss(tiny_model, tmp_path, monkeypatch):
    """train.class_weights reaches the loss the loop optimises (not only the task's plain loss)."""
    import tunesmith.train.loop as loop

    seen = []
    real = loop.train_loop
    monkeypatch.setattr(loop, "train_loop", lambda loss, *a, **k: seen.append(loss) or real(loss, *a, **k))
    train = tmp_path / "imb.csv"
    df = make_rows(80)
    df[(df["label"] == "pos") | (df.index % 4 == 1)].to_csv(train, index=False)
    fine_tune(build_config(tiny_config(tiny_model, train, tmp_path, epochs=1, class_weights="balanced")))
    assert len(seen) == 1 and seen[0].class_weight is not None


def test_bad_config_is_rejected_before_the_model_loads(tiny_csv, tmp_path, monkeypatch):
    import transformers

    def boom(*a, **k):
        raise AssertionError("model loaded before config/data were checked")

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", boom)
    cfg = tiny_config("minilm-l6", tiny_csv, tmp_path)
    cfg["data"]["label_column"] = "sentiment"
    with pytest.raises(UserError, match="no column 'sentiment'"):
        fine_tune(build_config(cfg))


def test_hub_id_offline_gives_a_clear_error(tiny_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = build_config(tiny_config("no-such-org/no-such-model", tiny_csv, tmp_path))
    with pytest.raises(UserError, match="could not load it from the Hugging Face hub.*local folder"):
        fine_tune(cfg)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


def test_existing_run_name_is_not_overwritten(tiny_model, tiny_csv, tmp_path):
    run(tiny_model, tiny_csv, tmp_path, epochs=1)
    with pytest.raises(UserError, match="a run with this name exists"):
        run(tiny_model, tiny_csv, tmp_path, epochs=1)


def test_default_run_names_of_runs_started_in_the_same_second_differ(tmp_path):
    from tunesmith.run import claim_run_dir

    name = "text-classification-x-20261125-120000"
    assert claim_run_dir(tmp_path, name, explicit=False) == tmp_path / name
    (tmp_path / "a").mkdir()
    (tmp_path / "a-2").mkdir()
    assert claim_run_dir(tmp_path, "a", explicit=False) == tmp_path / "a-3"
    assert (tmp_path / "a-3").is_dir()


def _stop_after_the_run_folder(monkeypatch):
    """fine_tune up to the claimed run folder: the training itself is not under test."""
    import tunesmith.run

    monkeypatch.setattr(tunesmith.run, "_execute", lambda cfg, task, data, run_dir, *a: tunesmith.run.Run(
        run_dir, cfg, "completed", {}))


def test_a_rival_process_taking_the_default_name_first_gets_its_own_folder(tiny_model, tiny_csv, tmp_path,
                                                                             monkeypatch):
    from pathlib import Path

    _stop_after_the_run_folder(monkeypatch)
    out = tmp_path / "runs"
    out.mkdir()
    real_mkdir, taken = Path.mkdir, []

    def mkdir(self, *args, **kwargs):
        if self.parent == out and not taken:  # another process creates the same name between check and mkdir
            taken.append(self)
            real_mkdir(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    cfg = tiny_config(tiny_model, tiny_csv, out)
    cfg["run_name"] = None
    run = fine_tune(build_config(cfg))
    assert taken and run.path == taken[0].with_name(taken[0].name + "-2") and run.path.is_dir()


def test_an_explicit_run_name_that_exists_is_refused_before_training(tiny_model, tiny_csv, tmp_path, monkeypatch):
    _stop_after_the_run_folder(monkeypatch)
    existing = tmp_path / "runs" / "run"
    existing.mkdir(parents=True)
    (existing / "status.json").write_text('{"status": "failed"}')
    with pytest.raises(UserError, match=f"{existing}: a run with this name exists; resume it with --resume"):
        fine_tune(build_config(tiny_config(tiny_model, tiny_csv, tmp_path / "runs")))


def test_other_processes_take_the_main_process_folder_or_its_error(tmp_path, monkeypatch):
    """Only the main process claims the folder; the others get its path, or its error (and stop too)."""
    import accelerate.utils

    from tunesmith.run import _shared_run_dir

    cfg = build_config(tiny_config(tmp_path / "model", tmp_path / "x.csv", tmp_path / "runs"))
    sent = {}
    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objects: sent["from main"])
    sent["from main"] = [str(tmp_path / "runs" / "run"), None]
    assert _shared_run_dir(cfg, main=False) == tmp_path / "runs" / "run"
    assert not (tmp_path / "runs").exists()  # created by the main process only
    sent["from main"] = [None, UserError("runs/run: a run with this name exists")]
    with pytest.raises(UserError, match="a run with this name exists"):
        _shared_run_dir(cfg, main=False)
