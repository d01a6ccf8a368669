"""Peer for bench_sft.py: supervised fine-tuning with TRL's `SFTTrainer`, as its documentation shows it.

    python bench/peer_trl_sft.py --data chat.jsonl --model MODEL_DIR --method lora --steps 20 \
        --batch-size 4 --max-length 128 --lr 2e-4 --out /tmp/peer

Data: the first STEPS * BATCH_SIZE rows of the JSONL file ({"messages": [...]}, in file order), so
that one epoch is STEPS optimizer steps (run_tunesmith_sft.py trains on the same rows). Each row
becomes a conversational prompt-completion example: prompt = every message before the last
assistant turn, completion = [that turn]. The full conversation renders with the tokenizer's own
chat template exactly as tunesmith renders it, so both tools see the same input tokens; only the
loss mask differs: TRL's completion-only loss covers the last assistant turn (plus the newline the
template puts after <|im_end|>), tunesmith's covers every assistant turn. (`assistant_only_loss=True`
would match tunesmith, but it needs `{% generation %}` markers in the template; SmolLM2's has none
and TRL 1.16's `get_training_chat_template` has no patched version for it, so TRL raises.)
TRL truncates to max_length and then drops examples left with no completion token; if that drops
rows, max_steps still runs STEPS steps and the trainer starts a second pass (reported as
`dropped_rows`).

SFTConfig settings, beyond the documented minimum (max_steps, batch size, learning rate):
  bf16=False, fp16=False   TRL defaults bf16 to True; tunesmith trains in float32
  gradient_checkpointing   TRL defaults it to True; off here (tunesmith does not checkpoint),
                           --gradient-checkpointing turns TRL's default back on
  packing=False, completion_only_loss=True, max_length=--max-length
  save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True, logging_steps=5
  model_init_kwargs={"dtype": "float32"} (TRL's default too; spelled out)
Everything else (AdamW, linear decay, no warm-up, weight decay 0, max_grad_norm 1, random
sampler, dataloader defaults) is the TrainingArguments default; run_tunesmith_sft.py matches it.

Output: one JSON line. train_seconds runs from on_train_begin to the last optimizer step (the
same span tunesmith's train_seconds covers); trainer_train_runtime is the Trainer's own figure.
tokens = non-padding input tokens of the batches trained on (attention_mask summed in
training_step). peak_rss_mb is ru_maxrss read at the end of training; peak_rss_mb_process at exit.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def prompt_completion(messages: list[dict]) -> dict:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return {"prompt": messages[:last], "completion": [messages[last]]}


def arguments(description: str) -> argparse.ArgumentParser:
    """The options both runners take (run_tunesmith_sft.py imports this), so both see the same settings."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", required=True, help='JSONL of {"messages": [...]} rows')
    ap.add_argument("--model", required=True, help="folder of a transformers causal LM")
    ap.add_argument("--method", choices=["lora", "full"], default="lora")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=int, default=16)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    return ap


def main() -> None:
    ap = arguments(__doc__.splitlines()[0])
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="TRL's default; off unless given, as tunesmith does not checkpoint")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    n_rows = a.steps * a.batch_size
    rows = []
    with open(a.data, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(prompt_completion(json.loads(line)["messages"]))
            if len(rows) == n_rows:
                break
    if len(rows) < n_rows:
        print(f"warning: {a.data} has {len(rows)} rows, fewer than steps * batch size = {n_rows}", flush=True)
    dataset = Dataset.from_list(rows)

    peft_config = None
    if a.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=a.lora_rank, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout,
                                 target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")

    args = SFTConfig(
        output_dir=a.out,
        max_steps=a.steps,
        per_device_train_batch_size=a.batch_size,
        learning_rate=a.lr,
        max_length=a.max_length,
        packing=False,
        completion_only_loss=True,
        gradient_checkpointing=a.gradient_checkpointing,
        bf16=False,
        fp16=False,
        use_cpu=True,
        logging_steps=5,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=a.seed,
        model_init_kwargs={"dtype": "float32"},
    )

    class Clock(TrainerCallback):
        """Training time from on_train_begin to the last optimizer step; RSS high-water mark at the end."""

        def __init__(self) -> None:
            self.start = self.last = None
            self.rss = None

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.last = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            self.rss = rss_mb()

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer that also counts the non-padding input tokens it trains on."""

        tokens = 0
        rows = 0

        def training_step(self, model, inputs, *args, **kwargs):
            self.tokens += int(inputs["attention_mask"].sum())
            self.rows += int(inputs["input_ids"].shape[0])
            return super().training_step(model, inputs, *args, **kwargs)

    clock = Clock()
    trainer = CountingSFTTrainer(model=a.model, args=args, train_dataset=dataset, peft_config=peft_config,
                                 callbacks=[clock])
    kept = len(trainer.train_dataset)
    output = trainer.train()
    train_seconds = clock.last - clock.start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trl_tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    import torch
    import transformers
    import trl

    print(json.dumps({
        "tool": "trl", "method": a.method, "steps": trainer.state.global_step,
        "batch_size": a.batch_size, "max_length": a.max_length, "lr": a.lr,
        "train_seconds": round(train_seconds, 2),
        "trainer_train_runtime": round(output.metrics["train_runtime"], 2),
        "tokens": trainer.tokens,
        "tokens_per_second": round(trainer.tokens / train_seconds, 1),
        "rows_trained": trainer.rows,
        "dropped_rows": len(rows) - kept,
        "trl_num_tokens": trl_tokens[-1] if trl_tokens else None,
        "peak_rss_mb": clock.rss,
        "peak_rss_mb_process": rss_mb(),
        # the last logged loss (mean of the last logging_steps steps); the run's mean when it never logged
        "final_loss": round(losses[-1] if losses else output.metrics["train_loss"], 4),
        "gradient_checkpointing": a.gradient_checkpointing,
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
    }), flush=True)


if __name__ == "__main__":
    main()
