"""Chat formatting for causal LMs: templates, assistant-token masks, the stop-token check, packing.

The traps this closes by construction: a model trained with one template or end token and used
with another never stops generating; packed examples that attend to each other learn from their
neighbours. Training renders conversations with the tokenizer's own template (saved with the
model), proves on real examples that every assistant turn ends with the token generation stops
on, and packs with position ids that restart per conversation (transformers then masks attention
block-diagonally).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from tunesmith.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from tunesmith.models.registry import ModelRef

IGNORE = -100  # label of tokens that carry no loss

# Named defaults for base models without a template (the run records which one it used).
TEMPLATES = {
    "chatml": ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
               "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
               "{% endif %}"),
}
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]


def set_template(tokenizer, template: str | None) -> str:
    """Give the tokenizer its chat template; returns which one ('tokenizer', a name, or 'custom')."""
    if template is None:
        if getattr(tokenizer, "chat_template", None):
            return "tokenizer"
        template = "chatml"
    if template in TEMPLATES:
        if template == "chatml":
            missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
            if missing:
                tokenizer.add_special_tokens({"additional_special_tokens": missing})
            tokenizer.eos_token = "<|im_end|>"
        tokenizer.chat_template = TEMPLATES[template]
        return template
    if "{%" not in template and "{{" not in template:
        raise UserError(f"sft.chat_template = {template!r}: expected a Jinja template or one of {', '.join(TEMPLATES)}")
    tokenizer.chat_template = template
    return "custom"


def _render(tokenizer, messages: Sequence[dict], generation_prompt: bool = False) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    """The tokens a model sees before it answers: the conversation plus the assistant header."""
    return _render(tokenizer, messages, generation_prompt=True)


def encode_conversation(tokenizer, messages: Sequence[dict], stop_id: int,
                        train_on_prompt: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation. Each assistant turn's tokens, through its stop
    token, carry the loss; the rest are IGNORE unless `train_on_prompt`. The spans are found by
    rendering each prefix of the conversation, which must tokenize as a prefix of the whole."""
    ids = _render(tokenizer, messages)
    labels = list(ids) if train_on_prompt else [IGNORE] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before, through = _render(tokenizer, messages[:i], True), _render(tokenizer, messages[:i + 1])
        if ids[:len(through)] != through or through[:len(before)] != before:
            raise UserError("sft.chat_template: rendering a conversation turn by turn does not give the same "
                            "tokens as rendering it whole; the template cannot mark assistant turns")
        end = _last_index(through, stop_id, len(before))
        if end is None:
            raise UserError(_stop_error(tokenizer, stop_id, tokenizer.decode(through[len(before):])))
        labels[len(before):end + 1] = through[len(before):end + 1]
    return ids, labels


def _last_index(ids: list[int], value: int, start: int) -> int | None:
    for j in range(len(ids) - 1, start - 1, -1):
        if ids[j] == value:
            return j
    return None


def _stop_error(tokenizer, stop_id: int, rendered: str) -> str:
    return (f"chat template: the assistant turn renders as {rendered[-80:]!r}, which does not end with the "
            f"token generation stops on ({tokenizer.convert_ids_to_tokens(stop_id)!r}, id {stop_id}); a model "
            "trained this way never learns to stop. Fix the template (sft.chat_template) or the tokenizer's "
            "eos_token")


def stop_token(tokenizer, generation_config) -> int:
    """The id generation stops on, checked against the generation config's end-of-sequence ids."""
    probe = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    before, through = _render(tokenizer, probe[:1], True), _render(tokenizer, probe)
    answer = through[len(before):]
    eos = generation_config.eos_token_id if generation_config is not None else None
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    # the last end-of-sequence id inside the rendered answer is the one the model must learn to emit
    if not eos_ids:
        raise UserError("the tokenizer has no eos_token and generation_config no eos_token_id: nothing tells "
                        "generation where an answer ends; set the tokenizer's eos_token")
    found = [t for t in answer if t in eos_ids]
    if not found:
        raise UserError(_stop_error(tokenizer, eos_ids[0] if eos_ids else -1, tokenizer.decode(answer)) +
                        f" (end-of-sequence ids: {eos_ids})")
    return found[-1]


def check_stops(tokenizer, examples: Sequence[tuple[list[int], list[int]]], stop_id: int) -> int:
    """On real encoded examples: every labelled span ends with the stop token. Returns spans checked."""
    spans = 0
    for number, (ids, labels) in enumerate(examples):
        j = 0
        while j < len(labels):
            if labels[j] == IGNORE:
                j += 1
                continue
            k = j
            while k + 1 < len(labels) and labels[k + 1] != IGNORE:
                k += 1
            if ids[k] != stop_id and not (k == len(ids) - 1):  # a truncated tail may end anywhere
                raise UserError(f"example {number}: " + _stop_error(tokenizer, stop_id, tokenizer.decode(ids[j:k + 1])))
            spans += 1
            j = k + 1
    return spans


def pack(examples: Sequence[dict], max_length: int) -> list[dict]:
    """Greedy first-fit packing into rows of at most max_length tokens, in order. Each row keeps
    position ids that restart at 0 per conversation; the first label of each is IGNORE, so no
    conversation learns to predict its neighbour's first token."""
    rows: list[dict] = []
    current = {"input_ids": [], "labels": [], "position_ids": []}
    for ex in examples:
        n = len(ex["input_ids"])
        if current["input_ids"] and len(current["input_ids"]) + n > max_length:
            rows.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += ex["input_ids"]
        current["labels"] += [IGNORE] + ex["labels"][1:]
        current["position_ids"] += list(range(n))
    if current["input_ids"]:
        rows.append(current)
    return rows


class ChatCollator:
    """Pads a batch. Unpacked rows get an attention mask; packed rows get position ids (padding
    continues as its own restarting sequence) and no attention mask, so transformers builds the
    block-diagonal causal mask from them."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(ex["input_ids"]) for ex in examples)
        packed = "position_ids" in examples[0]
        out: dict[str, list] = {"input_ids": [], "labels": [], "position_ids" if packed else "attention_mask": []}
        for ex in examples:
            pad = width - len(ex["input_ids"])
            out["input_ids"].append(ex["input_ids"] + [self.pad_id] * pad)
            out["labels"].append(ex["labels"] + [IGNORE] * pad)
            if packed:
                out["position_ids"].append(ex["position_ids"] + list(range(pad)))
            else:
                out["attention_mask"].append([1] * len(ex["input_ids"]) + [0] * pad)
        return {k: torch.tensor(v) for k, v in out.items()}


@contextmanager
def base_model(model: torch.nn.Module, ref: "ModelRef") -> Iterator[torch.nn.Module]:
    """The pre-trained model behind a tuned one, for comparison: the adapter switched off (LoRA), or the
    model `ref` names loaded afresh (same revision), with the tuned model's vocabulary and generation config."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        with model.disable_adapter():
            yield model
        return
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ref.source, dtype=torch.float32, **ref.from_pretrained_kwargs())
    base.config.use_cache = False
    if base.get_input_embeddings().num_embeddings < model.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(model.get_input_embeddings().num_embeddings)
    base.generation_config = model.generation_config
    yield base.to(next(model.parameters()).device)
