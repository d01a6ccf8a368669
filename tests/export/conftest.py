"""Finished tiny runs to export: a text run on the tiny BERT and an image run on timm's test_efficientnet."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import build_tiny_bert, make_rows, tiny_config


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    root = tmp_path_factory.mktemp("export-text")
    model = build_tiny_bert(root / "bert")
    make_rows(160, seed=1).to_csv(root / "reviews.csv", index=False)
    return fine_tune(build_config(tiny_config(model, root / "reviews.csv", root / "runs"))).path


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    """Real grey photographs (scikit-image's LFW subset), 40 per class, on a tiny seeded timm CNN."""
    import timm
    import torch
    from safetensors.torch import save_file
    from skimage.data import lfw_subset

    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    root = tmp_path_factory.mktemp("export-image")
    imgs = (lfw_subset() * 255).round().astype(np.uint8)
    for name, part in zip(("face", "other"), (imgs[:100], imgs[100:])):
        (root / "data" / name).mkdir(parents=True)
        for i, img in enumerate(part[:40]):
            Image.fromarray(img).save(root / "data" / name / f"{i:03d}.png")
    torch.manual_seed(0)
    save_file(timm.create_model("test_efficientnet", num_classes=1000).state_dict(), str(root / "w.safetensors"))
    cfg = {"task": "image-classification", "output_dir": str(root / "runs"), "run_name": "img",
           "model": {"name": "test_efficientnet", "weights": str(root / "w.safetensors")},
           "data": {"train": str(root / "data")}, "image": {"size": 32, "freeze_epochs": 1},
           "train": {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "logging_steps": 2},
           "eval": {"bootstrap_resamples": 100}}
    return fine_tune(build_config(cfg)).path
