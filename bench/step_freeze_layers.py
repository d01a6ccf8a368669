"""CPU time of one training step of MiniLM-L6 with train.freeze_layers N (issue 13): interleaved A/B.

    python bench/step_freeze_layers.py [--layers 0 1 2 3] [--batches 12] [--rounds 3] [--threads 1]

One model per N, built as full fine-tuning builds it (word embeddings frozen; for N > 0 all embeddings and
the bottom N encoder layers; layer decay 0.8 groups; the loop's fused AdamW), each stepped on the same
batches: 32 real Banking77 rows each, drawn from one length-grouped epoch (max length 128), under bf16
autocast with eager attention as the defaults train on a bf16 CPU. Batches and models are interleaved
(each batch runs on every N back to back, in a rotating order), and each step is timed in CPU seconds
(time.process_time), so the ratios survive a shared machine. Prints the mean CPU seconds per step and the
ratio to N = 0. Takes about 2 minutes on one idle core.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else Path("/work/shared")


def build(source: str, n_labels: int, freeze: int):
    """The model and optimizer full fine-tuning gives MiniLM-L6 with train.freeze_layers = FREEZE."""
    from functools import partial

    from transformers import AutoModelForSequenceClassification

    from tunesmith.config import TrainConfig
    from tunesmith.models.layers import freeze_bottom, layer_decay_groups
    from tunesmith.train.loop import _optimizer

    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=n_labels,
                                                               attn_implementation="eager")
    model.get_input_embeddings().weight.requires_grad_(False)
    if freeze:
        freeze_bottom(model, freeze)
    model.train()
    cfg = TrainConfig(method="full")
    groups = partial(layer_decay_groups, decay=0.8, weight_decay=cfg.weight_decay)
    return model, _optimizer(model, cfg, 4e-4, groups)


def batches(source: str, n: int, batch_size: int = 32, max_length: int = 128):
    """N batches spread over one length-grouped epoch of the Banking77 training rows, and the label count."""
    import pandas as pd
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from tunesmith.train.sampling import LengthGroupedBatchSampler

    df = pd.read_csv(SHARED / "data" / "banking77_train.csv").dropna()
    labels = {l: i for i, l in enumerate(sorted(df["category"].unique()))}
    tok = AutoTokenizer.from_pretrained(source)
    enc = tok(df["text"].tolist(), truncation=True, max_length=max_length)
    rows = [{"input_ids": ids, "attention_mask": m, "labels": labels[c]}
            for ids, m, c in zip(enc["input_ids"], enc["attention_mask"], df["category"])]
    epoch = list(LengthGroupedBatchSampler([len(r["input_ids"]) for r in rows], batch_size, seed=42))
    picked = [epoch[i * len(epoch) // n] for i in range(n)]
    collate = DataCollatorWithPadding(tok, return_tensors="pt")
    with torch.no_grad():
        return [collate([rows[j] for j in b]) for b in picked], len(labels)


def step(model, optimizer, batch) -> float:
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
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="minilm-l6")
    a = ap.parse_args()
    import torch

    from tunesmith.models.registry import resolve_model

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    source = resolve_model(a.model).source
    data, n_labels = batches(source, a.batches)
    arms = {n: build(source, n_labels, n) for n in a.layers}
    for model, opt in arms.values():  # warm-up: first-call allocations and kernel selection
        step(model, opt, data[0])
    cpu: dict[int, list[float]] = {n: [] for n in a.layers}
    k = 0
    for _ in range(a.rounds):
        for batch in data:
            order = a.layers[k % len(a.layers):] + a.layers[:k % len(a.layers)]
            k += 1
            for n in order:
                cpu[n].append(step(*arms[n], batch))
    tokens = sum(b["input_ids"].numel() for b in data) / len(data)
    print(f"MiniLM-L6, batch 32 Banking77 rows ({tokens:.0f} padded tokens per batch on average), bf16 autocast, "
          f"{a.threads} thread(s), {a.rounds} x {a.batches} steps per arm, load {os.getloadavg()[0]:.1f}")
    print("| freeze_layers | trainable weights | CPU s / step (mean) | ratio to 0 |")
    print("|---|---|---|---|")
    base = sum(cpu[a.layers[0]]) / len(cpu[a.layers[0]])
    for n in a.layers:
        mean = sum(cpu[n]) / len(cpu[n])
        trainable = sum(p.numel() for p in arms[n][0].parameters() if p.requires_grad)
        print(f"| {n} | {trainable / 1e6:.2f} M | {mean:.4f} | {mean / base:.3f} |")


if __name__ == "__main__":
    main()
