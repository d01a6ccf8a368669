"""The int8 search: quantize the fp32 graph several ways, keep the fastest that stays within the bound.

Candidates, in order (ONNX Runtime's `onnxruntime.quantization`):
1. dynamic, per-channel weights;
2. dynamic, per-channel, reduce_range (7-bit weights: safer on CPUs without VNNI);
3. dynamic, per-channel, with the first and last weight layers (stem / embeddings side and the
   classifier) kept in fp32 via nodes_to_exclude;
4. static QDQ (weights per channel, activations uint8, calibrated on padded batches of training
   rows); in a transformer only the weight layers (Conv/MatMul/Gemm): the attention-mask Add,
   Softmax, LayerNorm, GELU and the embeddings stay fp32 (quantizing every op let the mask's
   −3.4e38 set the Add's range and took a MiniLM to 24 % agreement); see static_op_types;
5. SmoothQuant (α = 0.5, then 0.75), dynamic per-channel: the fp32 graph is first smoothed (export/smooth.py:
   each weight layer's input divided per channel by s, its weight's input rows multiplied by s; same fp32
   logits, flatter activations for dynamic int8's one scale per tensor); transformer graphs only;
6. sensitivity-guided: starting from the setting above that agreed best on the validation rows,
   each weight layer is quantized alone and its damage to the validation logits measured; the k most
   damaging stay out of int8 compute, for the smallest k (1, 2, 3, 4, 6, 8, …) whose validation rows
   clear the bound. For each k the kept layers first compute in fp32 from int8-stored weights (per
   output channel, a DequantizeLinear in front: the damage of dynamic int8 is mostly the activations',
   and this keeps the file at int8 size); only if that fails do their weights stay fp32 too.
   Only validation rows choose k: test rows are then scored by the gate like every other setting.
The caller hands `quantize` the fp32 graph a candidate reads (prepared; symbolic-prepared for static QDQ of a
fused graph; smoothed for SmoothQuant). Each is scored on the run's validation and test rows against the PyTorch
logits and timed at batch 1; the fastest whose agreement is ≥ 99 % and test accuracy loss ≤ 0.5 points is kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

WEIGHT_OPS = ("Conv", "MatMul", "Gemm")
RANKED_OPS = WEIGHT_OPS + ("Attention",)  # ORT's fused attention holds the Q/K/V weights: a layer like the others
SMOOTH_ALPHAS = (0.5, 0.75)  # SmoothQuant's migration strength: the paper's default, and more onto the weights
FLOAT = 1  # onnx.TensorProto.FLOAT: the quantizer's type for tensors of ORT's contrib ops that shape inference skips


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
            Candidate("static QDQ per-channel, calibrated on training rows", "static",
                      {"per_channel": True})] + [
            Candidate(f"dynamic per-channel, SmoothQuant α={alpha}", "dynamic", {"per_channel": True, "smooth": alpha})
            for alpha in SMOOTH_ALPHAS]


def keeping(base: Candidate, fp32_nodes: list[str], int8_weights: bool = False) -> Candidate:
    """`base` with `fp32_nodes` left out of int8 compute (the sensitivity-guided setting); with int8_weights their
    weights (and those of any other layer `base` leaves fp32) are stored int8 and dequantized to fp32."""
    if int8_weights:
        return Candidate(f"{base.name}, {len(fp32_nodes)} most sensitive layers fp32 compute; every fp32-compute "
                         "layer's weights stored int8",
                         base.kind, {**base.options, "keep_fp32": list(fp32_nodes), "int8_weights": True})
    return Candidate(f"{base.name}, {len(fp32_nodes)} most sensitive layers fp32", base.kind,
                     {**base.options, "keep_fp32": list(fp32_nodes)})


def only(base: Candidate, node: str) -> Candidate:
    """`base` applied to the one layer `node` (everything else fp32): a sensitivity probe."""
    return Candidate(f"{base.name}, {node} alone", base.kind, {**base.options, "only": [node]})


def fp32_counts(n_layers: int) -> list[int]:
    """How many layers to keep fp32, in the order tried: 1, 2, 3, 4, 6, 8, 12, … up to half the layers
    (past that little of the int8 speed-up is left)."""
    out, k = [], 1
    while k <= max(1, n_layers // 2):
        out.append(k)
        k = k + 1 if k < 4 else k * 3 // 2
    return out


def rank_layers(base: Candidate, source: Path, work: Path, calibration: Callable[[], list[dict]],
                damage: Callable[[Path], float]) -> list[tuple[str, float]]:
    """Each weight layer quantized alone with `base`'s setting, scored by `damage` (a model path -> how far
    its logits move from fp32 on validation rows); most damaging first."""
    scores = []
    for node in weight_nodes(source):
        out = work / "probe.onnx"
        quantize(only(base, node), source, out, calibration)
        scores.append((node, float(damage(out))))
        out.unlink()
    return sorted(scores, key=lambda s: -s[1])


def end_nodes(path: Path) -> list[str]:
    """Names of the first and the last weight layers (Conv/MatMul/Gemm) in graph order."""
    import onnx

    nodes = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in RANKED_OPS]
    return list(dict.fromkeys(nodes[:1] + nodes[-1:]))


def weight_nodes(path: Path) -> list[str]:
    """Conv/MatMul/Gemm/Attention nodes with a constant weight, in graph order: the layers the sensitivity search ranks
    (a MatMul of two activations, such as attention's Q·Kᵀ, has no weight to keep in fp32)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type in RANKED_OPS and any(i in consts for i in n.input[1:2])]


def prepared(fp32: Path, work: Path, symbolic: bool = False) -> Path:
    """ONNX shape inference and graph optimisation before quantization (ORT's advice); the raw graph if it fails.
    ORT's symbolic shape inference is skipped unless `symbolic`: it fails on the dynamo exporter's graphs and then
    saves a debug model into the current folder. Static QDQ of a fused transformer graph needs it: without the
    types of the contrib ops' outputs the calibrator has no range for the tensors after them."""
    import os

    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / ("pre_symbolic.onnx" if symbolic else "pre.onnx")
    cwd = os.getcwd()
    os.chdir(work)  # anything ORT writes next to "the current folder" stays in the temporary one
    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=not symbolic)
        return out
    except Exception:  # an optimisation ORT cannot apply to this graph: quantize the raw one
        return fp32
    finally:
        os.chdir(cwd)


