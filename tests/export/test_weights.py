"""Weight-only int8 for layers kept out of int8 compute, and the size breakdown of a graph."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _graph(path, w: np.ndarray, g: np.ndarray, emb: np.ndarray) -> None:
    """x @ w (MatMul), then Gemm with g transposed; plus an unused copy of `emb` under two names."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Gemm", ["h", "g"], ["y"], name="gemm", transB=1),
             helper.make_node("Gather", ["word_embeddings.weight", "ids"], ["e"], name="gather"),
             helper.make_node("Gather", ["copy_of_embeddings", "ids"], ["e2"], name="gather2")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", w.shape[0]]),
                     helper.make_tensor_value_info("ids", TensorProto.INT64, ["b"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "e", "e2")],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(g, "g"),
         numpy_helper.from_array(emb, "word_embeddings.weight"), numpy_helper.from_array(emb, "copy_of_embeddings")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _run(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": x, "ids": np.array([0, 1], dtype=np.int64)})[0]


def test_store_int8_keeps_fp32_compute_from_per_channel_int8_weights(tmp_path):
    from tunesmith.export.weights import store_int8

    rng = np.random.default_rng(0)
    # output channels of very different scales: one scale for the whole tensor would zero the small ones
    w = (rng.standard_normal((16, 8)) * np.array([1e-3, 1, 1, 1, 1, 1, 1, 100])).astype(np.float32)
    g = rng.standard_normal((4, 8)).astype(np.float32)
    path = tmp_path / "m.onnx"
    _graph(path, w, g, rng.standard_normal((50, 16)).astype(np.float32))
    x = rng.standard_normal((2, 16)).astype(np.float32)
    before = _run(path, x)
    assert sorted(store_int8(path, ["mm", "gemm"])) == ["gemm", "mm"]
    graph = onnx.load(str(path)).graph
    types = {t.name: t.data_type for t in graph.initializer}
    assert "w" not in types and "g" not in types  # the fp32 copies are gone
    assert types["mm_w8_q"] == TensorProto.INT8 and types["gemm_w8_q"] == TensorProto.INT8
    axes = {n.name: n.attribute[0].i for n in graph.node if n.op_type == "DequantizeLinear"}
    assert axes == {"mm_w8_dq": 1, "gemm_w8_dq": 0}  # MatMul [in, out]; Gemm with transB [out, in]
    assert np.abs(_run(path, x) - before).max() < 0.02 * np.abs(before).max()
    q = numpy_helper.to_array(next(t for t in graph.initializer if t.name == "mm_w8_q"))
    s = numpy_helper.to_array(next(t for t in graph.initializer if t.name == "mm_w8_s"))
    assert np.abs(q * s - w).max(axis=0).round(9).tolist() <= (s / 2 + 1e-9).round(9).tolist()  # per channel


def test_breakdown_finds_the_embeddings_the_fp32_weights_and_a_duplicate(tmp_path):
    from tunesmith.export.weights import breakdown

    rng = np.random.default_rng(1)
    path = tmp_path / "m.onnx"
    emb = rng.standard_normal((1000, 16)).astype(np.float32)
    _graph(path, rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32), emb)
    out = breakdown(path)
    mb = emb.nbytes / 2**20
    assert out["by_role_mb"]["word embeddings"] == round(mb, 2)
    assert out["by_role_mb"]["fp32 weights (2-D)"] == round(mb + (16 * 8 + 4 * 8) * 4 / 2**20, 2)
    assert out["duplicates"] == [{"name": "copy_of_embeddings", "same_as": "word_embeddings.weight",
                                  "mb": round(mb, 2)}]
    assert {r["name"] for r in out["largest_fp32"][:2]} == {"copy_of_embeddings", "word_embeddings.weight"}
