"""train.precision: bf16 autocast runs on the CPU; fp16 without CUDA is refused before compute."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_config
from tunesmith.config import TrainConfig, build_config
from tunesmith.errors import UserError
from tunesmith.run import fine_tune, mixed_precision


def _loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch["x"]).float(), batch["labels"])


def _train(precision: str, tmp_path) -> list[torch.dtype]:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from tunesmith.train.loop import train_loop

    AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision(precision))
    torch.manual_seed(0)
    examples = [{"x": torch.randn(4), "labels": i % 2} for i in range(16)]
    collate = lambda items: {"x": torch.stack([e["x"] for e in items]),  # noqa: E731
                             "labels": torch.tensor([e["labels"] for e in items])}
    layer = torch.nn.Linear(4, 2)
    model = torch.nn.Sequential(layer)
    dtypes: list[torch.dtype] = []  # what the layer computed in (Accelerate casts the model's outputs back to fp32)
    layer.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    cfg = TrainConfig(batch_size=4, logging_steps=2, precision=precision)
    (tmp_path / precision).mkdir()
    train_loop(_loss, model, examples, [1] * 16, collate, lambda m: {"loss": 0.0, "macro_f1": 0.0},
               cfg, 1, 1e-2, tmp_path / precision, accelerator)
    AcceleratorState._reset_state()
    return dtypes


def test_bf16_autocasts_the_forward_pass_on_cpu(tmp_path):
    assert set(_train("bf16", tmp_path)) == {torch.bfloat16}
    assert set(_train("fp32", tmp_path)) == {torch.float32}


def test_runs_of_different_precision_share_a_process(tiny_model, tiny_csv, tmp_path):
    """A study may search train.precision: Accelerate's one-precision-per-process state must not refuse it."""
    bf16 = fine_tune(build_config(tiny_config(tiny_model, tiny_csv, tmp_path, epochs=1, precision="bf16")))
    from accelerate.state import AcceleratorState

    assert AcceleratorState._shared_state["_mixed_precision"] == "bf16"  # the run's Accelerator took the setting
    cfg = tiny_config(tiny_model, tiny_csv, tmp_path, epochs=1)
    cfg["run_name"] = "fp32"
    fp32 = fine_tune(build_config(cfg))
    assert yaml_precision(bf16.path) == "bf16" and yaml_precision(fp32.path) == "fp32"
    logged = [json.loads(line)["loss"] for line in (bf16.path / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["type"] == "train"]
    assert logged and all(0 < x < 10 for x in logged)


def yaml_precision(run_dir) -> str:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["precision"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without CUDA")
def test_fp16_without_cuda_is_one_clear_error():
    with pytest.raises(UserError, match=r"train.precision = 'fp16': needs a CUDA GPU"):
        mixed_precision("fp16")


def test_auto_precision_is_bf16_only_for_large_text_runs_on_native_bf16_hardware(monkeypatch):
    from tunesmith.train import precision as P

    monkeypatch.setattr(P, "native_bf16", lambda: True)
    assert P.resolve_precision("auto", "text-classification", P.AUTO_BF16_MIN_ROWS) == "bf16"
    assert P.resolve_precision("auto", "text-classification", P.AUTO_BF16_MIN_ROWS - 1) == "fp32"
    assert P.resolve_precision("auto", "image-classification", 10**5) == "fp32"
    assert P.resolve_precision("fp32", "text-classification", 10**5) == "fp32"  # a set value is kept
    monkeypatch.setattr(P, "native_bf16", lambda: False)
    assert P.resolve_precision("auto", "text-classification", 10**5) == "fp32"
    assert P.resolve_precision("bf16", "sft", 10) == "bf16"


def test_bf16_on_the_cpu_trains_with_eager_attention(tiny_model, tiny_csv, tmp_path, monkeypatch):
    """SDPA's bf16 backward on the CPU is slow (issue 13): a bf16 text run loads the model with eager attention,
    an fp32 one keeps the library's default."""
    from tunesmith.tasks import get_task

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    impl = {}
    for precision in ("bf16", "fp32"):
        cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, precision=precision))
        task = get_task(cfg.task)
        impl[precision] = task.prepare(cfg, task.load_data(cfg)).model.config._attn_implementation
    assert impl == {"bf16": "eager", "fp32": "sdpa"}
