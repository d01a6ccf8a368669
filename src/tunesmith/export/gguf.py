"""`tunesmith export RUN --format gguf`: an sft run's merged model as GGUF (f16 and q8_0), checked.

A small Llama-family writer on the `gguf` package's GGUFWriter (the layout llama.cpp's
convert_hf_to_gguf.py writes for LlamaForCausalLM): hyperparameters, the byte-level BPE vocabulary
with merges, special tokens and the chat template, and every weight under its GGUF name, with the
query and key projections permuted to llama.cpp's rotary layout. 1-D tensors stay fp32.

The check loads each file back through transformers (`gguf_file=`) and scores the held-out test
conversations' response loss, next to the run's merged model on the same tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunesmith.errors import UserError

FILES = {"f16": "model-f16.gguf", "q8_0": "model-q8_0.gguf"}
MAX_CHECK_ROWS = 64  # held-out conversations scored per file (each GGUF load de-quantizes the whole model)


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs (inverse of transformers' reverse_permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int], list[str], str]:
    """Tokens by id (padded to the model's vocabulary), their GGUF types, the merges, the pre-tokenizer name."""
    import gguf

    spec = json.loads((model_dir / "tokenizer.json").read_text())
    if spec["model"]["type"] != "BPE":
        raise UserError(f"{model_dir / 'tokenizer.json'}: a {spec['model']['type']} tokenizer; GGUF export writes "
                        "byte-level BPE vocabularies (GPT-2 style, as SmolLM2's)")
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL if i not in added else
                         gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    return tokens, types, merges, _pre_name(spec.get("pre_tokenizer") or {}, model_dir)


# llama.cpp names a BPE pre-tokenizer by the sha256 of how the tokenizer encodes one fixed text (its
# convert_hf_to_gguf.py, get_vocab_base_pre): the text and the hashes below are copied from there.
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f "
    "(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 3.3 "
    "3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 "
    "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 "
    "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 ''''''```````\"\"\"\"......!!!!!!?????? I've been "
    "'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")
_KNOWN_HASHES = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM and SmolLM2
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
}


def _pre_name(pre: dict, model_dir: Path | None = None) -> str:
    """llama.cpp's name for how text is split before BPE: by llama.cpp's own hash of the tokenizer when it is one
    of the known ones; else a Split regex transformers knows by name (its GGUF reader's table, inverted), SmolLM's
    one-digit-at-a-time split ("smollm"), else GPT-2's ("gpt2")."""
    if model_dir is not None:
        from hashlib import sha256

        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(model_dir).encode(_CHECK_TEXT)
        name = _KNOWN_HASHES.get(sha256(str(ids).encode()).hexdigest())
        if name is not None:
            return name
    steps = pre.get("pretokenizers", [pre])
    if any(s.get("type") == "Digits" and s.get("individual_digits") for s in steps):
        return "smollm"
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # moved in another transformers version: fall back to the GPT-2 split
        return "gpt2"
    patterns = [s.get("pattern", {}).get("Regex") for s in steps if s.get("type") == "Split"]
    return next((name for name, regex in GGUF_PRE_TOKENIZER_SPLITS.items() if regex in patterns), "gpt2")


def add_tokenizer(writer, model_dir: Path, vocab_size: int) -> str:
    """The tokenizer keys llama.cpp's convert_hf_to_gguf.py writes for a byte-level BPE model (its _set_vocab_gpt2):
    model "gpt2" (llama.cpp's name for every byte-level BPE vocabulary, not the GPT-2 model), the pre-tokenizer
    (SmolLM2: "smollm", as llama.cpp's hash of its tokenizer says), tokens, types, merges, special ids and the chat
    template. Returns the pre-tokenizer name."""
    from transformers import AutoTokenizer

    tokens, types, merges, pre = _vocab(model_dir, vocab_size)
    tok = AutoTokenizer.from_pretrained(model_dir)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for add, value in ((writer.add_bos_token_id, tok.bos_token_id), (writer.add_eos_token_id, tok.eos_token_id),
                       (writer.add_unk_token_id, tok.unk_token_id), (writer.add_pad_token_id, tok.pad_token_id)):
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(False)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)
    return pre


