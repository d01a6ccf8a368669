"""Weight-only int8 for the layers the int8 search keeps out of int8 compute, and the size breakdown of a graph.

`store_int8` rewrites the constant weight of each named MatMul / Gemm / Attention node as int8 (symmetric, one
scale per output channel) followed by a DequantizeLinear: the node still multiplies fp32 activations, so the
dynamic quantizer's per-tensor activation rounding (what damages a sensitive layer) is avoided, while the file
holds a quarter of the bytes. `breakdown` says where a graph's bytes are (the export's size record).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _channel_axis(node) -> int | None:
    """The output-channel axis of the node's weight (input 1), or None for a node this does not handle."""
    if node.op_type in ("MatMul", "Attention"):
        return 1  # [in, out]; Attention's is [hidden, 3 × hidden]
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def int8_per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of a 2-D weight with one scale per slice along `axis`: (q, scale), w ≈ q × scale."""
    reduce = 1 - axis
    scale = np.abs(w).max(axis=reduce) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero channel stays exactly zero
    shape = [1, 1]
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def store_int8(path: Path, nodes: list[str]) -> list[str]:
    """Rewrite, in place, the fp32 constant weight of each node named in `nodes` as int8 + DequantizeLinear.
    Returns the names of the nodes rewritten (a node without a 2-D fp32 initializer weight is left alone)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    wanted = set(nodes) | {f"{n}_MatMul" for n in nodes}  # ORT's dynamic quantizer renames a Gemm NAME_MatMul
    done, front = [], []
    for node in graph.node:
        axis = _channel_axis(node)
        if node.name not in wanted or axis is None or len(node.input) < 2 or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) != 2:
            continue
        q, scale = int8_per_channel(numpy_helper.to_array(init), axis)
        base = f"{node.name}_w8"
        graph.initializer.extend([numpy_helper.from_array(q, f"{base}_q"), numpy_helper.from_array(scale, f"{base}_s"),
                                  numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{base}_z")])
        front.append(helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_s", f"{base}_z"], [f"{base}_w"],
                                      name=f"{base}_dq", axis=axis))
        node.input[1] = f"{base}_w"
        done.append(node.name)
    used = {i for n in list(graph.node) + front for i in n.input}
    for name in {n for n in inits if n not in used}:  # the fp32 copies no node reads any more
        graph.initializer.remove(inits[name])
    for dq in reversed(front):  # their inputs are initializers: first in graph order is always valid
        graph.node.insert(0, dq)
    tmp = path.with_name(path.name + ".w8")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return done


def breakdown(path: Path) -> dict:
    """Where the bytes of the graph at `path` are: initializer MB by element type and by role (word embeddings,
    other weights, the rest), the largest fp32 initializers, and initializers stored twice (same bytes)."""
    import hashlib

    import onnx

    graph = onnx.load(str(path)).graph
    by_type: dict[str, float] = {}
    roles = {"word embeddings": 0.0, "fp32 weights (2-D)": 0.0, "int8 weights (2-D)": 0.0, "other": 0.0}
    seen: dict[str, str] = {}
    dupes, fp32 = [], []
    for t in graph.initializer:
        data = t.raw_data or onnx.numpy_helper.to_array(t).tobytes()
        mb = len(data) / 2**20
        kind = onnx.TensorProto.DataType.Name(t.data_type)
        by_type[kind] = by_type.get(kind, 0.0) + mb
        role = ("word embeddings" if "word_embeddings" in t.name else
                "fp32 weights (2-D)" if kind == "FLOAT" and len(t.dims) == 2 else
                "int8 weights (2-D)" if kind in ("INT8", "UINT8") and len(t.dims) == 2 else "other")
        roles[role] += mb
        if kind == "FLOAT" and len(t.dims) == 2:
            fp32.append((mb, t.name))
        digest = hashlib.sha1(data).hexdigest() + str(list(t.dims))
        if mb >= 0.01 and digest in seen:
            dupes.append({"name": t.name, "same_as": seen[digest], "mb": round(mb, 2)})
        seen.setdefault(digest, t.name)
    return {"file_mb": round(path.stat().st_size / 2**20, 2),
            "by_type_mb": {k: round(v, 2) for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])},
            "by_role_mb": {k: round(v, 2) for k, v in roles.items()},
            "largest_fp32": [{"name": n, "mb": round(m, 2)} for m, n in sorted(fp32, reverse=True)[:5]],
            "duplicates": dupes}
