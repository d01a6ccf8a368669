"""Contrastive stage for few-shot classification (SetFit, Tunstall et al. 2022), on the shared loop.

The encoder first learns, from pairs built from the labels, to put texts of one class close
together and texts of other classes apart; then the head is fitted on the tuned, frozen encoder.

The embedding is the one sentence encoders are trained for: the L2-normalised mean of the token
states (models/pooling.py swaps it in for BERT's [CLS] pooler, and saves the model as a BERT classifier
of its own model_type that reads the same embedding wherever it is loaded). Where a body has no pooler to
swap (RoBERTa's head reads the first token), the stage trains whatever the classification head reads.

Batches: each training example of the stage is a positive pair (two texts of one class); a batch
of P pairs gives 2P texts, and each anchor is also paired with another row's partner, which gives
the negatives (`batch_pairs`). The loss is SetFit's default, sentence-transformers'
CosineSimilarityLoss, with the target read from the labels (a same-class "negative" counts as the
positive it is, which matters on data with few classes). SetFit's own sampler (setfit.sampler.
ContrastiveDataset) and trainer own the pair order and need a `datasets.Dataset`, while our loop
(seeded, resumable, length-aware) owns batches here; so pairs are drawn here, as rows the loop
batches. The triplet loss used before (BatchHardSoftMarginTripletLoss) barely moves L2-normalised
embeddings, whose distances lie in [0, 2] (Banking77 10-shot: loss 0.69 -> 0.62 in 86 steps,
validation nearest-centroid accuracy 0.67, below the pre-trained encoder's).

The head, as SetFit's default: logistic regression on the normalised embeddings, copied into the
model's linear classifier. Before the stage the same head is fitted on the pre-trained encoder (a
linear probe); after it, the tuned encoder is kept only if its head scores better on the validation split — otherwise
(ties included) the pre-trained body comes back (`ProbeOrTuned`). With train.contrastive.epochs 0 there is
no stage: the head alone on the pre-trained encoder, which is what `train.method: auto` ships on small data
(tasks/method_choice.py says why). Each head also learns
from one row per class, its label phrase (SetFit's templated data does the same). Once the body is
chosen, the final head is refitted on the training and validation rows together (train.contrastive.
refit_head): at 10 examples per class the validation split holds a ninth of the labelled rows, and on
rows outside the sample (never a test file) the refit and the label rows together gained 2.3 points on
Banking77 and 1.3 on BBC News (bench/RESULTS.md, "Small data, third pass").
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from tunesmith.errors import UserError
from tunesmith.models.windows import mean_rows
from tunesmith.tasks.base import Phase


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


def default_pairs_per_example(n_train: int, min_pairs: int = 2500) -> int:
    """2 pair rows per example (each scores a positive and a negative pair), more on small data so the
    stage sees at least `min_pairs` rows: with 44 BBC News articles, 2 each made a 6-step stage that left
    the encoder as it was. SetFit's own default draws 40 pairs per example; on 2 CPU cores that is about
    2,000 steps for 770 texts, so fewer, and the validation check against the linear probe keeps the
    pre-trained encoder where the stage did not help."""
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


def batch_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scored pairs of a batch of P pair rows (texts ordered anchor 1, partner 1, anchor 2, ...): each
    anchor with its own partner (same class) and with the previous row's partner (usually another class),
    one negative per positive as SetFit balances them. Returns (first, second, target): text indices of
    each pair and 1.0 where the two share a class, else 0.0 (labels decide, so a same-class "negative"
    is scored as the positive it is)."""
    anchors = torch.arange(0, len(labels), 2, device=labels.device)
    partners = anchors + 1
    previous = torch.roll(partners, 1)
    first, second = torch.cat([anchors, anchors]), torch.cat([partners, previous])
    return first, second, (labels[first] == labels[second]).float()


class ContrastiveLoss:
    """loss(model, batch): sentence-transformers' CosineSimilarityLoss (SetFit's default: squared error
    between the cosine of a pair and 1 for same class, 0 otherwise) on head_input, over batch_pairs."""

    def __init__(self) -> None:
        from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

        # the model argument is only used by the library's own forward, which we do not call
        self.st_loss = CosineSimilarityLoss(model=None)

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = head_input(model, batch).float()
        first, second, target = batch_pairs(batch["labels"])
        return self.st_loss.compute_loss_from_embeddings([emb[first], emb[second]], target)