def write_gguf(model_dir: Path, path: Path, qtype: str) -> dict:
    """Write the transformers Llama-family model in `model_dir` to `path` with weights in `qtype` (f16, q8_0)."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        raise UserError(f"{model_dir / 'config.json'}: model_type {cfg.get('model_type')!r}; GGUF export writes "
                        "Llama-architecture models (e.g. smollm2-135m)")
    files = sorted(model_dir.glob("*.safetensors"))
    state = {k: v for f in files for k, v in load_file(str(f)).items()}
    n_layers, n_head = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    rope = cfg.get("rope_parameters") or {}
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(model_dir.parent.name)
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_file_type(file_type)
    pre = add_tokenizer(writer, model_dir, cfg["vocab_size"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    tied = cfg.get("tie_word_embeddings", False)
    quantized = 0
    for hf_name, w in state.items():
        if hf_name == "lm_head.weight" and tied:
            continue
        base, suffix = hf_name.rsplit(".", 1)
        name = names.get_name(base)
        if name is None:
            raise UserError(f"{model_dir}: tensor {hf_name!r} has no GGUF name (not a plain Llama layout)")
        w = np.asarray(w, dtype=np.float32)
        if base.endswith("self_attn.q_proj"):
            w = _permute(w, n_head)
        elif base.endswith("self_attn.k_proj"):
            w = _permute(w, n_kv)
        if w.ndim == 1:
            writer.add_tensor(f"{name}.{suffix}", w)
        elif qtype == "q8_0" and w.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
            writer.add_tensor(f"{name}.{suffix}", gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized += 1
        else:
            writer.add_tensor(f"{name}.{suffix}", w.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"file": path.name, "type": qtype, "tokenizer_pre": pre, "q8_0_tensors": quantized,
            "size_mb": round(path.stat().st_size / 2**20, 2)}


def _held_out(run, tokenizer, stop_id: int) -> list[dict]:
    """The run's test conversations (rebuilt from the data files, checked against splits.json), encoded."""
    from tunesmith.export.rows import verify_split
    from tunesmith.models.chat import IGNORE, encode_conversation
    from tunesmith.tasks import get_task

    task = get_task("sft")
    data = task.load_data(run.config)
    if run.config.audit.enabled:
        data, _ = task.audit(run.config, data)
    test = data.splits["test"]
    verify_split(run, "test", test)
    out = []
    for msgs in test["messages"][:MAX_CHECK_ROWS]:
        ids, labels = encode_conversation(tokenizer, msgs, stop_id, run.config.sft.train_on_prompt)
        ids, labels = ids[:run.config.model.max_length], labels[:run.config.model.max_length]
        if any(lab != IGNORE for lab in labels[1:]):
            out.append({"input_ids": ids, "labels": labels})
    return out


def _loss(model, examples: list[dict], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    from accelerate import Accelerator

    from tunesmith.evaluate.generation import response_losses
    from tunesmith.models.chat import ChatCollator

    return response_losses(model, examples, ChatCollator(pad_id), 8, Accelerator(cpu=True))


def export_gguf(run, folder: Path) -> dict:
    """Write f16 and q8_0 GGUF files of a finished sft run's model into `folder`; load each back through
    transformers and compare its held-out response loss with the merged model's. Returns export.json's record."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.evaluate.generation import loss_summary
    from tunesmith.models import quiet_hf

    quiet_hf()
    if not (run.model_dir / "config.json").is_file():
        raise UserError(f"{run.path}: no model/ folder; the run did not save a model")
    written = [write_gguf(run.model_dir, folder / f, q) for q, f in FILES.items()]
    tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
    stop_id = json.loads((run.path / "data_report.json").read_text())["stop_token_id"]
    examples = _held_out(run, tokenizer, stop_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    reference = loss_summary(*_loss(AutoModelForCausalLM.from_pretrained(run.model_dir, dtype=torch.float32),
                                    examples, pad))
    texts = [tokenizer.decode(e["input_ids"]) for e in examples]
    for entry in written:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=entry["file"], dtype=torch.float32)
        got = loss_summary(*_loss(model, examples, pad))
        gguf_tok = AutoTokenizer.from_pretrained(folder, gguf_file=entry["file"])
        same = [gguf_tok(t, add_special_tokens=False)["input_ids"] ==
                tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        entry.update({"loss": got["loss"], "loss_difference": got["loss"] - reference["loss"],
                      "tokenizer_agreement": float(np.mean(same)) if same else None})
        del model
    return {"format": "gguf", "run": str(run.path), "task": run.config.task, "architecture": "llama",
            "rows": f"the first {len(examples)} test conversations, rebuilt from the data files; "
                    "row hashes match splits.json",
            "reference_loss": reference["loss"], "reference_tokens": reference["tokens"], "files_checked": written,
            "note": "loss: token-mean response loss of the held-out conversations, merged model vs the GGUF file "
                    "loaded back through transformers (gguf_file=)"}
