"""tunesmith side of bench_sft.py: the same CLI and JSON line as peer_trl_sft.py, trained with tunesmith.

    python bench/run_tunesmith_sft.py --data chat.jsonl --model MODEL_DIR --method lora --steps 20 \
        --batch-size 4 --max-length 128 --lr 2e-4 --out /tmp/ts

Data: the same first STEPS * BATCH_SIZE rows of the JSONL file as the peer, written to OUT/train.jsonl
and given to tunesmith as data.train, so that one epoch (epochs=1; tunesmith has no max_steps) is
STEPS steps of BATCH_SIZE and both tools train on exactly the same conversations. tunesmith splits
validation and test sets off data.train when they are not given; to keep the training rows whole, the
next 8 rows of the file go to OUT/validation.jsonl and the 8 after to OUT/test.jsonl (validation is
scored once after training, not inside the loop (eval_every_steps above STEPS), outside train_seconds;
eval.test is off, so test is never scored).
The batch order differs from the peer's (both shuffle with seed, with different samplers), so the
padding per batch differs a little; tokens and tokens_per_second count non-padding tokens only.

Settings matched to the peer (TRL/TrainingArguments defaults): warmup_ratio 0 (tunesmith's default
is 0.06), weight_decay 0 (default 0.01), linear decay, max_grad_norm 1, group_by_length false
(tunesmith's default true batches similar lengths, which is faster: not what is compared here),
no packing, float32, no gradient checkpointing, loss on assistant tokens (every assistant turn;
the peer's completion-only loss covers the last one: same input tokens, different loss mask).
eval_batch_size = batch size, so the after-training validation stays small.

Output: one JSON line like the peer's. train_seconds and global_step come from
run.results["training"] (tunesmith's clock covers the training steps, not evaluation or
checkpoints). tokens = sum of the lengths of the encoded training examples (tunesmith's own
chat.encode_conversation, truncated to max_length, unlearnable ones dropped, as its prepare does):
one epoch consumes each exactly once, so it equals the non-padding input tokens of the batches.
peak_rss_mb is ru_maxrss read after the last optimizer step (a train-loop callback);
peak_rss_mb_process at exit (that also covers the after-training comparison with the base model
and saving the merged model).
"""
from __future__ import annotations

import json
import os
import resource
from pathlib import Path

HELD_OUT = 8  # rows each for the validation and test files


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def count_tokens(model_dir: str, conversations: list[list[dict]], max_length: int) -> tuple[int, int]:
    """(tokens, examples) of the training set as tunesmith encodes it (see SupervisedFineTuning._encode)."""
    from transformers import AutoTokenizer, GenerationConfig

    from tunesmith.models import chat

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat.set_template(tokenizer, None)
    try:
        gen = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        gen = GenerationConfig()
    stop_id = chat.stop_token(tokenizer, gen)
    tokens = examples = 0
    for msgs in conversations:
        ids, labels = chat.encode_conversation(tokenizer, msgs, stop_id)
        ids, labels = ids[:max_length], labels[:max_length]
        if all(lab == chat.IGNORE for lab in labels[1:]):
            continue
        tokens += len(ids)
        examples += 1
    return tokens, examples


def main() -> None:
    from peer_trl_sft import arguments  # same folder: the script's own folder is on sys.path

    a = arguments(__doc__.splitlines()[0]).parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    n_rows = a.steps * a.batch_size
    lines = [line for line in Path(a.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < n_rows + 2 * HELD_OUT:
        raise SystemExit(f"{a.data}: {len(lines)} rows; need steps * batch size + {2 * HELD_OUT} = "
                         f"{n_rows + 2 * HELD_OUT}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": lines[:n_rows], "validation": lines[n_rows:n_rows + HELD_OUT],
             "test": lines[n_rows + HELD_OUT:n_rows + 2 * HELD_OUT]}
    for split, rows in files.items():
        (out / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")

    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    cfg = {"task": "sft",
           "model": {"name": a.model, "max_length": a.max_length},
           "data": {split: str(out / f"{split}.jsonl") for split in files},
           "train": {"method": a.method, "epochs": 1, "batch_size": a.batch_size, "eval_batch_size": a.batch_size,
                     "learning_rate": a.lr, "warmup_ratio": 0.0, "weight_decay": 0.0, "scheduler": "linear",
                     "max_grad_norm": 1.0, "group_by_length": False, "seed": a.seed, "logging_steps": 5,
                     # no evaluation or checkpoint inside the training loop: tunesmith would otherwise score
                     # validation and write a checkpoint (all weights, for full) at the end of the epoch, before
                     # the last-step callback reads the memory high-water mark; validation is still scored
                     # after training (finish), outside train_seconds and peak_rss_mb
                     "eval_every_steps": 10**9, "checkpoint_every_steps": 10**9,
                     "lora": {"rank": a.lora_rank, "alpha": a.lora_alpha, "dropout": a.lora_dropout,
                              "target_modules": ["q_proj", "v_proj"]}},
           "sft": {"eval_generations": 0, "packing": False},
           "eval": {"test": False},
           "audit": {"enabled": False},
           "output_dir": str(out / "runs"), "run_name": "bench"}

    seen = {}

    def at_step(state: dict) -> None:
        if state["global_step"] == state["total_steps"]:
            seen["rss"] = rss_mb()

    run = fine_tune(build_config(cfg), callbacks=[at_step])
    training = run.results["training"]
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in records if r.get("type") == "train"]
    conversations = [json.loads(line)["messages"] for line in files["train"]]
    tokens, examples = count_tokens(a.model, conversations, a.max_length)
    seconds = training["train_seconds"]

    import torch
    import transformers

    import tunesmith

    print(json.dumps({
        "tool": "tunesmith", "method": a.method, "steps": training["global_step"],
        "batch_size": a.batch_size, "max_length": a.max_length, "lr": a.lr,
        "train_seconds": seconds,
        "tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1),
        "rows_trained": examples,
        "dropped_rows": n_rows - examples,
        "peak_rss_mb": seen.get("rss"),
        "peak_rss_mb_process": rss_mb(),
        "final_loss": round(losses[-1], 4) if losses else None,
        "torch_threads": torch.get_num_threads(),
        "run_dir": str(run.path),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tunesmith": getattr(tunesmith, "__version__", "?")},
    }), flush=True)


if __name__ == "__main__":
    main()
