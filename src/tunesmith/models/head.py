"""The classifier's last linear layer and what it reads: the features a closed-form head is fitted on.

Every classification model tunesmith trains ends in one `nn.Linear` with one output per label
(transformers' `classifier`, timm's `get_classifier()`; under PEFT the trainable copy in
`modules_to_save`). `head_linear` finds it by that shape among the parameters that train, and
`head_inputs` records its input, in eval mode, over encoded examples.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tunesmith.models.windows import mean_rows


def head_linear(model: nn.Module, n_labels: int) -> tuple[str, nn.Linear]:
    """(module name, layer) of the last trainable nn.Linear with N_LABELS outputs."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == n_labels and m.weight.requires_grad]
    if not found:
        raise ValueError(f"the model has no trainable linear layer with {n_labels} outputs")
    return found[-1]


@torch.no_grad()
def head_inputs(model: nn.Module, n_labels: int, examples: Sequence[dict], collate: Callable,
                forward: Callable[[nn.Module, dict], object], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features [rows, in_features] float64, labels [rows]) fed to the head, with dropout off, while
    FORWARD(model, batch) (the task's `logits`) runs the model on each batch. Rows come in order of length
    (less padding), features and labels alike."""
    _, layer = head_linear(model, n_labels)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    labels = []
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].get("input_ids", ())))  # windows: by count
    try:
        for i in range(0, len(order), batch_size):
            batch = collate([examples[j] for j in order[i:i + batch_size]])
            labels.append(batch["labels"])
            forward(model, batch)
            if "window_owner" in batch:  # a windowed text's logits are its windows' mean: so are its features
                seen[-1] = mean_rows(seen[-1], batch["window_owner"], len(batch["labels"]))
    finally:
        hook.remove()
        model.train(was_training)
    if not seen:
        return np.zeros((0, layer.in_features)), np.zeros(0, dtype=np.int64)
    return torch.cat(seen).double().numpy(), torch.cat(labels).numpy()
