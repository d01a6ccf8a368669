"""Benchmark: federated LoRA chat SFT on Flower: does the federated model beat the base model on held-out
response loss?

    python bench/bench_federated_sft.py [--clients 4 --rounds 2 --local-epochs 1 --lr 2e-3 --max-length 128]
                                        [--compare] [--output-dir DIR] [--note 'contended (load 8)'] [--append]

The chat demo data (chatterbot-corpus English conversations, deduplicated; tunesmith.demo.chatterbot_jsonl)
with SmolLM2-135M-Instruct (the shipped GGUF package, registry name smollm2-135m) and LoRA, split iid into
CLIENTS silos, federated with FedAvg in Flower's simulation runtime (1 core per client). The server scores
the global adapter on the validation conversations' response loss each round and keeps the best round; the
run then compares it with the base model (the untuned SmolLM2) on the test conversations: the token-mean
response loss and a paired bootstrap interval over conversations of base minus federated (positive:
federated lower). --compare also trains centralized (pooled) and each silo alone on the same budget (about
CLIENTS+1 times longer). Prints one JSON line; --append adds a section to bench/RESULTS.md. Defaults finish
in well under 10 minutes on 2 idle cores; wall-clock figures are only meaningful on an idle machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from bench_federated import federation_args, run_federation  # beside this script

ROOT = Path(__file__).resolve().parents[1]


def config(a, output_dir: str) -> dict:
    from tunesmith.demo import chatterbot_jsonl, sft_demo_settings

    cfg = sft_demo_settings()  # the chat demo's data, splits, audit and LoRA settings
    cfg["data"]["train"] = str(chatterbot_jsonl())
    cfg["model"]["max_length"] = a.max_length
    cfg["train"] = {**cfg["train"], "learning_rate": a.lr, "batch_size": 8, "seed": a.seed}
    cfg["train"].pop("epochs", None)
    cfg["sft"] = {**cfg["sft"], "eval_generations": a.generations, "max_new_tokens": 32}
    cfg["federated"] = {"clients": a.clients, "partition": "iid", "rounds": a.rounds, "local_epochs": a.local_epochs,
                        "transfer": "adapter", "compare": a.compare}
    return {**cfg, "output_dir": output_dir, "run_name": "chat-federated"}


def figures(run, wall: float) -> dict:
    res = run.results
    fed, test = res["federated"], res["test"]
    traffic = fed["traffic"]
    vs_base = test["loss_reduction"]  # base minus federated, paired over test conversations
    out = {"federated_loss": test["loss"], "base_loss": test["base"]["loss"], "base_minus_federated": vs_base,
           "test_conversations": test["n"], "test_tokens": test["tokens"], "silo_rows": fed["silo_rows"],
           "best_round": fed["best_round"],
           "round_validation_loss": [r["validation"]["loss"] for r in fed["round_curve"]],
           "bytes_per_client_per_round": traffic["bytes_per_client_per_round"],
           "bytes_total": traffic["bytes_total"], "full_model_bytes": traffic["full_model_bytes"],
           "share_of_full_weights": traffic["share_of_full_weights"], "federation_seconds": fed["seconds"],
           "total_seconds": round(wall, 1), "run_dir": str(run.path)}
    if "comparison" in fed:
        out["comparison_verdict"] = fed["comparison"]["verdict"]
        out["arm_losses"] = {k: v["test"]["loss"] for k, v in fed["comparison"]["arms"].items()}
    out["targets"] = {"federated_beats_base_interval_excludes_0": vs_base["low"] > 0,
                      "under_10_minutes": wall < 600}
    return out


def append(a, f: dict) -> None:
    d = f["base_minus_federated"]
    load = os.getloadavg()[0]
    note = a.note or f"load {load:.1f}"
    lines = [f"\n## {dt.date.today()} — federated LoRA chat SFT on Flower: chatterbot-corpus, smollm2-135m, "
             f"{a.clients} iid silos ({platform.machine()}, {os.cpu_count()} cores, {note})\n",
             f"`python bench/bench_federated_sft.py --clients {a.clients} --rounds {a.rounds} --local-epochs "
             f"{a.local_epochs} --lr {a.lr} --max-length {a.max_length}{' --compare' if a.compare else ''}` (FedAvg, "
             f"LoRA r=16 alpha 32 on the demo's targets; held-out response loss, token mean over "
             f"{f['test_conversations']} test conversations / {f['test_tokens']} answer tokens; paired bootstrap 95% "
             "interval over conversations)\n",
             "| model | test response loss | base minus federated |", "|---|---|---|",
             f"| federated (round {f['best_round']} of {a.rounds}) | {f['federated_loss']:.4f} | |",
             f"| base SmolLM2-135M-Instruct (untuned) | {f['base_loss']:.4f} | {d['difference']:+.4f} "
             f"[{d['low']:+.4f}, {d['high']:+.4f}] ({d['verdict']}) |\n"]
    for name, loss in f.get("arm_losses", {}).items():
        if name != "base":
            lines.insert(-1, f"| {name} | {loss:.4f} | |")
    lines += [f"Validation loss per round (0 = before training): "
              f"{', '.join(f'{x:.4f}' for x in f['round_validation_loss'])}. Silo rows: {f['silo_rows']}.\n",
              f"Traffic: {f['bytes_per_client_per_round'] / 1e6:.3f} MB per client per round each way = "
              f"{f['share_of_full_weights']:.2%} of the full weights ({f['full_model_bytes'] / 1e6:.1f} MB); "
              f"{f['bytes_total'] / 1e6:.1f} MB in all. Federation {f['federation_seconds']:.0f} s, whole run "
              f"{f['total_seconds']:.0f} s ({note}).\n",
              "Targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in f["targets"].items()) + ".\n"]
    if "comparison_verdict" in f:
        lines.append(f"Verdict printed by the report: {f['comparison_verdict']}.\n")
    with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
        fh.write("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    federation_args(p, clients=4, rounds=2)
    p.add_argument("--generations", type=int, default=4, help="held-out answers generated side by side")
    p.add_argument("--compare", action="store_true", help="also train centralized and each silo alone")
    a = p.parse_args()
    run, wall = run_federation(a, config, "tunesmith-fedsft-bench-")
    f = figures(run, wall)
    print(json.dumps(f))
    if a.append:
        append(a, f)


if __name__ == "__main__":
    main()
