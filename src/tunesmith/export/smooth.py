"""SmoothQuant on an ONNX graph: move activation outliers into the weights before dynamic int8.

Xiao, Lin, Seznec, Wu, Demouth and Han, "SmoothQuant: Accurate and Efficient Post-Training Quantization for
Large Language Models", ICML 2023 (arXiv:2211.10438). Dynamic int8 quantizes each activation tensor with one
scale, so a few input channels with large values (the outliers of a transformer's LayerNorm and GELU outputs)
set the step for every channel. For each input channel j of a weight layer, with max|X_j| over calibration
rows and max|W_j| over the weights that read that channel,

    s_j = max|X_j|^α / max|W_j|^(1 − α),

the activation is divided by s and the weight's input row j multiplied by s: X·W = (X / s)·(s · W) exactly in
fp32, while X / s has flatter channels (α = 0.5 splits the difficulty evenly between activations and weights).

The paper folds 1/s into the preceding LayerNorm's scale and shift. That is exact only where the LayerNorm's
output feeds nothing but the smoothed layers (pre-LN models such as OPT). In a post-LN encoder (BERT, MiniLM)
that output is also the residual stream, and the FFN output layer reads a GELU, which no scale can pass through;
so here 1/s is an explicit `Mul` in front of the layer (one element-wise product, shared by every layer reading
the same tensor: Q, K and V, or ORT's fused Attention). This works on any graph, fused or not, and leaves every
other consumer of the tensor untouched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

SMOOTHED_OPS = ("MatMul", "Gemm", "Attention")
EPS = 1e-5  # the paper's clamp: a channel never seen non-zero keeps a finite scale


def _weight_axis(node, inits: dict) -> int | None:
    """The axis of the node's constant 2-D weight (input 1) that runs over input channels; None if not smoothable."""
    if node.op_type not in SMOOTHED_OPS or len(node.input) < 2 or node.input[1] not in inits:
        return None
    if len(inits[node.input[1]].dims) != 2:
        return None
    attrs = {a.name: a.i for a in node.attribute}
    if node.op_type == "Gemm":
        if attrs.get("transA", 0):
            return None
        return 1 if attrs.get("transB", 0) else 0
    return 0  # MatMul [in, out]; Attention [hidden, 3 × hidden]


def smoothable(path: Path) -> dict[str, list[str]]:
    """{activation tensor: names of the weight layers reading it} for the layers smoothing can rescale: a constant
    2-D weight read by no other node, and an activation that is not a graph input."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    inputs = {i.name for i in graph.input}
    groups: dict[str, list[str]] = {}
    for node in graph.node:
        if _weight_axis(node, inits) is None or readers[node.input[1]] != 1 or node.input[0] in inputs:
            continue
        groups.setdefault(node.input[0], []).append(node.name)
    return groups


def activation_maxima(path: Path, tensors: Iterable[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |value| of each named tensor of the graph at `path` over the feed batches."""
    import onnx

    from tunesmith.export.runtime import session

    names = list(tensors)
    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in have)
    probe = path.with_name(path.stem + ".probe.onnx")
    onnx.save(model, str(probe))
    try:
        sess = session(probe, threads=1)
        out: dict[str, np.ndarray] = {}
        for feed in feeds:
            for name, value in zip(names, sess.run(names, feed)):
                m = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
                out[name] = np.maximum(out[name], m) if name in out else m
        return out
    finally:
        probe.unlink(missing_ok=True)


def scales(act_max: np.ndarray, weights: list[tuple[np.ndarray, int]], alpha: float) -> np.ndarray:
    """s_j = max|X_j|^α / max|W_j|^(1−α), max|W_j| over every weight reading channel j (given as (w, input axis))."""
    w_max = np.max([np.abs(w).max(axis=1 - axis) for w, axis in weights], axis=0)
    s = np.maximum(act_max, EPS) ** alpha / np.maximum(w_max, EPS) ** (1 - alpha)
    return np.maximum(s, EPS).astype(np.float32)


def smooth(source: Path, out: Path, feeds: Callable[[], list[dict]] | list[dict], alpha: float = 0.5,
           maxima: dict[str, np.ndarray] | None = None) -> dict:
    """Write the smoothed graph of `source` to `out` (same logits in fp32; see the module docstring).
    `feeds`: calibration batches (graph inputs) for the activation maxima, unless `maxima` gives them.
    Returns a record: alpha, how many activations / layers were smoothed, the per-tensor activation range
    before and after (the largest channel max, which sets dynamic int8's step), and `maxima` for reuse."""
    import onnx
    from onnx import helper, numpy_helper

    groups = smoothable(source)
    if maxima is None:
        maxima = activation_maxima(source, groups, feeds() if callable(feeds) else feeds)
    model = onnx.load(str(source))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    ranges = []
    muls = []
    for i, (tensor, names) in enumerate(groups.items()):
        layers = [nodes[n] for n in names]
        axes = [_weight_axis(n, inits) for n in layers]
        ws = [numpy_helper.to_array(inits[n.input[1]]) for n in layers]
        s = scales(maxima[tensor], list(zip(ws, axes)), alpha)
        for node, w, axis in zip(layers, ws, axes):
            shape = [1, 1]
            shape[axis] = -1
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * s.reshape(shape)).astype(w.dtype),
                                                                  node.input[1]))
        smoothed = f"{tensor}_smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"smooth{i}_inv_scale"))
        muls.append((layers, helper.make_node("Mul", [tensor, f"smooth{i}_inv_scale"], [smoothed],
                                              name=f"smooth{i}_Mul")))
        for node in layers:
            node.input[0] = smoothed
        ranges.append((float(maxima[tensor].max()), float((maxima[tensor] / s).max())))
    for layers, mul in muls:  # just before the first layer reading it: the tensor is produced by then
        first = min(list(graph.node).index(n) for n in layers)
        graph.node.insert(first, mul)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    ratios = [after / before for before, after in ranges if before > 0]
    return {"alpha": alpha, "activations": len(groups), "layers": sum(len(v) for v in groups.values()),
            "range_before": {"max": max((b for b, _ in ranges), default=0.0),
                             "median": float(np.median([b for b, _ in ranges])) if ranges else 0.0},
            "range_after": {"max": max((a for _, a in ranges), default=0.0),
                            "median": float(np.median([a for _, a in ranges])) if ranges else 0.0},
            "median_range_ratio": float(np.median(ratios)) if ratios else 1.0, "maxima": maxima}
