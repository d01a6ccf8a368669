"""ONNX export: fp32 parity on the run's own rows, the int8 search's bound, refusals and output folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tunesmith.cli import main
from tunesmith.errors import UserError
from tunesmith.export import export_run


def error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_text_run_fp32_matches_pytorch_and_int8_search_keeps_a_setting(text_run, tmp_path):
    out = tmp_path / "onnx"
    result = export_run(text_run, "onnx", int8=True, output=out)
    rec = result.record
    assert result.refusal is None and rec["opset"] == 18 and rec["exporter"]["exporter"] in ("dynamo", "torchscript")
    assert rec["rows"].endswith("row hashes match splits.json")
    fp32 = rec["fp32"]
    assert fp32["passes"] and fp32["agreement"] == 1.0 and fp32["max_abs_logit_diff"] < 1e-4
    assert {s: v["n"] for s, v in fp32["splits"].items()} == {"validation": 16, "test": 16}
    assert fp32["test_accuracy"]["difference"]["difference"] == 0.0
    chosen = rec["int8"]["chosen"]
    kept = next(c for c in rec["int8"]["candidates"] if c["setting"] == chosen)
    assert kept["passes"] and kept["agreement"] >= 0.99 and len(rec["int8"]["candidates"]) == 6
    # SmoothQuant candidates quantize a smoothed copy of the graph that gives the same fp32 logits
    smoothed = [c for c in rec["int8"]["candidates"] if "SmoothQuant" in c["setting"]]
    assert [c["smoothing"]["alpha"] for c in smoothed] == [0.5, 0.75]
    assert all(c["smoothing"]["fp32_max_abs_logit_diff"] < 1e-4 and c["smoothing"]["layers"] >= 8 for c in smoothed)
    # every setting applies to the fused graph (static QDQ included: it needs symbolic shape inference)
    assert [c["why"] for c in rec["int8"]["candidates"] if "agreement" not in c] == []
    faster = [c for c in rec["int8"]["candidates"]
              if c["passes"] and c["latency_ms_batch1"] < kept["latency_ms_batch1"]]
    assert faster == []  # the fastest passing setting is the one kept
    manifest = json.loads((out / "onnx_config.json").read_text())
    assert manifest["model_file"] == "model.int8.onnx" and manifest["labels"] == ["neg", "pos"]
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "export.json"} <= {p.name for p in out.iterdir()}
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert all(isinstance(d, str) for shape in dims.values() for d in shape)  # batch and sequence are dynamic


def test_image_run_fp32_matches_pytorch_through_numpy_preprocessing(image_run):
    result = export_run(image_run, "onnx")
    rec = result.record
    assert rec["rows"].startswith("rebuilt from the data files")
    assert rec["fp32"]["agreement"] == 1.0 and rec["fp32"]["max_abs_logit_diff"] < 1e-3
    manifest = json.loads((image_run / "export" / "onnx_config.json").read_text())
    assert manifest["preprocess"]["size"] == 32 and manifest["model_file"] == "model.onnx" and "int8" not in rec


def _tie_the_head(run_dir, dst):
    """A copy of the run whose decision rests on a direction along which the run's own rows hardly vary:
    the two logits differ by d·h − median(d·h), d = (the pooled features' null direction) + 1e-3 × (a random
    one). fp32 noise (~1e-7) keeps every decision; int8 noise along the null direction flips many."""
    import pandas as pd
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("export", "checkpoints"))
    model_dir = dst / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    texts = pd.concat([pd.read_csv(dst / f"{s}_predictions.csv") for s in ("validation", "test")])["text"].tolist()
    with torch.no_grad():
        pooled = model.bert(**tok(texts, padding=True, return_tensors="pt")).pooler_output.double()
    null = torch.linalg.svd(pooled - pooled.mean(0)).Vh[-1]  # 32 rows, width 32: the centred rows miss one
    direction = (null + 1e-3 * torch.randn(len(null), generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    state = load_file(str(model_dir / "model.safetensors"))
    w = state["classifier.weight"][0]
    state["classifier.weight"] = torch.stack([w, w + direction.float()]).contiguous()
    state["classifier.bias"] = torch.tensor([0.0, -float((pooled @ direction).median())])
    save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_int8_search_refuses_a_nearly_tied_head_and_keeps_fp32(text_run, tmp_path, capsys, monkeypatch):
    # The tied head defeats every dynamic setting (agreement 0.5-0.6 on this model), but static QDQ on the weight
    # layers alone keeps it (agreement 1.0): the search is limited to the dynamic settings (SmoothQuant aside) and
    # one layer kept in fp32, so that nothing it tries can pass and the refusal path is what runs.
    from tunesmith.export import quantize

    monkeypatch.setattr(quantize, "candidates", lambda real=quantize.candidates: [
        c for c in real() if c.kind == "dynamic" and "smooth" not in c.options])
    monkeypatch.setattr(quantize, "fp32_counts", lambda n_layers: [1])
    run = _tie_the_head(text_run, tmp_path / "tied")
    line = error_line(capsys, ["export", str(run), "--format", "onnx", "--int8"])
    assert "int8: no quantization setting stays within 99% agreement" in line and "kept the fp32 model" in line
    rec = json.loads((run / "export" / "export.json").read_text())
    assert rec["fp32"]["agreement"] == 1.0 and rec["int8"]["chosen"] is None
    assert all(not c["passes"] for c in rec["int8"]["candidates"])
    assert json.loads((run / "export" / "onnx_config.json").read_text())["model_file"] == "model.onnx"
    assert not (run / "export" / "model.int8.onnx").exists()


TRAP = 1000.0


def _trap_the_pooler(run_dir, dst):
    """A copy of the run whose pooler (a middle layer: neither the first nor the last weight layer) reads one
    input unit with weight 1000 in every output; that unit, the last LayerNorm's 6th, is zeroed (its scale and
    shift set to 0), so fp32 logits ignore it. An int8 step of 1000/127 rounds every other pooler weight to 0 and
    the pooled features to a constant: only keeping the pooler in fp32 saves int8."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("export", "checkpoints"))
    path = dst / "model" / "model.safetensors"
    state = load_file(str(path))
    for part in ("weight", "bias"):
        state[f"bert.encoder.layer.1.output.LayerNorm.{part}"][5] = 0.0
    state["bert.pooler.dense.weight"][:, 5] = TRAP
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
    return dst