@torch.no_grad()
def embed(model: torch.nn.Module, examples: Sequence[dict], collate: Callable, batch_size: int,
          normalise: bool = True) -> torch.Tensor:
    """head_input of `examples`, in eval mode, L2-normalised unless told otherwise. A text read in windows gets
    the mean of its windows' (normalised) embeddings, not normalised again: the head is linear, so the mean of
    its windows' logits, which predict takes, is the head applied to that mean."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(examples), batch_size):
        batch = collate([{k: v for k, v in ex.items() if k != "labels"} for ex in examples[i:i + batch_size]])
        owner = batch.pop("window_owner", None)
        emb = head_input(model, {k: v.to(device) for k, v in batch.items()}).float()
        emb = torch.nn.functional.normalize(emb, dim=-1) if normalise else emb
        if owner is not None:
            emb = mean_rows(emb, owner, int(owner.max()) + 1)
        out.append(emb)
    model.train(was_training)
    return torch.cat(out)


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


def freeze_head(model: torch.nn.Module) -> None:
    """During the stage: the head takes no part in the loss; keep it out of the optimizer and checkpoints.
    The word embeddings stay frozen too: half of a small encoder's weights, most of the optimizer's
    work, and with a few examples per class only the words they contain would move."""
    from tunesmith.models.methods import head_parameter_names

    head = set(head_parameter_names(model))
    words = {id(p) for p in model.get_input_embeddings().parameters()}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in head and id(param) not in words)


# Inverse L2 strength of the logistic-regression head: the linear-probe baseline's (C=10 on normalised
# embeddings), so that a run which keeps the pre-trained body reproduces that baseline.
HEAD_C = 10.0


def fit_head(train_emb: np.ndarray, train_y: np.ndarray, n_classes: int, c: float = HEAD_C):
    """Logistic regression on normalised embeddings (SetFit's default head), as (weight, bias) for a
    linear layer with `n_classes` outputs; a class absent from training gets a very low bias."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=c).fit(train_emb, train_y)
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: logit difference -> two logits
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, train_emb.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -30.0, dtype=np.float32)
    weight[clf.classes_], bias[clf.classes_] = coef, intercept
    return torch.from_numpy(weight), torch.from_numpy(bias)


