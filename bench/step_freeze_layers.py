"""CPU time of one training step of MiniLM-L6 with train.freeze_layers N (issue 13): interleaved A/B.

    python bench/step_freeze_layers.py [--layers 0 1 2 3] [--cached 2 3] [--batches 12] [--rounds 3] [--threads 1]

One model per N, built as full fine-tuning builds it (word embeddings frozen; for N > 0 all embeddings and
the bottom N encoder layers; layer decay 0.8 groups; the loop's fused AdamW), each stepped on the same
batches: 32 real Banking77 rows each, drawn from one length-grouped epoch (max length 128), under bf16
autocast with eager attention as the defaults train on a bf16 CPU. Batches and models are interleaved
(each batch runs on every N back to back, in a rotating order), and each step is timed in CPU seconds
(time.process_time), so the ratios survive a shared machine. Prints the mean CPU seconds per step and the
ratio to N = 0. An arm "Nc" (--cached) also caches the frozen bottom (train.cache_frozen_layers): it trains
on the stored outputs, and its one-off cache pass (timed over the batches' rows, in CPU seconds) is shown
spread over the steps of a 4-epoch run, the defaults' epochs on Banking77. Takes about 2 minutes on one
idle core.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else Path("/work/shared")


def build(source: str, n_labels: int, freeze: int, cached: list[dict] | None = None):
    """The model and optimizer full fine-tuning gives MiniLM-L6 with train.freeze_layers = FREEZE; with
    CACHED (the arm's rows), its frozen bottom cached as train.cache_frozen_layers does. Returns the model,
    the optimizer, the rows as the model takes them and the cache pass's CPU seconds."""
    from functools import partial

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from tunesmith.config import TrainConfig
    from tunesmith.models import frozen_bottom as B
    from tunesmith.models.layers import freeze_bottom, layer_decay_groups
    from tunesmith.train.loop import _optimizer

    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=n_labels,
                                                               attn_implementation="eager")
    model.get_input_embeddings().weight.requires_grad_(False)
    if freeze:
        freeze_bottom(model, freeze)
    rows, cache_cpu = None, 0.0
    if cached is not None:
        collate = DataCollatorWithPadding(AutoTokenizer.from_pretrained(source), return_tensors="pt")
        tic = time.process_time()
        cache = B.cache_bottom(model, freeze, {"train": cached}, collate, "bf16")
        cache_cpu = time.process_time() - tic
        rows = B.id_examples({"train": cached}, cache)["train"]
        assert B.attach(model, cache, {"train": cached}, {"train": rows}, collate)
    model.train()
    cfg = TrainConfig(method="full")
    groups = partial(layer_decay_groups, decay=0.8, weight_decay=cfg.weight_decay)
    return model, _optimizer(model, cfg, 4e-4, groups), rows, cache_cpu


def batches(source: str, n: int, batch_size: int = 32, max_length: int = 128):
    """N batches spread over one length-grouped epoch of the Banking77 training rows (as row lists), the
    collator, the label count and the epoch's number of batches."""
    import pandas as pd
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from tunesmith.train.sampling import LengthGroupedBatchSampler

    df = pd.read_csv(SHARED / "data" / "banking77_train.csv").dropna()
    labels = {l: i for i, l in enumerate(sorted(df["category"].unique()))}
    tok = AutoTokenizer.from_pretrained(source)
    enc = tok(df["text"].tolist(), truncation=True, max_length=max_length)
    rows = [{"input_ids": ids, "attention_mask": m, "labels": labels[c]}
            for ids, m, c in zip(enc["input_ids"], enc["attention_mask"], df["category"])]
    epoch = list(LengthGroupedBatchSampler([len(r["input_ids"]) for r in rows], batch_size, seed=42))
    picked = [[rows[j] for j in epoch[i * len(epoch) // n]] for i in range(n)]
    return picked, DataCollatorWithPadding(tok, return_tensors="pt"), len(labels), len(epoch)


def step(model, optimizer, batch: dict) -> float:
    """One optimizer step (forward, loss, backward, clip, AdamW) under bf16 autocast: CPU seconds."""
    import torch

    tic = time.process_time()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad()
    return time.process_time() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--cached", nargs="*", type=int, default=[2, 3], help="freeze_layers arms also cached")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=4, help="a run's epochs, to spread the cache pass over")
    ap.add_argument("--model", default="minilm-l6")
    a = ap.parse_args()
    import torch

    from tunesmith.models.registry import resolve_model

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    source = resolve_model(a.model).source
    picked, collate, n_labels, epoch_batches = batches(source, a.batches)
    flat = [r for b in picked for r in b]
    arms = {str(n): build(source, n_labels, n) for n in a.layers}
    arms.update({f"{n}c": build(source, n_labels, n, flat) for n in a.cached})
    data = {name: [collate((arm[2] or flat)[i * 32:(i + 1) * 32]) for i in range(len(picked))]
            for name, arm in arms.items()}
    for name, (model, opt, _, _) in arms.items():  # warm-up: first-call allocations and kernel selection
        step(model, opt, data[name][0])
    names = list(arms)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    k = 0
    for _ in range(a.rounds):
        for b in range(len(picked)):
            order = names[k % len(names):] + names[:k % len(names)]
            k += 1
            for n in order:
                cpu[n].append(step(*arms[n][:2], data[n][b]))
    tokens = sum(b["input_ids"].numel() for b in data[names[0]]) / len(picked)
    print(f"MiniLM-L6, batch 32 Banking77 rows ({tokens:.0f} padded tokens per batch on average), bf16 autocast, "
          f"{a.threads} thread(s), {a.rounds} x {a.batches} steps per arm, load {os.getloadavg()[0]:.1f}")
    print(f"| freeze_layers | trainable weights | CPU s / step (mean) | ratio to {names[0]} | with the cache pass "
          f"over {a.epochs} epochs: CPU s / step | ratio |")
    print("|---|---|---|---|---|---|")
    base = sum(cpu[names[0]]) / len(cpu[names[0]])
    for n in names:
        mean = sum(cpu[n]) / len(cpu[n])
        trainable = sum(p.numel() for p in arms[n][0].parameters() if p.requires_grad)
        # the cache pass ran over len(flat) rows; a run makes it over an epoch's rows once, for EPOCHS epochs
        spread = arms[n][3] / len(picked) / a.epochs
        print(f"| {n} | {trainable / 1e6:.2f} M | {mean:.4f} | {mean / base:.3f} | {mean + spread:.4f} | "
              f"{(mean + spread) / base:.3f} |")


if __name__ == "__main__":
    main()
