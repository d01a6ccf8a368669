"""Sentence embeddings from a pre-trained encoder (mean pooling over real tokens), for baselines."""
from __future__ import annotations

import numpy as np

from tunesmith.models.registry import ModelRef
from tunesmith.models.windows import Windows, mean_by_owner


def embed_texts(ref: ModelRef, texts: list[str], windows: Windows, batch_size: int = 64) -> np.ndarray:
    """L2-normalised mean-pooled last hidden states of the *pre-trained* encoder `ref` (no fine-tuning). A
    text read in several windows gets the normalised mean of its windows' embeddings."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.source, **ref.from_pretrained_kwargs())
    model = AutoModel.from_pretrained(ref.source, **ref.from_pretrained_kwargs()).eval()
    cut, owner = windows.hf(tokenizer, texts)
    order = np.argsort([len(w) for w in cut])  # similar lengths per batch: less padding
    out = np.zeros((len(cut), model.config.hidden_size), dtype=np.float32)
    types = "token_type_ids" in tokenizer.model_input_names
    with torch.no_grad():
        for start in range(0, len(cut), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer.pad({"input_ids": [cut[i] for i in idx]}, return_tensors="pt")
            if types:
                enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    if windows.on:
        out = mean_by_owner(out, owner, len(texts))
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out