def is_fused(path: Path) -> bool:
    """Whether the graph holds ORT's fused (contrib) Attention."""
    import onnx

    return any(n.op_type == "Attention" for n in onnx.load(str(path), load_external_data=False).graph.node)


def static_op_types(path: Path) -> list[str] | None:
    """What static QDQ quantizes: in a transformer graph (one with Softmax, or ORT's fused Attention) only the
    weight layers, since the attention-mask Add (−3.4e38), Softmax, LayerNorm and GELU lose too much in int8
    (every op quantized took a MiniLM to 24 % agreement); in a CNN ORT's default (every op it can), which
    agreed on 96.5 % of an EfficientNet-Lite0's rows against 62.9 % with the Conv layers alone."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return list(WEIGHT_OPS) if ops & {"Softmax", "Attention"} else None


def _with_gemm_names(nodes: list[str]) -> list[str]:
    """`nodes` and, for each, the name ORT's dynamic quantizer gives a Gemm after rewriting it as MatMul + Add
    (NAME_MatMul): without it, keeping a Gemm classifier in fp32 by name silently quantizes it anyway."""
    return [m for n in nodes for m in (n, f"{n}_MatMul")]


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
    opts.pop("smooth", None)  # `source` is the smoothed graph already (the caller's choice of source)
    ends = end_nodes(source) if opts.pop("exclude_ends", False) else []
    kept = ends + opts.pop("keep_fp32", [])
    int8_weights = opts.pop("int8_weights", False)
    exclude = _with_gemm_names(kept)
    chosen = _with_gemm_names(opts.pop("only", []))
    # the ranges are calibrated once per search folder and reused by every static setting and probe
    cache = out.parent / "calibration_ranges.json"
    feeds = calibration() if candidate.kind == "static" and not cache.is_file() else None
    cwd = os.getcwd()
    os.chdir(out.parent)  # as in prepared(): nothing ORT saves "here" lands in the user's folder
    try:
        if candidate.kind == "dynamic":
            quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, nodes_to_exclude=exclude or None,
                             nodes_to_quantize=chosen or None, extra_options={"DefaultTensorType": FLOAT}, **opts)
        else:
            quantize_static(str(source), str(out), _Reader(feeds) if feeds is not None else None,
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=static_op_types(source),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=exclude or None, nodes_to_quantize=chosen or None,
                            calibration_cache_path=cache, extra_options={"DefaultTensorType": FLOAT}, **opts)
    finally:
        os.chdir(cwd)
    if int8_weights and kept:
        from tunesmith.export.weights import store_int8

        store_int8(out, kept)
