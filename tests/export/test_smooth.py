"""SmoothQuant on the exported graph: fp32 logits unchanged, activation ranges in front of the weight layers flatter."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import build_tiny_bert

OUTLIER = 40.0


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory):
    """The fused ONNX graph of a tiny BERT with outlier channels (as trained BERTs have): one channel of the
    embeddings LayerNorm and of layer 0's attention-output LayerNorm scaled by 40, so the activations read by
    layer 0's Attention and FFN input layer have one channel far above the others. Returns (graph, feeds)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.export.fusion import fuse
    from tunesmith.export.graph import OPSET, PROBE_TOLERANCE, _TextLogits, text_probe

    root = tmp_path_factory.mktemp("smooth")
    folder = build_tiny_bert(root / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        model.bert.embeddings.LayerNorm.weight[3] = OUTLIER
        model.bert.encoder.layer[0].attention.output.LayerNorm.weight[5] = OUTLIER
    tok = AutoTokenizer.from_pretrained(folder)
    # the fused TorchScript graph the export ships for a BERT (the dynamo attempt before it is skipped: time)
    probe = text_probe(tok, 32)
    wrapper = _TextLogits(model, list(probe))
    with torch.no_grad():
        expected = wrapper(*(torch.from_numpy(v) for v in probe.values())).numpy()
    record = fuse(wrapper, tuple(torch.from_numpy(v) for v in probe.values()), list(probe),
                  {n: {0: "batch", 1: "sequence"} for n in probe}, model.config, root / "model.onnx", expected, probe,
                  PROBE_TOLERANCE, OPSET)
    assert record["applied"], record
    texts = ["great film, loved it", "terrible plot and awful acting", "ok", "meh, average at best, plain",
             "the best thing i have seen this year", "boring"]
    feeds = [{k: v.astype(np.int64) for k, v in tok(texts[i:i + 3], padding=True, return_tensors="np").items()}
             for i in (0, 3)]
    return root / "model.onnx", feeds


def _logits(path, feeds):
    from tunesmith.export.runtime import session

    sess = session(path, threads=1)
    return np.concatenate([sess.run(["logits"], f)[0] for f in feeds])


def test_smoothing_keeps_fp32_logits_and_flattens_the_activations_the_weight_layers_read(tiny_graph, tmp_path):
    import onnx

    from tunesmith.export.smooth import activation_maxima, smooth, smoothable

    source, feeds = tiny_graph
    out = tmp_path / "smoothed.onnx"
    record = smooth(source, out, feeds, alpha=0.5)
    groups = smoothable(source)
    ops = {n.name: n.op_type for n in onnx.load(str(source)).graph.node}
    # every weight layer of the encoder: per layer the fused Attention, the FFN input and output layers; the pooler
    # and the classifier
    assert sorted(ops[n] for names in groups.values() for n in names).count("Attention") == 2
    assert record["layers"] == sum(len(v) for v in groups.values()) >= 8
    assert np.abs(_logits(out, feeds) - _logits(source, feeds)).max() < 1e-4
    # what each layer now reads is its old input divided by s: the largest channel shrinks toward the others
    graph = onnx.load(str(out)).graph
    fed = {n.name: n.input[0] for n in graph.node if n.name in ops and n.input and n.input[0].endswith("_smoothed")}
    assert sorted(fed) == sorted(n for names in groups.values() for n in names)
    before = activation_maxima(source, groups, feeds)
    after = activation_maxima(out, set(fed.values()), feeds)
    for tensor in groups:
        b, a = before[tensor], after[f"{tensor}_smoothed"]
        assert a.max() / np.median(a) < b.max() / np.median(b)  # flatter across channels
        assert a.max() < b.max()
    # the two planted outliers: the activation range in front of those layers falls by more than 4x
    spiky = [t for t in groups if before[t].max() > 0.5 * OUTLIER]
    assert len(spiky) == 2 and all(after[f"{t}_smoothed"].max() < before[t].max() / 4 for t in spiky)
    assert record["range_after"]["max"] < record["range_before"]["max"] / 4


def test_alpha_moves_the_difficulty_between_activations_and_weights():
    from tunesmith.export.smooth import scales

    act = np.array([100.0, 1.0, 1.0], dtype=np.float32)
    w = np.ones((3, 4), dtype=np.float32)  # [in, out]
    # max|W_j| = 1: s = max|X_j|^α
    assert np.allclose(scales(act, [(w, 0)], 0.5), [10.0, 1.0, 1.0])
    assert np.allclose(scales(act, [(w, 0)], 1.0), [100.0, 1.0, 1.0])
    # the weights' input axis is taken per layer (Gemm transB: [out, in]) and their maxima across layers
    assert np.allclose(scales(np.ones(3, np.float32), [(w, 0), (4 * w.T, 1)], 0.5), [0.5, 0.5, 0.5])
