"""One model reference (source, revision, trust_remote_code) reaches every place a pre-trained model
or its tokenizer is loaded: the task's own load, the embedding baselines, the SFT base model in the
base-vs-tuned comparison, and the base under a LoRA adapter in `export --merge`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import make_chats, tiny_config
from tests.sft.test_sft import sft_config, write_jsonl
from tunesmith.config import build_config
from tunesmith.run import fine_tune

REVISION = "v9-pinned"  # a local folder ignores it; a hub id would load exactly this revision


@pytest.fixture
def loads(monkeypatch):
    """(caller module, class, source, revision) of every from_pretrained call made by tunesmith code."""
    import transformers

    calls = []
    for name in ("AutoTokenizer", "AutoConfig", "AutoModel", "AutoModelForSequenceClassification",
                 "AutoModelForCausalLM"):
        cls = getattr(transformers, name)

        def record(source, *args, _name=name, _real=cls.from_pretrained, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("tunesmith"):
                calls.append((caller, _name, str(source), kwargs.get("revision")))
            return _real(source, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", record)
    return calls


def of(calls: list[tuple], folder: Path) -> list[tuple]:
    """The calls that loaded the pre-trained model in `folder` (not a run's own saved model)."""
    return [c for c in calls if Path(c[2]).resolve() == Path(folder).resolve()]


def test_model_ref_is_built_from_the_config():
    from tunesmith.models.registry import ModelRef

    cfg = build_config({"data": {"train": "x.csv"}, "model": {"name": "/nowhere", "revision": "abc"}})
    ref = ModelRef.from_config(cfg.model, "/somewhere")
    assert ref == ModelRef("/somewhere", "abc", False)
    assert ref.from_pretrained_kwargs() == {"revision": "abc", "trust_remote_code": False}


def test_revision_reaches_the_model_and_the_embedding_baselines(tiny_model, tiny_csv, tmp_path, loads):
    cfg = tiny_config(tiny_model, tiny_csv, tmp_path, epochs=1)
    cfg["model"]["revision"] = REVISION
    cfg["eval"] = {"baselines": ["linear_probe", "zero_shot"], "bootstrap_resamples": 100}
    run = fine_tune(build_config(cfg))
    assert set(run.results["baselines"]) == {"linear_probe", "zero_shot"}
    pretrained = of(loads, tiny_model)
    assert {c[3] for c in pretrained} == {REVISION}
    assert {c[0] for c in pretrained} == {"tunesmith.tasks.text_classification", "tunesmith.models.embed"}


def test_revision_reaches_the_sft_base_model_and_the_lora_merge(tiny_lm, tmp_path, loads):
    from tunesmith.cli import main

    train = write_jsonl(tmp_path / "chat.jsonl", make_chats(40))
    for method, extra in (("full", {}), ("lora", {"lora": {"rank": 4, "alpha": 8, "dropout": 0.0}})):
        cfg = sft_config(tiny_lm, train, tmp_path / method, method=method, epochs=1, **extra)
        cfg["model"]["revision"] = REVISION
        run = fine_tune(build_config(cfg))
        assert "base" in run.results["test"]
    assert main(["export", str(tmp_path / "lora" / "run"), "--merge"]) == 0
    pretrained = of(loads, tiny_lm)
    # the full run reloads its base for the comparison; export reloads the base under the adapter
    assert {c[3] for c in pretrained} == {REVISION}
    assert {c[0] for c in pretrained} == {"tunesmith.tasks.sft", "tunesmith.models.chat", "tunesmith.generate"}


def test_revision_reaches_a_timm_hub_model(monkeypatch):
    import timm

    from tunesmith.errors import UserError
    from tunesmith.models.vision import create_backbone

    names = []

    def offline(name, *args, **kwargs):
        names.append(name)
        raise OSError("offline")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(UserError, match="could not load it from the Hugging Face hub"):
        create_backbone("timm/resnet18.a1_in1k", None, 2, revision=REVISION)
    assert names == [f"hf-hub:timm/resnet18.a1_in1k@{REVISION}"]
