"""Image classification on a tiny timm CNN built in the test and real photographs (scikit-image's
LFW subset: 25x25 grey faces and non-faces); data layouts, audit, augmentation, schedule, predict."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from tests.test_cli import cli, one_error_line
from tunesmith.config import AugmentConfig, build_config
from tunesmith.errors import UserError
from tunesmith.run import fine_tune


@pytest.fixture(scope="session")
def faces():
    from skimage.data import lfw_subset

    imgs = (lfw_subset() * 255).round().astype(np.uint8)  # 100 faces, then 100 non-faces
    return imgs[:100], imgs[100:]


@pytest.fixture(scope="session")
def face_folder(tmp_path_factory, faces):
    """faces/ and other/ folders of real grey PNGs, 60 each."""
    root = tmp_path_factory.mktemp("lfw")
    for name, imgs in zip(("face", "other"), faces):
        (root / name).mkdir()
        for i, img in enumerate(imgs[:60]):
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_cnn(tmp_path_factory):
    """timm's test_efficientnet (a few thousand weights), seeded, saved as a local weights file."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=1000)
    path = tmp_path_factory.mktemp("tiny-cnn") / "weights.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def image_config(data_path, weights, out, **extra) -> dict:
    cfg = {"task": "image-classification", "output_dir": str(out),
           "model": {"name": "test_efficientnet", "weights": str(weights)},
           "data": {"train": str(data_path)},
           "image": {"size": 32, "freeze_epochs": 1},
           "train": {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "logging_steps": 2},
           "eval": {"bootstrap_resamples": 200}}
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def test_folder_run_trains_head_then_all_and_predicts_like_the_run(face_folder, tiny_cnn, tmp_path):
    run = fine_tune(build_config(image_config(face_folder, tiny_cnn, tmp_path / "runs")))
    assert run.status == "completed"
    res = run.results
    assert res["training"]["warmup"]["phase"] == "head" and (run.path / "head" / "metrics.jsonl").is_file()
    assert set(res["baselines"]) == {"majority_class", "linear_probe"}  # text baselines do not apply
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["feature_cache"] is True and report["image_size"] == 32
    assert report["train_profile"]["grey_share"] == 1.0
    # the saved model (timm's folder format) predicts exactly what the run computed for the test split
    test = pd.read_csv(run.path / "test_predictions.csv")
    folder = tmp_path / "new"
    folder.mkdir()
    for ref in test["image"][:6]:
        (folder / ref.replace("/", "_")).write_bytes((face_folder / ref).read_bytes())
    proc = cli("predict", str(run.path), "--input", str(folder), "--output", str(tmp_path / "p.csv"))
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(tmp_path / "p.csv").set_index("image")
    for ref, pred, conf in zip(test["image"][:6], test["predicted"], test["confidence"]):
        row = got.loc[ref.replace("/", "_")]
        assert row["predicted"] == pred and row["probability"] == pytest.approx(conf, abs=1e-5)
    card = (run.path / "model" / "README.md").read_text()
    assert "library_name: timm" in card and "pipeline_tag: image-classification" in card and "input size 32 px" in card
    page = (run.path / "report.html").read_text()
    assert "linear probe" in page and "Confusion matrices" in page
    wrong = bool((test["label"] != test["predicted"]).any())  # the grid exists exactly when there are errors
    assert (run.path / "misclassified.png").is_file() == wrong and ("Misclassified test images" in page) == wrong


def test_npz_and_csv_layouts_read_the_same_images(faces, tmp_path):
    from tunesmith.config import ImageConfig
    from tunesmith.data.images import load_source

    face, other = faces
    np.savez(tmp_path / "d.npz", train_images=np.concatenate([face[:20], other[:20]]),
             train_labels=np.array([0] * 20 + [1] * 20).reshape(-1, 1), test_images=face[20:24],
             test_labels=np.zeros((4, 1), dtype=np.int64))
    frames, _ = load_source(tmp_path / "d.npz", ImageConfig(label_names=["face", "other"]), "label")
    assert {k: len(v) for k, v in frames.items()} == {"train": 40, "test": 4}
    assert frames["train"]["label"].value_counts().to_dict() == {"face": 20, "other": 20}
    assert frames["train"]["text"][3] == "train_images[3]" and frames["train"]["image"][0].shape == (25, 25, 1)
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(face[i]).convert("RGB").save(tmp_path / "img" / f"{i}.jpg", quality=95)
        rows.append({"path": f"img/{i}.jpg", "y": "face"})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    frames, _ = load_source(tmp_path / "t.csv", ImageConfig(image_column="path"), "y")
    assert frames["train"]["image"][0].shape == (25, 25, 3) and list(frames["train"]["label"]) == ["face"] * 4
    with pytest.raises(UserError, match=r"t2.csv: line 3: image file .*missing.png' not found"):
        pd.DataFrame([{"path": "img/0.jpg", "y": "a"}, {"path": "missing.png", "y": "b"}]).to_csv(
            tmp_path / "t2.csv", index=False)
        load_source(tmp_path / "t2.csv", ImageConfig(image_column="path"), "y")