@torch.no_grad()
def set_head(model: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> bool:
    """Copy a fitted linear head into the model's classifier; False when that is not one linear layer on
    the embedding (the head then keeps its own initialisation and the head stage trains it)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or tuple(head.weight.shape) != tuple(weight.shape):
        return False
    head.weight.copy_(weight)
    if head.bias is not None:
        head.bias.copy_(bias)
    return True


class ProbeOrTuned:
    """The stage's enter and leave: remember the pre-trained body and its probe's validation score; after
    the stage keep whichever body (tuned or pre-trained) gives the better logistic-regression head on
    the validation split (ties, and a split too small to score, go to the pre-trained one: it is the
    cheaper model and the one the linear-probe baseline measures). Without a stage (`stage=False`) the
    pre-trained body is the only candidate and no second head is fitted. Each head is fitted on the training rows plus
    `extra` (e.g. one label-phrase row per class). With `refit`, the final head is then fitted on the
    training and validation rows together and the model is final (leave returns True: no head stage);
    otherwise the head stage starts from the compared head. `outcome` says what was chosen and why."""

    def __init__(self, train: Sequence[dict], validation: Sequence[dict], collate: Callable, batch_size: int,
                 n_classes: int, extra: Sequence[dict] = (), refit: bool = False, stage: bool = True) -> None:
        self.train, self.validation, self.collate, self.batch_size = list(train) + list(extra), validation, \
            collate, batch_size
        self.train_y = np.array([ex["labels"] for ex in self.train])
        self.val_y = np.array([ex["labels"] for ex in validation])
        self.n_classes, self.n_extra, self.refit, self.stage = n_classes, len(extra), refit, stage
        self.outcome: dict = {}
        self._pretrained: dict[str, torch.Tensor] = {}
        self._probe: tuple | None = None

    def _head(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, float]:
        train_emb = embed(model, self.train, self.collate, self.batch_size).cpu().numpy()
        weight, bias = fit_head(train_emb, self.train_y, self.n_classes)
        val_emb = embed(model, self.validation, self.collate, self.batch_size).cpu()
        # accuracy: the comparison must not depend on train.metric_for_best (which may be the loss)
        score = float(((val_emb @ weight.T + bias).argmax(1).numpy() == self.val_y).mean()) if len(self.val_y) \
            else float("nan")
        return weight, bias, score

    def enter(self, model: torch.nn.Module) -> None:
        from tunesmith.models.pooling import use_mean_pooling

        self.outcome["pooling"] = "mean" if use_mean_pooling(model) else "head input"
        freeze_head(model)
        self._probe = self._head(model)
        if self.stage:
            self._pretrained = {k: v.detach().clone() for k, v in model.base_model.state_dict().items()}

    def leave(self, model: torch.nn.Module) -> bool:
        freeze_body_only_head(model)
        probe = self._probe
        tuned = self._head(model) if self.stage else probe
        keep_tuned = self.stage and tuned[2] > probe[2]  # NaN (no validation rows) compares False: pre-trained
        if self.stage and not keep_tuned:
            model.base_model.load_state_dict(self._pretrained)
        weight, bias, _ = tuned if keep_tuned else probe
        rows = f"{len(self.train) - self.n_extra} training rows" + (
            f" and {self.n_extra} label-phrase rows" if self.n_extra else "")
        refit = self.refit and len(self.val_y) > 0
        if refit:
            emb = embed(model, [*self.train, *self.validation], self.collate, self.batch_size).cpu().numpy()
            weight, bias = fit_head(emb, np.concatenate([self.train_y, self.val_y]), self.n_classes)
        fitted = set_head(model, weight, bias)
        final = refit and fitted  # a head that is not one linear layer still needs the head stage
        if final:
            rows += f", then refitted on them with the {len(self.val_y)} validation rows"
        self._pretrained = {}
        refit_words = "; the final head was fitted on the training and validation rows together (validation " \
            "scores are not held out; test is)" if final else ""
        if self.stage:
            compared = {"validation_contrastive": round(tuned[2], 4),
                        "reason": f"validation accuracy of a logistic-regression head: contrastive-tuned encoder "
                                  f"{tuned[2]:.3f}, pre-trained encoder (linear probe) {probe[2]:.3f}; kept the "
                                  f"{'contrastive-tuned' if keep_tuned else 'pre-trained'} encoder"
                                  + ("" if keep_tuned or probe[2] > tuned[2] else " (a tie goes to the cheaper "
                                     "model)") + refit_words}
        else:
            compared = {"reason": f"no contrastive stage (train.contrastive.epochs 0): a logistic-regression head on "
                                  f"the pre-trained encoder, validation accuracy {probe[2]:.3f}" + refit_words}
        self.outcome.update({
            "validation_probe": round(probe[2], 4), **compared,
            "kept": "contrastive" if keep_tuned else "linear-probe", "head": "logistic regression" if fitted
            else "the model's own (not one linear layer)", "head_rows": rows, "validation_held_out": not final})
        return final


def contrastive_phase(settings, seed: int, eval_batch_size: int, encoded: dict, collate: Callable,
                      labels: list[str], metrics: Callable, label_rows: Sequence[dict] = ()) -> Phase:
    """The stage as the shared loop runs it: label-built pairs, scored during the stage on validation by
    nearest class centroid (no head exists yet), then ProbeOrTuned picks the body and fits the head.
    `settings` is train.contrastive; `metrics(y, logits, labels)` the task's validation metrics;
    `label_rows`: encoded label phrases, one per class, added to the head's rows (settings.label_rows)."""
    train, validation = encoded["train"], encoded["validation"]
    train_y = np.array([ex["labels"] for ex in train])
    stage = settings.epochs > 0
    pairs = build_pairs(train_y, settings.pairs_per_example or default_pairs_per_example(len(train)), seed) \
        if stage else []
    if stage and not pairs:
        raise UserError("train.method = 'contrastive': no class has two training examples to pair; "
                        "set train.contrastive.epochs=0 (the head alone) or use linear-probe")
    val_y = np.array([ex["labels"] for ex in validation])
    choice = ProbeOrTuned(train, validation, collate, eval_batch_size, len(labels),
                          extra=label_rows if settings.label_rows else (), refit=settings.refit_head, stage=stage)

    def evaluate(model: torch.nn.Module) -> dict:
        centroid = centroid_logits(embed(model, train, collate, eval_batch_size), train_y,
                                   embed(model, validation, collate, eval_batch_size), len(labels))
        return metrics(val_y, centroid, labels)

    return Phase(name="contrastive", epochs=settings.epochs, learning_rate=settings.learning_rate,
                 encoded={"train": pair_examples(train, pairs), "validation": validation},
                 collate=pair_collate(collate), eval_collate=collate, enter=choice.enter,
                 loss=ContrastiveLoss(), evaluate=evaluate, leave=choice.leave, outcome=choice.outcome,
                 lengths=[max(len(train[i]["input_ids"]), len(train[j]["input_ids"])) for i, j in pairs])
