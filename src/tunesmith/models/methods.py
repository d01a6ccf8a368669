"""How a fine-tuning method wraps a pre-trained model: full, LoRA (PEFT) or linear probe."""
from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.config import LoraSettings
from tunesmith.errors import UserError


def head_parameter_names(model: torch.nn.Module) -> list[str]:
    """Parameters outside the pre-trained body (`model.base_model`): the task head."""
    body = {id(p) for p in model.base_model.parameters()} if model.base_model is not model else set()
    return [n for n, p in model.named_parameters() if id(p) not in body]


def apply_method(model: torch.nn.Module, method: str, lora: LoraSettings, task_type: str) -> torch.nn.Module:
    """Return the model ready to train with `method`; only its trainable parameters need saving."""
    if method in ("full", "auto"):  # auto is resolved before a run prepares its model; alone it means full
        return model
    if method == "linear-probe":
        head = set(head_parameter_names(model))
        if not head:
            raise UserError("train.method = 'linear-probe': this model has no separate head to train")
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
        return model
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        peft_cfg = LoraConfig(task_type=task_type, r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              target_modules=lora.target_modules)
        try:
            return get_peft_model(model, peft_cfg)
        except ValueError as err:
            raise UserError(f"train.lora.target_modules: {str(err).splitlines()[0]}") from None
    raise UserError(f"train.method = {method!r}: expected one of auto, full, lora, linear-probe")


def _stat_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Saved floating-point buffers: statistics that training updates (BatchNorm running mean and variance)."""
    persistent = model.state_dict(keep_vars=True).keys()
    return {n: b for n, b in model.named_buffers() if n in persistent and b.is_floating_point()}


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes, and running statistics: what a checkpoint must hold
    (frozen weights are rebuilt from the pre-trained model)."""
    state = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    return {**state, **{n: b.detach().cpu().clone() for n, b in _stat_buffers(model).items()}}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = {**dict(model.named_parameters()), **_stat_buffers(model)}
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise UserError(f"checkpoint does not match the model (missing {missing[:3]}, unknown {unknown[:3]}); "
                        "was the config changed since the run started?")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_model(model: torch.nn.Module, preprocessor, folder: Path, max_length: int | None = None) -> None:
    """save_pretrained in safetensors; a PEFT model also keeps its adapter and is merged for `model/`. A
    mean-pooled classifier is saved so that it loads the same outside tunesmith (see models/pooling.py);
    `max_length` is its token limit."""
    from peft import PeftModel

    from tunesmith.io import staged_dir
    from tunesmith.models.pooling import portable, write_portable_files

    folder = Path(folder)
    if isinstance(model, PeftModel):
        with staged_dir(folder.parent / "adapter") as tmp:  # a killed save leaves no half adapter/
            model.save_pretrained(tmp)
            preprocessor.save_pretrained(tmp)
        model = model.merge_and_unload()
    model = portable(model)
    with staged_dir(folder) as tmp:
        model.save_pretrained(tmp)
        preprocessor.save_pretrained(tmp)
        write_portable_files(model, tmp, max_length)