def test_int8_sensitivity_search_keeps_the_damaging_layers_in_fp32(text_run, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    from tunesmith.export import quantize

    # SmoothQuant defuses this trap (the zeroed channel's s shrinks the 1000s): the search runs without it here
    monkeypatch.setattr(quantize, "candidates", lambda real=quantize.candidates: [
        c for c in real() if "smooth" not in c.options])
    run = _trap_the_pooler(text_run, tmp_path / "trap")
    result = export_run(run, "onnx", int8=True, output=tmp_path / "out")
    rec = result.record
    assert rec["fp32"]["agreement"] == 1.0 and result.refusal is None
    plain, sensitive = rec["int8"]["candidates"][:4], rec["int8"]["candidates"][4:]
    assert [c["passes"] for c in plain] == [False] * 4  # every plain setting is damaged by the trap
    assert rec["int8"]["chosen"] == sensitive[0]["setting"] and sensitive[0]["passes"]
    assert sensitive[0]["setting"].endswith("1 most sensitive layers fp32")
    note = rec["int8"]["sensitivity"]
    # int8-stored weights are tried first and fail (the trap is in the weights); fp32 weights then pass
    assert note["tried_k"] == [{"k": 1, "weights": "int8", "passes_validation": False},
                               {"k": 1, "weights": "fp32", "passes_validation": True}]
    # the layer kept in fp32 is the trapped one: its weights are still float and still hold the 1000s
    graph = onnx.load(str(tmp_path / "out" / "model.int8.onnx")).graph
    float_traps = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT
                   and np.abs(numpy_helper.to_array(i)).max() == TRAP]
    assert len(float_traps) == 1
    # (ORT's dynamic quantizer rewrites a Gemm as NAME_MatMul + Add)
    assert [n.name.removesuffix("_MatMul") for n in graph.node if set(n.input) & set(float_traps)] == [
        note["ranking"][0]["layer"]]


