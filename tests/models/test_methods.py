"""Saving a model: model/ and adapter/ appear whole or not at all."""
from __future__ import annotations

import pytest

from tunesmith.models.methods import save_model


def _tiny(tiny_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)


def test_a_save_killed_halfway_leaves_no_model_folder(tiny_model, tmp_path, monkeypatch):
    model, tokenizer = _tiny(tiny_model)
    real = type(model).save_pretrained

    def killed_after_the_config(self, folder, *args, **kwargs):
        self.config.save_pretrained(folder)  # config.json is written first, then the weights
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_pretrained", killed_after_the_config)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, tokenizer, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []  # neither model/ nor a temporary folder

    monkeypatch.setattr(type(model), "save_pretrained", real)
    save_model(model, tokenizer, tmp_path / "model")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "model").iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_lora_save_killed_halfway_leaves_no_adapter_folder(tiny_model, tmp_path, monkeypatch):
    from peft import LoraConfig, PeftModel, get_peft_model

    model, tokenizer = _tiny(tiny_model)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"]))

    def killed_after_the_config(self, folder, *args, **kwargs):
        self.peft_config["default"].save_pretrained(folder)  # adapter_config.json, then no weights
        raise KeyboardInterrupt

    monkeypatch.setattr(PeftModel, "save_pretrained", killed_after_the_config)
    with pytest.raises(KeyboardInterrupt):
        save_model(peft, tokenizer, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []
