"""Use and ship a tuned language model: answer chat prompts, and merge a LoRA adapter for export."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from tunesmith.errors import UserError
from tunesmith.io import replace_dir


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

    def reply(self, messages: list[dict]) -> str:
        from tunesmith.evaluate.generation import generate_answers
        from tunesmith.models.chat import prompt_ids

        if self.system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system}, *messages]
        stop = self.stop_id if isinstance(self.stop_id, int) else self.stop_id[0]
        return generate_answers(self.model, self.tokenizer, [prompt_ids(self.tokenizer, messages)], stop,
                                self.max_new_tokens)[0]

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


def export_merged(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Base model + the run's LoRA adapter, merged into plain weights (a folder any transformers
    user can load), written to OUTPUT (default RUN_DIR/merged)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.models import quiet_hf
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
        base = AutoModelForSequenceClassification.from_pretrained(
            ref.source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)}, **ref.from_pretrained_kwargs())
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    if (run.model_dir / "generation_config.json").is_file():
        from transformers import GenerationConfig

        merged.generation_config = GenerationConfig.from_pretrained(run.model_dir)
    out = Path(output) if output else run.path / "merged"
    tmp = out.with_name(f".{out.name}.tmp")
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    replace_dir(tmp, out)
    return out