def test_fp32_gate_refuses_a_graph_that_differs(text_run, tmp_path, monkeypatch):
    from tunesmith.export import gate

    monkeypatch.setattr(gate, "FP32_AGREEMENT", 1.01)  # no graph can reach it: the refusal path runs
    with pytest.raises(UserError, match="does not reproduce the PyTorch model .*nothing written"):
        export_run(text_run, "onnx", output=tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / ".x.tmp").exists()


def test_bad_inputs_are_one_line(text_run, tmp_path, capsys):
    assert "not a tunesmith run folder" in error_line(capsys, ["export", str(tmp_path), "--format", "onnx"])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(text_run, unfinished, ignore=shutil.ignore_patterns("export", "checkpoints"))
    (unfinished / "status.json").write_text(json.dumps({"status": "running"}))
    assert "run status is 'running'; export needs a completed run" in error_line(
        capsys, ["export", str(unfinished), "--format", "onnx"])
    assert "a text-classification run cannot be exported as gguf" in error_line(
        capsys, ["export", str(text_run), "--format", "gguf"])
    assert "--format 'tflite': expected one of onnx, gguf" in error_line(
        capsys, ["export", str(text_run), "--format", "tflite"])
    assert "say what to export" in error_line(capsys, ["export", str(text_run)])


def test_existing_output_folder_is_kept_unless_overwrite(text_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    line = error_line(capsys, ["export", str(text_run), "--format", "onnx", "--output", str(out)])
    assert "folder exists and is not empty; pass --overwrite" in line
    assert (out / "precious.txt").read_text() == "keep me"
    # --merge goes through the same check (before it looks for an adapter)
    assert "pass --overwrite" in error_line(capsys, ["export", str(text_run), "--merge", "--output", str(out)])
    assert (out / "precious.txt").is_file()
    assert main(["export", str(text_run), "--format", "onnx", "--output", str(out), "--overwrite"]) == 0
    assert not (out / "precious.txt").exists() and (out / "model.onnx").is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary sibling was renamed into place


def test_an_empty_or_absent_output_folder_needs_no_overwrite(tmp_path):
    from tunesmith.export import check_destination

    (tmp_path / "empty").mkdir()
    check_destination(tmp_path / "empty", overwrite=False, chosen_by_user=True)
    check_destination(tmp_path / "absent", overwrite=False, chosen_by_user=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="a file is in the way"):
        check_destination(tmp_path / "file", overwrite=True, chosen_by_user=True)


def test_missing_onnxruntime_names_the_install_command(text_run, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(UserError, match=r"need onnxruntime \(not installed\); install them with: "
                                        r"pip install 'tunesmith\[export\]'"):
        export_run(text_run, "onnx", output=None)


def test_gate_compare_counts_disagreements_and_pairs_the_accuracy():
    from tunesmith.export.gate import compare, passes

    ref = {"test": np.array([[1.0, 0.0]] * 50 + [[0.0, 1.0]] * 50)}
    exp = {"test": ref["test"].copy()}
    exp["test"][:2] = [[0.0, 1.0], [0.0, 1.0]]  # two rows flipped, both were right
    res = compare(ref, exp, {"test": np.array([0] * 50 + [1] * 50)})
    assert res["agreement"] == 0.98 and res["max_abs_logit_diff"] == 1.0
    assert res["test_accuracy"]["difference"]["difference"] == pytest.approx(-0.02)
    assert passes(res, 0.99)[0] is False and passes(res, 0.95)[0] is True
    assert passes(res, 0.95, max_loss=0.005) == (False, passes(res, 0.95, max_loss=0.005)[1])
    assert "loses more than 0.5" in passes(res, 0.95, max_loss=0.005)[1]
