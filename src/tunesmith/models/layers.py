"""Layer-wise learning-rate decay for transformer encoders (ULMFiT's discriminative rates; ELECTRA and
BEiT use it for fine-tuning): the head at the peak rate, each layer below at `decay` times the one above."""
from __future__ import annotations

import re

import torch

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_depth(name: str, n_layers: int) -> int:
    """0 for the embeddings, i + 1 for the i-th encoder layer, n_layers + 1 for the pooler and the head."""
    found = _LAYER.search(name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embed" in name else n_layers + 1


def encoder_depth(model: torch.nn.Module) -> int:
    """How many numbered encoder layers the model's parameter names show (0 when none)."""
    layers = {int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))}
    return max(layers) + 1 if layers else 0


def freeze_bottom(model: torch.nn.Module, n_layers: int) -> None:
    """Freeze the embeddings (all of them: word, position, token type, their norm) and the bottom
    `n_layers` encoder layers. With nothing below it trainable, autograd records nothing under layer
    `n_layers` and the backward pass stops there."""
    depth = encoder_depth(model)
    for name, p in model.named_parameters():
        if layer_depth(name, depth) <= n_layers:
            p.requires_grad_(False)


def layer_decay_groups(model: torch.nn.Module, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """Optimizer groups of the trainable weights: one rate per depth (lr * decay ** (top - depth)), and no
    weight decay on biases and norm weights (1-D tensors), as the loop's single-rate groups."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_layers = encoder_depth(model)
    top = n_layers + 1
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in named:
        depth, flat = layer_depth(name, n_layers), p.ndim < 2
        g = groups.setdefault((depth, flat), {"params": [], "lr": lr * decay ** (top - depth),
                                              "weight_decay": 0.0 if flat else weight_decay})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]
