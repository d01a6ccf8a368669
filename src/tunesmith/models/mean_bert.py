"""A BERT sequence classifier whose head reads the L2-normalised mean of the token states over real tokens.

Sentence encoders such as all-MiniLM-L6-v2 were trained on that embedding, not on BERT's [CLS] pooler, and
transformers' BertForSequenceClassification cannot express it. tunesmith trains with it (models/pooling.py)
and saves such a model with these classes. This file is also copied, byte for byte, into the saved folder
(config.json's `auto_map` names it), so that outside tunesmith
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` builds this same model;
that is why it imports nothing but torch and transformers. Its own `model_type` makes plain transformers
refuse the folder without trust_remote_code instead of reading it with the [CLS] pooler.
Weight names and shapes are BERT's: the unused pooler dense layer is kept so the names do not change.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel

MODEL_TYPE = "mean_pooled_bert"


class MeanPooler(nn.Module):
    """Stands in for a BERT pooler: the L2-normalised mean of the last hidden states over real tokens.
    Keeps the replaced pooler's dense layer (unused) so the state dict keeps its names."""

    def __init__(self, replaced: nn.Module | None) -> None:
        super().__init__()
        self.dense = getattr(replaced, "dense", None)  # unused; kept so saved weights keep their names
        self.mask: torch.Tensor | None = None  # the attention mask of the body's current call

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if mask is None or mask.shape[:2] != hidden_states.shape[:2]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        weights = mask.to(hidden_states.dtype).unsqueeze(-1)
        mean = (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(mean, dim=-1)


def _keep_mask(pooler: MeanPooler):
    # BertModel hands its pooler only the hidden states: the mask is taken from the body's own call
    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:  # BertModel.forward(input_ids, attention_mask, ...)
            mask = args[1]
        pooler.mask = mask

    return hook


def mean_pool(body: nn.Module) -> None:
    """Replace `body`'s pooler (a BertModel's) by a MeanPooler fed with the body's attention mask; idempotent."""
    if not isinstance(body.pooler, MeanPooler):
        body.pooler = MeanPooler(body.pooler)
        body.register_forward_pre_hook(_keep_mask(body.pooler), with_kwargs=True)


class MeanPooledBertConfig(BertConfig):
    """BertConfig under its own model_type, so that only these classes read the folder."""
    model_type = MODEL_TYPE


class MeanPooledBertModel(BertModel):
    """BertModel whose pooler_output is the normalised mean embedding (what AutoModel loads from the folder)."""
    config_class = MeanPooledBertConfig

    def __init__(self, config: MeanPooledBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        mean_pool(self)


class MeanPooledBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification whose linear head reads the normalised mean embedding."""
    config_class = MeanPooledBertConfig

    def __init__(self, config: MeanPooledBertConfig) -> None:
        super().__init__(config)
        mean_pool(self.bert)
