"""The int8 search: quantize the fp32 graph several ways, keep the fastest that stays within the bound.

Candidates, in order (ONNX Runtime's `onnxruntime.quantization`):
1. dynamic, per-channel weights;
2. dynamic, per-channel, reduce_range (7-bit weights: safer on CPUs without VNNI);
3. dynamic, per-channel, with the first and last weight layers (stem / embeddings side and the
   classifier) kept in fp32 via nodes_to_exclude;
4. static QDQ (weights and activations), calibrated on a sample of training rows.
Each is scored on the run's validation and test rows against the PyTorch logits and timed at
batch 1; the fastest whose agreement is ≥ 99 % and test accuracy loss ≤ 0.5 points is kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

WEIGHT_OPS = ("Conv", "MatMul", "Gemm")


@dataclass
class Candidate:
    name: str
    kind: str  # "dynamic" or "static"
    options: dict = field(default_factory=dict)


def candidates() -> list[Candidate]:
    return [Candidate("dynamic per-channel", "dynamic", {"per_channel": True}),
            Candidate("dynamic per-channel reduce_range", "dynamic", {"per_channel": True, "reduce_range": True}),
            Candidate("dynamic per-channel, first and last layers fp32", "dynamic",
                      {"per_channel": True, "exclude_ends": True}),
            Candidate("static QDQ per-channel, calibrated on training rows", "static", {"per_channel": True})]


def end_nodes(path: Path) -> list[str]:
    """Names of the first and the last weight layers (Conv/MatMul/Gemm) in graph order."""
    import onnx

    nodes = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in WEIGHT_OPS]
    return list(dict.fromkeys(nodes[:1] + nodes[-1:]))


def prepared(fp32: Path, work: Path) -> Path:
    """ONNX shape inference and graph optimisation before quantization (ORT's advice); the raw graph if it fails.
    ORT's symbolic shape inference is skipped: it fails on the dynamo exporter's graphs and then saves a debug
    model into the current folder."""
    import os

    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "pre.onnx"
    cwd = os.getcwd()
    os.chdir(work)  # anything ORT writes next to "the current folder" stays in the temporary one
    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
        return out
    except Exception:  # an optimisation ORT cannot apply to this graph: quantize the raw one
        return fp32
    finally:
        os.chdir(cwd)


class _Reader:
    """Feeds calibration batches to quantize_static."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)

    def rewind(self):  # older and newer ORT versions call it
        pass


def quantize(candidate: Candidate, source: Path, out: Path, calibration: Callable[[], list[dict]]) -> None:
    """Write `candidate`'s int8 graph of `source` to `out`."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    import os

    logging.getLogger("root").setLevel(logging.ERROR)  # ORT's quantizer logs every skipped node
    opts = dict(candidate.options)
    exclude = end_nodes(source) if opts.pop("exclude_ends", False) else None
    feeds = calibration() if candidate.kind == "static" else None
    cwd = os.getcwd()
    os.chdir(out.parent)  # as in prepared(): nothing ORT saves "here" lands in the user's folder
    try:
        if candidate.kind == "dynamic":
            quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, nodes_to_exclude=exclude, **opts)
        else:
            quantize_static(str(source), str(out), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                            **opts)
    finally:
        os.chdir(cwd)
