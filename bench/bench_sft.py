"""Benchmark: SFT training speed and peak memory, tunesmith vs TRL's SFTTrainer, same data and settings.

    python bench/bench_sft.py [--steps 20] [--methods lora full] [--append]

Data: the deduplicated English chatterbot-corpus conversations (`tunesmith.demo.chatterbot_jsonl()`,
all of them, in file order); both tools train on its first STEPS * 4 rows (see the docstrings of
peer_trl_sft.py and run_tunesmith_sft.py for how each is set up and what it counts).
Model: smollm2-135m from tunesmith's registry. Batch 4, max length 128, 1 pass of STEPS steps;
LoRA r=8, alpha 16, dropout 0.05 on q_proj/v_proj at lr 2e-4; full fine-tuning at lr 2e-5.

Each (method, tool) runs in a fresh subprocess, so peak RSS is that run's own. Prints one JSON line
per run, a table and, per method, the ratios tunesmith / TRL of tokens per second and of peak RSS.
--append adds a dated section to bench/RESULTS.md. Needs `trl` and `datasets` for the peer.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = {"trl": BENCH / "peer_trl_sft.py", "tunesmith": BENCH / "run_tunesmith_sft.py"}
LR = {"lora": 2e-4, "full": 2e-5}
NAMES = {"trl": "TRL SFTTrainer (peer)", "tunesmith": "tunesmith"}


def run_one(tool: str, method: str, data: Path, model_dir: str, a, work: Path) -> dict:
    cmd = [sys.executable, str(SCRIPTS[tool]), "--data", str(data), "--model", model_dir, "--method", method,
           "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--max-length", str(a.max_length),
           "--lr", str(LR[method]), "--lora-rank", "8", "--lora-alpha", "16", "--lora-dropout", "0.05",
           "--seed", str(a.seed), "--out", str(work / f"{tool}-{method}")]
    if tool == "trl" and a.peer_gradient_checkpointing:
        cmd.append("--gradient-checkpointing")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    tic = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{tool} {method} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    result["process_wall_s"] = round(time.perf_counter() - tic, 1)
    result["load_before"] = None if load is None else round(load, 2)
    return result


def table(rows: list[dict]) -> list[str]:
    lines = ["| tool | method | steps | batch | max len | lr | train s | tokens | tokens/s | peak RSS MB "
             "| final loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {NAMES[r['tool']]} | {r['method']} | {r['steps']} | {r['batch_size']} | {r['max_length']} | "
                     f"{r['lr']:g} | {r['train_seconds']} | {r['tokens']} | {r['tokens_per_second']} | "
                     f"{r['peak_rss_mb']} | {r['final_loss']} |")
    return lines


def ratios(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        by = {r["tool"]: r for r in rows if r["method"] == method}
        if {"trl", "tunesmith"} <= set(by):
            t, p = by["tunesmith"], by["trl"]
            out[method] = {"throughput": t["tokens_per_second"] / p["tokens_per_second"],
                           "memory": t["peak_rss_mb"] / p["peak_rss_mb"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--methods", nargs="+", choices=["lora", "full"], default=["lora", "full"])
    ap.add_argument("--peer-gradient-checkpointing", action="store_true",
                    help="run TRL with its default gradient checkpointing (off otherwise: tunesmith does not use it)")
    ap.add_argument("--append", action="store_true", help="append the results to bench/RESULTS.md")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunesmith.demo import chatterbot_jsonl
    from tunesmith.models.registry import resolve_model

    data = chatterbot_jsonl()
    n_conv = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    model_dir = resolve_model("smollm2-135m").source
    work = Path(tempfile.mkdtemp(prefix="tunesmith-bench-sft-"))
    rows = []
    for method in a.methods:
        for tool in ("trl", "tunesmith"):
            rows.append(run_one(tool, method, data, model_dir, a, work))
            print(json.dumps(rows[-1]), flush=True)

    print("\n".join(table(rows)))
    found = ratios(rows)
    for method, r in found.items():
        print(f"{method}: throughput ratio tunesmith/TRL = {r['throughput']:.2f}x; "
              f"peak RSS ratio tunesmith/TRL = {r['memory']:.2f}x", flush=True)

    if a.append:
        import torch
        import transformers
        import trl

        machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, transformers "
                   f"{transformers.__version__}, trl {trl.__version__}, {torch.get_num_threads()} torch threads")
        lines = [f"\n## {dt.date.today()} — SFT speed and memory: tunesmith vs TRL SFTTrainer, smollm2-135m "
                 f"({machine})\n",
                 f"chatterbot-corpus conversations (first {a.steps * a.batch_size} of {n_conv}, the same rows "
                 f"for both tools), {a.steps} steps of batch {a.batch_size}, max length {a.max_length}, float32, "
                 "no packing, no gradient checkpointing"
                 f"{' for tunesmith (TRL: its default, on)' if a.peer_gradient_checkpointing else ''}, "
                 "no warm-up, weight decay 0; LoRA r=8, alpha 16, dropout 0.05 on q_proj/v_proj.\n",
                 *table(rows), ""]
        for method, r in found.items():
            lines.append(f"{method}: throughput ratio (tunesmith / TRL, tokens/s): **{r['throughput']:.2f}x**; "
                         f"peak RSS ratio: **{r['memory']:.2f}x**.")
        loads = ", ".join(f"{r['tool']} {r['method']} {r['load_before']}" for r in rows)
        lines.append("\nNotes on this run: tokens are the non-padding input tokens trained on (the same conversations, "
                     "so the same count for both unless one tool dropped rows: "
                     + ", ".join(f"{r['tool']} {r['method']} {r['dropped_rows']}" for r in rows)
                     + " dropped). Train seconds cover the optimizer steps only (no evaluation, loading or saving); "
                     "peak RSS is the process's high-water mark at the end of training. Loss masks differ: TRL's "
                     "completion-only loss covers the last assistant turn, tunesmith's every assistant turn, so "
                     f"final losses are not comparable. Load average (1 min) before each run: {loads}.")
        with open(BENCH / "RESULTS.md", "a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
