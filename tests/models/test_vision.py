"""Saving an image model: model/ appears whole or not at all."""
from __future__ import annotations

from pathlib import Path

import pytest


def test_an_image_model_save_killed_halfway_leaves_no_model_folder(tmp_path, monkeypatch):
    import timm

    from tunesmith.models.vision import load_saved, save_backbone

    model = timm.create_model("test_efficientnet", num_classes=2)
    real = timm.models.save_for_hf

    def killed_after_the_config(model, folder, **kwargs):
        (Path(folder) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(timm.models, "save_for_hf", killed_after_the_config)
    with pytest.raises(KeyboardInterrupt):
        save_backbone(model, ["a", "b"], tmp_path / "model", {})
    assert list(tmp_path.iterdir()) == []  # neither model/ nor a temporary folder

    monkeypatch.setattr(timm.models, "save_for_hf", real)
    save_backbone(model, ["a", "b"], tmp_path / "model", {})
    assert load_saved(tmp_path / "model")[1] == ["a", "b"]