def test_corrupt_image_is_one_clear_line_or_skipped_and_counted(face_folder, tiny_cnn, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(face_folder, root)
    (root / "face" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = image_config(root, tiny_cnn, tmp_path / "runs", train={"epochs": 1}, image={"freeze_epochs": 0})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    line = one_error_line(cli("train", str(path)))
    assert f"{root / 'face' / 'broken.png'}: not a readable image" in line and "image.skip_unreadable" in line
    run = fine_tune(build_config(cfg, ["image.skip_unreadable=true"]))
    audit = json.loads((run.path / "audit.json").read_text())
    unreadable = next(f for f in audit["findings"] if f["check"] == "unreadable_images")
    assert unreadable["count"] == 1 and unreadable["rows"][0]["file"].endswith("broken.png")


def test_audit_finds_exact_and_near_duplicate_images_across_splits(faces):
    from tunesmith.config import AuditConfig
    from tunesmith.data.image_audit import audit_image_splits
    from tunesmith.data.images import _frame

    face, other = faces
    train = _frame([f"t{i}" for i in range(20)], ["face"] * 10 + ["other"] * 10,
                   [a[..., None] for a in np.concatenate([face[:10], other[:10]])], list(range(1, 21)))
    brighter = np.clip(face[3].astype(int) + 4, 0, 255).astype(np.uint8)  # re-exposed copy: near, not exact
    test = _frame(["copy", "bright", "new"], ["face", "face", "other"],
                  [face[2][..., None], brighter[..., None], other[50][..., None]], [1, 2, 3])
    report = audit_image_splits({"train": train, "test": test}, AuditConfig(), [])
    found = {f["check"]: f for f in report["findings"]}
    assert [r["row"] for r in found["leakage_exact"]["rows"]] == [1]
    assert [(r["row"], r["matches"]["row"]) for r in found["leakage_near"]["rows"]] == [(2, 4)]
    assert set(report["blocking"]) == {"leakage_exact", "leakage_near"}
    assert found["class_balance"]["counts"] == {"face": 10, "other": 10}


def test_augmentation_touches_training_batches_only(faces):
    from tunesmith.data.transforms import ImageCollate
    from tunesmith.models.vision import Preprocess

    pre = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    examples = [{"image": faces[0][i][..., None], "labels": i % 2, "index": i} for i in range(8)]
    train = ImageCollate(pre, AugmentConfig(rotation=20, noise=0.05), 2, seed=0)
    evaluate = ImageCollate(pre, None, 2)
    state = torch.get_rng_state()
    a, b = train(examples), train(examples)
    assert torch.equal(state, torch.get_rng_state())  # the global random stream is not consumed
    assert torch.equal(a["pixel_values"], b["pixel_values"])  # a batch's augmentation depends on its ids only
    other = train([{**ex, "index": ex["index"] + 100} for ex in examples])  # same images, another batch
    assert a["pixel_values"].shape == (8, 3, 32, 32) and not torch.equal(a["pixel_values"], other["pixel_values"])
    assert not torch.equal(a["pixel_values"], evaluate(examples)["pixel_values"])
    assert torch.equal(evaluate(examples)["pixel_values"], evaluate(examples)["pixel_values"])
    grey = evaluate(examples)["pixel_values"][0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # grey repeated to 3 channels
    mixed = ImageCollate(pre, AugmentConfig(mixup=0.4), 2)(examples)
    assert mixed["targets"].shape == (8, 2) and torch.allclose(mixed["targets"].sum(1), torch.ones(8))
    assert not torch.all((mixed["targets"] == 0) | (mixed["targets"] == 1))  # soft labels


def test_unfrozen_layers_train_at_decaying_rates(face_folder, tiny_cnn, tmp_path):
    from tunesmith.tasks import get_task

    cfg = build_config(image_config(face_folder, tiny_cnn, tmp_path / "runs", image={"layer_decay": 0.5}))
    task = get_task(cfg.task)
    prepared = task.prepare(cfg, task.load_data(cfg))
    groups = prepared.param_groups(prepared.model, 1e-3)
    by_name = {}
    for g in groups:
        for p in g["params"]:
            by_name[next(n for n, q in prepared.model.named_parameters() if q is p)] = g["lr"]
    assert by_name["classifier.weight"] == pytest.approx(1e-3)
    assert by_name["conv_stem.weight"] < by_name["blocks.3.0.conv_dw.weight"] < by_name["classifier.weight"]
    assert by_name["conv_stem.weight"] == pytest.approx(1e-3 * 0.5 ** (len(set(by_name.values())) - 1))


def test_frozen_features_are_computed_once_per_study(face_folder, tiny_cnn, tmp_path):
    from tunesmith.memo import Memo

    memo = Memo()
    base = image_config(face_folder, tiny_cnn, tmp_path / "runs", train={"epochs": 1, "method": "linear-probe"})
    for lr in (1e-2, 3e-2):
        run = fine_tune(build_config(base, [f"train.learning_rate={lr}"]), memo=memo)
        assert json.loads((run.path / "data_report.json").read_text())["feature_cache"] is True
    assert memo.hits.get("features") == 1


def test_lora_is_refused_for_images_with_a_reason(tiny_cnn, tmp_path):
    """One line naming the field, its value and the valid choices (not the whole config), before data loads."""
    cfg = build_config(image_config(tmp_path / "no-such-folder", tiny_cnn, tmp_path, train={"method": "lora"}))
    expected = (r"^config: train.method = 'lora': does not apply to task image-classification; use full "
                r"\(with image.freeze_epochs\) or linear-probe$")
    with pytest.raises(UserError, match=expected):
        fine_tune(cfg)


def test_the_task_keeps_no_state_between_runs(face_folder, tiny_cnn, tmp_path):
    """The frozen features and the loss settings travel in Prepared: one task object serves any run."""
    from tunesmith.tasks import get_task

    cfg = build_config(image_config(face_folder, tiny_cnn, tmp_path, train={"method": "linear-probe"}))
    task = get_task(cfg.task)
    prepared = task.prepare(cfg, task.load_data(cfg))
    assert vars(task) == {}
    assert set(prepared.frozen_features) == {"train", "validation", "test"}
    assert prepared.loss.class_weight is None and prepared.loss.label_smoothing == 0.0


def test_image_demo_data_is_a_class_folder_of_real_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    from tunesmith.demo import digits_folder, image_demo_config

    root = digits_folder()
    assert sorted(p.name for p in root.iterdir()) == [str(d) for d in range(10)]
    assert sum(1 for _ in root.rglob("*.png")) == 1797
    cfg = image_demo_config(tmp_path / "runs")
    assert cfg.task == "image-classification" and cfg.model.name == "efficientnet-lite0"


def test_two_stage_run_killed_after_the_head_stage_resumes_to_the_same_result(face_folder, tiny_cnn, tmp_path):
    import subprocess
    import sys
    import textwrap

    cfg = image_config(face_folder, tiny_cnn, tmp_path / "runs", train={"checkpoint_every_steps": 3},
                       image={"augment": {"rotation": 15, "noise": 0.02}})  # augmentation draws random numbers
    cfg["run_name"] = "run"
    script = textwrap.dedent(f"""
        import os, signal
        from tunesmith.config import build_config
        from tunesmith.run import fine_tune
        def die(state):  # the main stage's callbacks: the head stage has finished by then
            if state["global_step"] == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        fine_tune(build_config({cfg!r}), callbacks=[die])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "run"
    assert (run_dir / "head" / "checkpoints" / "best").is_dir()
    resumed = fine_tune(None, resume=run_dir)
    cfg["run_name"] = "straight"
    straight = fine_tune(build_config(cfg))
    for split in ("validation", "test"):
        assert resumed.results[split]["loss"] == pytest.approx(straight.results[split]["loss"], rel=1e-5)
    assert resumed.results["training"]["warmup"] == straight.results["training"]["warmup"] | {
        "train_seconds": resumed.results["training"]["warmup"]["train_seconds"]}
