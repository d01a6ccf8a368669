"""Contrastive stage for few-shot classification (SetFit, Tunstall et al. 2022), on the shared loop.

The encoder first learns, from pairs built from the labels, to put texts of one class close
together and texts of other classes apart; then the head trains on the tuned, frozen encoder.

What the stage trains is the embedding the model's own classification head reads (for BERT: the
pooler output of the [CLS] token), captured by a hook on the head. The saved model therefore
stays an ordinary transformers sequence-classification folder, and the head sees at prediction
time exactly the embedding the contrastive stage shaped (a mean-pooled embedding, as
sentence-transformers trains, would need a custom head the folder could not describe).

Batches: each training example of the stage is a positive pair (two texts of one class); a batch
of P pairs gives 2P texts, whose other-class members are the negatives. The loss is
sentence-transformers' BatchHardSoftMarginTripletLoss (hardest positive and hardest negative of
each anchor, no margin to tune). Its own GroupByLabelBatchSampler needs a `datasets.Dataset` and
its own batch order, which our loop (seeded, resumable, length-aware) owns; so pairs are drawn
here, as rows the loop batches like any others.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from tunesmith.errors import UserError


def build_pairs(labels: Sequence[int], pairs_per_example: int, seed: int) -> list[tuple[int, int]]:
    """Positive pairs (i, j): for every example i, `pairs_per_example` partners j != i of the same
    class, drawn without repeats while the class allows (seeded). A class with one example has no
    pair; negatives come from the batch (other classes), so none are drawn here."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    pairs = []
    for i, c in enumerate(labels):
        others = members[c][members[c] != i]
        if len(others) == 0:
            continue
        picks = rng.permutation(others)
        while len(picks) < pairs_per_example:  # a small class: go round its members again
            picks = np.concatenate([picks, rng.permutation(others)])
        pairs += [(i, int(j)) for j in picks[:pairs_per_example]]
    order = rng.permutation(len(pairs))
    return [pairs[k] for k in order]


def default_pairs_per_example(n_train: int, min_pairs: int = 1000) -> int:
    """2 pairs per example, more on small data: with 44 BBC News articles, 2 each made a 6-step stage
    that left the encoder as it was (test 0.75 vs the linear probe's 0.88); SetFit draws 40 per example."""
    return max(2, -(-min_pairs // max(n_train, 1)))


def pair_examples(encoded: Sequence[dict], pairs: list[tuple[int, int]]) -> list[dict]:
    """The stage's training rows: each holds the two encoded texts of one pair."""
    return [{"pair": (encoded[i], encoded[j])} for i, j in pairs]


def pair_collate(collate: Callable) -> Callable:
    """Collate pair rows as one flat batch of texts: both members of each pair, with their labels."""

    def run(rows: list[dict]) -> dict[str, torch.Tensor]:
        return collate([ex for row in rows for ex in row["pair"]])

    return run


def head_input(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The embedding the classification head reads: the input of the model's `classifier` module
    (first token when that input is per token, as in RoBERTa's head)."""
    head = getattr(model, "classifier", None) or getattr(model, "score", None)
    if head is None:
        raise UserError("train.method = 'contrastive': this model has no `classifier` head to read embeddings from")
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        hook.remove()
    emb = seen[0]
    return emb[:, 0] if emb.dim() == 3 else emb


class ContrastiveLoss:
    """loss(model, batch): sentence-transformers' batch-hard soft-margin triplet loss on head_input."""

    def __init__(self) -> None:
        from sentence_transformers.sentence_transformer.losses import BatchHardSoftMarginTripletLoss

        # the model argument is only used by the library's own forward, which we do not call
        self.st_loss = BatchHardSoftMarginTripletLoss(model=None)

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = head_input(model, batch).float()
        return self.st_loss.batch_hard_triplet_soft_margin_loss(batch["labels"], emb)


@torch.no_grad()
def embed(model: torch.nn.Module, examples: Sequence[dict], collate: Callable, batch_size: int,
          normalise: bool = True) -> torch.Tensor:
    """head_input of `examples`, in eval mode, L2-normalised unless told otherwise."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(examples), batch_size):
        batch = collate([{k: v for k, v in ex.items() if k != "labels"} for ex in examples[i:i + batch_size]])
        out.append(head_input(model, {k: v.to(device) for k, v in batch.items()}).float())
    model.train(was_training)
    out = torch.cat(out)
    return torch.nn.functional.normalize(out, dim=-1) if normalise else out


def centroid_logits(train_emb: torch.Tensor, train_y: np.ndarray, emb: torch.Tensor, n_classes: int,
                    scale: float = 20.0) -> np.ndarray:
    """Scaled cosine similarity of each embedding to each class's mean training embedding: a
    validation score for the tuned encoder before any head exists."""
    centroids = torch.zeros(n_classes, train_emb.shape[1])
    y = torch.as_tensor(train_y)
    for c in range(n_classes):
        if (y == c).any():
            centroids[c] = train_emb[y == c].mean(0)
    centroids = torch.nn.functional.normalize(centroids, dim=-1)
    return (scale * emb.cpu() @ centroids.T).numpy()


def freeze_body_only_head(model: torch.nn.Module) -> None:
    """After the stage: the tuned body stays as it is; only the head trains (SetFit's default). The
    frozen body runs without dropout, as it will at prediction time (and as the linear probe's cached
    features do): the head then fits the embeddings it will see, not noised ones."""
    from tunesmith.models.methods import head_parameter_names

    head = set(head_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in head)
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


@torch.no_grad()
def init_head_from_centroids(model: torch.nn.Module, train_emb: torch.Tensor, train_y: np.ndarray,
                             scale: float = 20.0) -> None:
    """Start a linear head at the nearest-centroid classifier of the tuned embeddings (prototype
    init): row k is class k's normalised mean embedding, scaled so logits are about `scale` x cosine.
    The head stage then starts where the contrastive stage's validation score was measured
    instead of from random weights. `train_emb` is the un-normalised head input of the training rows."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.in_features != train_emb.shape[1]:
        return  # a head that is not one linear layer on the embedding keeps its own initialisation
    y = torch.as_tensor(train_y)
    weight = torch.zeros_like(head.weight)
    for c in range(head.out_features):
        if (y == c).any():
            weight[c] = torch.nn.functional.normalize(train_emb[y == c].mean(0), dim=0)
    head.weight.copy_(weight * scale / train_emb.norm(dim=1).mean().clamp(min=1e-6))
    if head.bias is not None:
        head.bias.zero_()


def freeze_head(model: torch.nn.Module) -> None:
    """During the stage: the head takes no part in the loss; keep it out of the optimizer and checkpoints.
    The word embeddings stay frozen too: half of a small encoder's weights, most of the optimizer's
    work, and with a few examples per class only the words they contain would move."""
    from tunesmith.models.methods import head_parameter_names

    head = set(head_parameter_names(model))
    words = {id(p) for p in model.get_input_embeddings().parameters()}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in head and id(param) not in words)
