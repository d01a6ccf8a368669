"""Scoring a language model's answers: response loss, and generation metrics against references.

Exact match and token F1 follow SQuAD's normalisation (lower case, no punctuation or articles);
ROUGE-L is Google's `rouge-score` package (F-measure, Porter stemming).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Sequence

import numpy as np
import torch

from tunesmith.models.chat import IGNORE, prompt_ids

if TYPE_CHECKING:  # pragma: no cover
    from tunesmith.config import EvalConfig


def _normalize(text: str) -> list[str]:
    text = "".join(ch for ch in str(text).lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def exact_match(prediction: str, reference: str) -> float:
    return float(_normalize(prediction) == _normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _normalize(prediction), _normalize(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def generation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Per-answer and mean exact match, token F1 and ROUGE-L F-measure."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = [{"exact_match": exact_match(p, r), "token_f1": token_f1(p, r),
             "rouge_l": scorer.score(str(r), str(p))["rougeL"].fmeasure} for p, r in zip(predictions, references)]
    means = {k: float(np.mean([row[k] for row in rows])) if rows else float("nan")
             for k in ("exact_match", "token_f1", "rouge_l")}
    return {**means, "n": len(rows), "per_answer": rows}


def response_losses(model, examples: Sequence[dict], collate, batch_size: int, accelerator) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
    """Summed token loss and number of loss tokens of each example, in example order (sharded
    over processes when distributed). The token-mean loss of a split is sums.sum() / counts.sum()."""
    from tunesmith.evaluate.inference import per_example

    def sums_and_counts(m, batch):
        labels = batch.pop("labels")[:, 1:]
        logits = m(**batch, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=IGNORE,
                                                 reduction="none")
        return loss.sum(1), (labels != IGNORE).sum(1).float()

    return per_example(model, examples, collate, batch_size, accelerator, sums_and_counts)


def loss_summary(sums: np.ndarray, counts: np.ndarray) -> dict:
    loss = float(sums.sum() / max(counts.sum(), 1))
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50))), "tokens": int(counts.sum()), "n": len(sums)}


def compare_losses(base: tuple[np.ndarray, np.ndarray], tuned: tuple[np.ndarray, np.ndarray], resamples: int,
                   level: float, seed: int) -> dict:
    """Paired bootstrap over conversations of the loss reduction base - tuned (positive: tuned better)."""
    from tunesmith.evaluate.stats import paired_bootstrap

    def token_mean(counts, sums):
        return float(sums.sum() / max(counts.sum(), 1))

    return paired_bootstrap(base[1], base[0], tuned[0], token_mean, resamples, level, seed)


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: Sequence[list[int]], stop_id: int, max_new_tokens: int,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers to tokenized prompts (left-padded batches), stopping at the stop token."""
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    answers: list[str] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_id, pad_token_id=pad)
        answers += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    model.train(was_training)
    return answers


def held_out_prompts(conversations: Iterable[list[dict]], limit: int) -> list[dict]:
    """Conversations cut before their last assistant turn: the prompt, and that turn as the reference
    (at most `limit`, in order; conversations whose first turn is the answer are skipped)."""
    out = []
    for msgs in conversations:
        if len(out) >= limit:
            break
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is not None and last > 0:
            out.append({"prompt": msgs[:last], "reference": msgs[last]["content"]})
    return out


def compare_with_base(model, base: ContextManager, tokenizer, splits: dict[str, Sequence[dict]],
                      losses: Callable[[object, Sequence[dict]], tuple[np.ndarray, np.ndarray]],
                      samples: list[dict], stop_id: int, max_new_tokens: int, accelerator, settings: EvalConfig,
                      seed: int) -> dict:
    """The tuned model against the pre-trained one (`base`: a context that yields it): the response loss of
    each split with a paired bootstrap of the reduction, and greedy answers to `samples` (held_out_prompts)
    scored against their references. `losses(model, examples)` gives (sums, counts) per example (e.g.
    response_losses); every process takes part in it, and only the main process gets the result ({} elsewhere):
    {split: {loss..., base, loss_reduction}, "generation": scores, "answers": {base, tuned},
    "tuned_losses": {split: (sums, counts)}}."""
    tuned = {s: losses(model, examples) for s, examples in splits.items()}
    prompts = [prompt_ids(tokenizer, s["prompt"]) for s in samples]
    with base as pretrained:
        before = {s: losses(pretrained, examples) for s, examples in splits.items()}
        if not accelerator.is_main_process:
            return {}
        base_answers = generate_answers(pretrained, tokenizer, prompts, stop_id, max_new_tokens)
    # after the context: a LoRA model's base is the same module with its adapter off
    tuned_answers = generate_answers(accelerator.unwrap_model(model), tokenizer, prompts, stop_id, max_new_tokens)
    out: dict = {s: {**loss_summary(*tuned[s]), "base": loss_summary(*before[s]),
                     "loss_reduction": compare_losses(before[s], tuned[s], settings.bootstrap_resamples,
                                                      settings.confidence_level, seed)} for s in splits}
    if samples:
        refs = [s["reference"] for s in samples]
        out["generation"] = {"tuned": generation_scores(tuned_answers, refs),
                             "base": generation_scores(base_answers, refs), "max_new_tokens": max_new_tokens}
        out["answers"] = {"base": base_answers, "tuned": tuned_answers}
    out["tuned_losses"] = tuned
    return out
