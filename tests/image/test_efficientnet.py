"""The real shipped EfficientNet-Lite0 weights: the key mapping, and fine-tuning on real X-rays."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tunesmith.config import build_config
from tunesmith.run import fine_tune

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.e2e
def test_mapped_weights_give_the_reference_code_s_prediction_for_chelsea():
    from efficientnet_lite_pytorch import EfficientNet
    from skimage.data import chelsea

    from tunesmith.models.vision import create_backbone, preprocess_of, read_weights

    model, weights_file = create_backbone("efficientnet-lite0", None, 1000)
    pre = preprocess_of(model)
    assert (pre.size, pre.mean, pre.std) == (224, (0.5,) * 3, (0.5,) * 3)  # from timm's pretrained config
    x = torch.tensor(chelsea()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
    x = (x - 0.5) / 0.5
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(read_weights(weights_file))
    with torch.no_grad():
        ours, theirs = model.eval()(x), reference.eval()(x)
    assert int(ours.argmax()) == int(theirs.argmax()) and int(ours.argmax()) in CATS
    assert torch.allclose(ours, theirs, atol=1e-4)  # same architecture (TF 'same' padding), same weights


@pytest.mark.e2e
def test_efficientnet_lite0_beats_the_baselines_on_real_xrays(needs_shared, tmp_path):
    cfg = build_config({
        "task": "image-classification", "output_dir": str(tmp_path),
        "model": {"name": "efficientnet-lite0"},
        "data": {"train": str(needs_shared / "data" / "pneumoniamnist.npz"), "max_train_rows": 400},
        "image": {"label_names": ["normal", "pneumonia"], "size": 64, "freeze_epochs": 1},
        "train": {"epochs": 1, "batch_size": 32},
        "audit": {"on_issue": "fix"}, "eval": {"bootstrap_resamples": 200}})
    res = fine_tune(cfg).results
    majority = res["baselines"]["majority_class"]["test"]["accuracy"]
    assert res["test"]["n"] >= 460 and majority == pytest.approx(0.5, abs=0.01)
    assert res["test"]["accuracy"] > majority + 0.15
    assert np.isfinite(res["baselines"]["linear_probe"]["test"]["loss"])
