"""Use and ship a tuned language model: answer chat prompts, and merge a LoRA adapter for export."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from tunesmith.errors import UserError
from tunesmith.io import replace_dir


@dataclass
class Completion:
    """One generated answer and its token counts."""
    text: str
    finish_reason: str  # "stop": the end-of-turn token or a stop string; "length": max_new_tokens reached
    prompt_tokens: int
    completion_tokens: int


class ChatModel:
    """A run's tuned causal LM with its tokenizer and chat template; generation stops at the
    end-of-turn token the run checked before training."""

    def __init__(self, run_dir: str | Path, max_new_tokens: int = 128) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tunesmith.models import quiet_hf
        from tunesmith.run import completed_run

        quiet_hf()
        run = completed_run(run_dir)
        if run.config.task != "sft":
            raise UserError(f"{run.path}: a {run.config.task} run; chat needs a run of task sft")
        if not (run.model_dir / "config.json").is_file():
            raise UserError(f"{run.path}: no model/ folder (status {run.status}); the run did not finish")
        self.tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(run.model_dir, dtype=torch.float32).eval()
        self.stop_id = self.model.generation_config.eos_token_id
        self.system = run.config.sft.system_prompt
        self.max_new_tokens = max_new_tokens

    @property
    def stop(self) -> int:
        """The end-of-turn token id the run checked before training."""
        return self.stop_id if isinstance(self.stop_id, int) else self.stop_id[0]

    @property
    def context(self) -> int:
        """Most tokens (prompt + answer) the model takes."""
        return int(getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The conversation rendered with the run's chat template (and system prompt), up to the
        assistant header."""
        from tunesmith.models.chat import prompt_ids

        if self.system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system}, *messages]
        return prompt_ids(self.tokenizer, messages)

    def reply(self, messages: list[dict]) -> str:
        from tunesmith.evaluate.generation import generate_answers

        return generate_answers(self.model, self.tokenizer, [self.prompt_ids(messages)], self.stop,
                                self.max_new_tokens)[0]

    def complete(self, prompt: Sequence[int], max_new_tokens: int, temperature: float = 0.0,
                 stop: Sequence[str] = (), seed: int | None = None, on_text: Callable[[str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> Completion:
        """Generate token by token from prompt ids: greedy below temperature 1e-4 (0 included; the same answer as
        `reply`), sampled otherwise. Ends at the end-of-turn token, at the first of the `stop`
        strings (not included), or after max_new_tokens. `on_text` receives the answer in pieces as
        they become final: text that could still turn into a stop string, trailing whitespace and
        half-decoded characters are held back, so the pieces join to exactly `Completion.text`."""
        import torch

        import inspect

        from transformers import DynamicCache

        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        tokens: list[int] = []
        sent, finish, n_generated = 0, "length", 0
        inputs = torch.tensor([list(prompt)])
        # the key/value cache fills in place; transformers 5.x renames the argument past_key_values -> cache
        cache = DynamicCache(config=self.model.config)
        cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        text = ""
        with torch.no_grad():
            for _ in range(max_new_tokens):
                if cancelled is not None and cancelled():
                    break
                logits = self.model(input_ids=inputs, use_cache=True, **{cache_arg: cache}).logits[0, -1].float()
                # below 1e-4 sampling is greedy in effect, and a float32 division by a tinier (or subnormal)
                # temperature overflows to inf - inf or divides by zero
                if temperature >= 1e-4:
                    probs = torch.softmax((logits - logits.max()) / temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                else:
                    token = int(logits.argmax())
                n_generated += 1
                if token == self.stop:
                    finish = "stop"
                    break
                tokens.append(token)
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).lstrip()
                cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
                if cut >= 0:
                    text, finish = text[:cut].rstrip(), "stop"
                    break
                ready = len(text) - _held_back(text, stop)
                if on_text is not None and ready > sent:
                    on_text(text[sent:ready])
                    sent = ready
                inputs = torch.tensor([[token]])
        text = text.rstrip()
        if on_text is not None and len(text) > sent:
            on_text(text[sent:])
        return Completion(text, finish, len(prompt), n_generated)

    def conversation(self, lines: Iterator[str]) -> Iterator[str]:
        """Answer each user line in turn, keeping the history."""
        history: list[dict] = []
        for line in lines:
            if not line.strip():
                continue
            history.append({"role": "user", "content": line.strip()})
            answer = self.reply(history)
            history.append({"role": "assistant", "content": answer})
            yield answer


def _held_back(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters are not final yet: a half-decoded character, a possible start of
    a stop string, and any whitespace before those (stripped if the answer ends there)."""
    hold = 1 if text.endswith("\ufffd") else 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    while hold < len(text) and text[len(text) - hold - 1].isspace():
        hold += 1
    return hold


def export_merged(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Base model + the run's LoRA adapter, merged into plain weights (a folder any transformers
    user can load), written to OUTPUT (default RUN_DIR/merged)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.models import pooling, quiet_hf
    from tunesmith.models.registry import ModelRef
    from tunesmith.run import completed_run

    quiet_hf()
    run = completed_run(run_dir)
    adapter = run.path / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{run.path}: no LoRA adapter (train.method was {run.config.train.method}); its model/ folder "
                        "is already a plain model")
    # the base the adapter was trained on: the recorded source at the configured revision
    source = json.loads((run.path / "data_report.json").read_text())["model_source"]
    ref = ModelRef.from_config(run.config.model, source)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    if run.config.task == "sft":
        base = AutoModelForCausalLM.from_pretrained(ref.source, dtype=torch.float32, **ref.from_pretrained_kwargs())
    else:
        labels = run.results.get("labels") or json.loads((run.path / "data_report.json").read_text())["labels"]
        pooling.register()  # the base may be an earlier run's mean-pooled model/ folder
        base = pooling.restore_pooling(AutoModelForSequenceClassification.from_pretrained(
            ref.source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)}, **ref.from_pretrained_kwargs()))
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    if (run.model_dir / "generation_config.json").is_file():
        from transformers import GenerationConfig

        merged.generation_config = GenerationConfig.from_pretrained(run.model_dir)
    out = Path(output) if output else run.path / "merged"
    tmp = out.with_name(f".{out.name}.tmp")
    merged = pooling.portable(merged)  # a mean-pooled classifier keeps its pooling outside tunesmith
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    pooling.write_portable_files(merged, tmp, run.config.model.max_length)
    replace_dir(tmp, out)
    return out
