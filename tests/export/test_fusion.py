"""ORT's transformer fusion of a BERT encoder's fp32 graph, and the plain graph when fusion fails."""
from __future__ import annotations

import onnx

from tunesmith.export import export_run
from tunesmith.export.fusion import fused_counts


def test_tiny_bert_graph_is_fused_and_still_matches_pytorch(text_run, tmp_path):
    rec = export_run(text_run, "onnx", output=tmp_path / "out").record
    fusion = rec["exporter"]["fusion"]
    assert fusion["applied"] and rec["exporter"]["exporter"] == "torchscript"
    ops = fused_counts(tmp_path / "out" / "model.onnx")
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] == 4 and ops == fusion["ops"]  # 2 layers
    assert rec["fp32"]["passes"] and rec["fp32"]["agreement"] == 1.0 and rec["fp32"]["max_abs_logit_diff"] < 1e-4


def test_a_failing_fusion_keeps_the_plain_graph_and_says_why(text_run, tmp_path, monkeypatch):
    import onnxruntime.transformers.optimizer as optimizer

    def broken(*args, **kwargs):
        raise RuntimeError("no pattern matched")

    monkeypatch.setattr(optimizer, "optimize_model", broken)
    rec = export_run(text_run, "onnx", output=tmp_path / "out").record
    fusion = rec["exporter"]["fusion"]
    assert not fusion["applied"] and fusion["why"].startswith("fusion failed (RuntimeError: no pattern matched)")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "out" / "model.onnx")).graph.node}
    assert "Attention" not in ops and "Softmax" in ops
    assert rec["fp32"]["agreement"] == 1.0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "export.json", "model.onnx", "onnx_config.json", "tokenizer.json"]  # no .ts/.fused leftovers
