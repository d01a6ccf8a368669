"""PyTorch -> ONNX: the run's classifier as one graph with dynamic batch (and sequence) axes.

`torch.onnx.export` with the dynamo exporter first; when it raises, or its graph does not reproduce
the PyTorch logits on a probe batch (the dynamo path has produced wrong graphs, pytorch #169178),
the TorchScript exporter (`dynamo=False`) is used instead. Which one wrote the file, and why, is
returned for export.json.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

OPSET = 18
PROBE_TOLERANCE = 1e-3  # max |logit difference| on the probe batch for a graph to be kept


class _TextLogits:
    """A transformers sequence classifier as a function of tensors -> logits (no output dict)."""

    def __new__(cls, model, names: list[str]):
        import torch

        class Wrapper(torch.nn.Module):
            varargs = True  # forward(*tensors): torch.export sees one (tuple) input

            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors):
                return self.model(**dict(zip(names, tensors))).logits

        return Wrapper().eval()


def text_probe(tokenizer, max_length: int) -> dict[str, np.ndarray]:
    """Two texts of different lengths, padded: enough to exercise the batch and sequence axes and the mask."""
    enc = tokenizer(["a short one", "a somewhat longer text, so that the first is padded and masked"],
                    truncation=True, max_length=max_length, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def _dynamic_shapes(model, names: list[str], dynamic: dict[str, dict[int, str]]) -> tuple:
    """dynamic_axes -> the dynamo exporter's dynamic_shapes (one dict per input tensor; axes of the same
    name share one symbol, so the mask and the ids keep one sequence length)."""
    from torch.export import Dim

    dims: dict[str, Dim] = {}
    shapes = tuple({axis: dims.setdefault(label, Dim(label)) for axis, label in dynamic.get(n, {}).items()}
                   for n in names)
    return (shapes,) if getattr(model, "varargs", False) else shapes


def export_graph(model, probe: dict[str, np.ndarray], dynamic: dict[str, dict[int, str]], path: Path) -> dict:
    """Write `model` (a module taking the probe's tensors positionally, returning logits) to `path`.
    Returns {"exporter", "why", "opset", "probe_max_abs_diff"}."""
    import torch

    names = list(probe)
    args = tuple(torch.from_numpy(probe[n]) for n in names)
    with torch.no_grad():
        expected = model(*args).float().numpy()
    why = "the dynamo exporter is torch's default and its graph reproduced the PyTorch logits on a probe batch"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(path), input_names=names, output_names=["logits"],
                              dynamic_shapes=_dynamic_shapes(model, names, dynamic), opset_version=OPSET, dynamo=True,
                              external_data=False, verbose=False)
        diff = probe_diff(path, probe, expected)
        if diff <= PROBE_TOLERANCE:
            return {"exporter": "dynamo", "why": why, "opset": OPSET, "probe_max_abs_diff": diff}
        why = f"the dynamo exporter's graph differed from PyTorch by {diff:.3g} on a probe batch"
    except Exception as err:  # the dynamo path raises many types (unsupported ops, guards, onnxscript)
        why = f"the dynamo exporter failed ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
    for leftover in (path, Path(f"{path}.data")):
        leftover.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes={**dynamic, "logits": {0: "batch"}}, opset_version=OPSET, dynamo=False)
    return {"exporter": "torchscript", "why": why + "; used the TorchScript exporter (dynamo=False)", "opset": OPSET,
            "probe_max_abs_diff": probe_diff(path, probe, expected)}


def probe_diff(path: Path, probe: dict[str, np.ndarray], expected: np.ndarray) -> float:
    from tunesmith.export.runtime import session

    got = session(path, threads=1).run(["logits"], probe)[0]
    return float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")


def export_text(model_dir: Path, path: Path, max_length: int, fuse_transformer: bool = True) -> dict:
    """A saved transformers sequence classifier -> ONNX with inputs (batch, sequence) of int64; for a BERT-family
    encoder (and fuse_transformer) ORT's fused graph when it reproduces the logits (see export/fusion.py)."""
    from transformers import AutoTokenizer

    from tunesmith.models import pooling, quiet_hf

    quiet_hf()
    pooling.register()  # before the tokenizer, which reads config.json's model_type too
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = pooling.load_classifier(model_dir, attn_implementation="eager").eval()
    probe = text_probe(tokenizer, max_length)
    wrapper = _TextLogits(model, list(probe))
    dynamic = {n: {0: "batch", 1: "sequence"} for n in probe}
    info = export_graph(wrapper, probe, dynamic, path)
    if fuse_transformer:
        info = {**info, **_fused(wrapper, probe, dynamic, model.config, path)}
    return {**info, "inputs": list(probe)}


def _fused(wrapper, probe: dict[str, np.ndarray], dynamic: dict, config, path: Path) -> dict:
    """Replace the plain graph at `path` by ORT's fused one when that reproduces the probe; export.json's fields."""
    import torch

    from tunesmith.export.fusion import fuse

    names = list(probe)
    args = tuple(torch.from_numpy(probe[n]) for n in names)
    with torch.no_grad():
        expected = wrapper(*args).float().numpy()
    record = fuse(wrapper, args, names, dynamic, config, path, expected, probe, PROBE_TOLERANCE, OPSET)
    if not record["applied"]:
        return {"fusion": record}
    return {"fusion": record, "exporter": "torchscript", "probe_max_abs_diff": record["probe_max_abs_diff"],
            "why": "ORT's transformer fusion matches the TorchScript exporter's attention subgraph, so the shipped "
                   "graph is the fused TorchScript export"}


def export_image(model_dir: Path, path: Path) -> dict:
    """A saved timm classifier -> ONNX with input pixel_values (batch, 3, size, size) of float32."""
    import torch

    from tunesmith.models.vision import load_saved

    model, _, pre = load_saved(model_dir)
    probe = {"pixel_values": torch.randn(2, 3, pre.size, pre.size, generator=torch.Generator().manual_seed(0)).numpy()}
    info = export_graph(model, probe, {"pixel_values": {0: "batch"}}, path)
    return {**info, "inputs": ["pixel_values"]}


def file_mb(path: Path) -> float:
    return round(os.path.getsize(path) / 2**20, 2)
