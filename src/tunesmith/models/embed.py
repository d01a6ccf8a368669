"""Sentence embeddings from a pre-trained encoder (mean pooling over real tokens), for baselines."""
from __future__ import annotations

import numpy as np

from tunesmith.models.registry import ModelRef


def embed_texts(ref: ModelRef, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """L2-normalised mean-pooled last hidden states of the *pre-trained* encoder `ref` (no fine-tuning)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.source, **ref.from_pretrained_kwargs())
    model = AutoModel.from_pretrained(ref.source, **ref.from_pretrained_kwargs()).eval()
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out
