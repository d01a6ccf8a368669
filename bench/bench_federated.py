"""Benchmark: federated LoRA fine-tuning on Flower against pooling the data and against each silo alone.

    python bench/bench_federated.py [--clients 8 --alpha 0.3 --rounds 5 --local-epochs 1 --lr 2e-3
                                     --max-length 128] [--output-dir DIR] [--append]

BBC News (2,225 articles, 5 topics; tunesmith.demo.bbc_news_csv) with MiniLM-L6 and LoRA, split into
CLIENTS silos by a Dirichlet(ALPHA) draw over the labels, federated with FedAvg in Flower's simulation
runtime (1 core per client). The same run trains the comparison models on the same test split:
centralized (all silos pooled, ROUNDS x LOCAL_EPOCHS epochs) and each silo alone (same epochs).
Prints one JSON line with the figures and the issue's targets (pass/fail); --append adds a section
to bench/RESULTS.md. Wall-clock figures are only meaningful on an idle machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def config(a, output_dir: str) -> dict:
    from tunesmith.demo import bbc_news_csv

    return {"task": "text-classification", "model": {"name": "minilm-l6", "max_length": a.max_length},
            "data": {"train": str(bbc_news_csv()), "max_train_rows": a.max_train_rows},
            "train": {"method": "lora", "learning_rate": a.lr, "batch_size": 16, "seed": a.seed},
            # BBC News repeats some articles across topics and splits: fix removes the leaks and conflicts
            "audit": {"on_issue": "fix", "label_errors": False},
            "eval": {"baselines": ["majority_class", "tfidf_logreg"]},
            "federated": {"clients": a.clients, "partition": f"dirichlet:{a.alpha}", "rounds": a.rounds,
                          "local_epochs": a.local_epochs, "strategy": a.strategy, "transfer": "adapter",
                          "local_loss": a.local_loss, "compare": not a.no_compare,
                          "refit_head": not getattr(a, "no_refit_head", False)},
            "output_dir": output_dir, "run_name": "bbc-federated"}


def figures(run, wall: float) -> dict:
    res = run.results
    fed = res["federated"]
    comp, traffic = fed["comparison"], fed["traffic"]
    central = comp["arms"]["centralized"]
    local = comp["local_only"]
    out = {
        "federated_accuracy": res["test"]["accuracy"], "federated_macro_f1": res["test"]["macro_f1"],
        "centralized_accuracy": central["test"]["accuracy"],
        "federated_minus_centralized": central["federated_minus"]["accuracy"],
        "local_mean_accuracy": local["mean_accuracy"], "local_worst_accuracy": local["worst_accuracy"],
        "federated_minus_local_mean": local["federated_minus_mean"],
        "silo_accuracies": {k: v["test"]["accuracy"] for k, v in comp["arms"].items() if k.startswith("silo-")},
        "silo_rows": fed["silo_rows"], "best_round": fed["best_round"],
        "round_validation_accuracy": [r["validation"]["accuracy"] for r in fed["round_curve"]],
        "bytes_per_client_per_round": traffic["bytes_per_client_per_round"],
        "full_model_bytes": traffic["full_model_bytes"], "share_of_full_weights": traffic["share_of_full_weights"],
        "bytes_total": traffic["bytes_total"], "federation_seconds": fed["seconds"],
        **refit_figures(fed),
        "total_seconds": round(wall, 1), "verdict": comp["verdict"], "run_dir": str(run.path),
        "test_rows": res["test"]["n"],
    }
    d_central = out["federated_minus_centralized"]["difference"]
    out["targets"] = {
        "within_2_points_of_centralized": d_central >= -0.02,
        "5_points_above_mean_local": out["federated_minus_local_mean"]["difference"] >= 0.05,
        "bytes_per_round_at_most_2pct_of_full": traffic["share_of_full_weights"] <= 0.02,
        "federation_under_10_minutes": fed["seconds"] < 600,
    }
    return out


def refit_figures(fed: dict) -> dict:
    """The head refit's outcome: which head the run kept and what it validated, against the averaged head."""
    refit = fed.get("head_refit")
    if not refit:
        return {"head_refit": None}
    return {"head_refit": {"kept": refit["kept"], "metric": refit["metric"],
                           "averaged_head_validation": refit["averaged_head_validation"],
                           "candidates": {c["head"]: c["validation"][refit["metric"]] for c in refit["candidates"]},
                           "bytes_per_silo": fed["traffic"].get("refit_bytes_per_client"),
                           "share_of_full_weights": fed["traffic"].get("refit_share_of_full_weights"),
                           "seconds": refit["seconds"]}}


def append(a, f: dict) -> None:
    c, l = f["federated_minus_centralized"], f["federated_minus_local_mean"]
    lines = [f"\n## {dt.date.today()} — federated LoRA on Flower: BBC News, minilm-l6, {a.clients} silos, "
             f"Dirichlet α={a.alpha} ({platform.machine()}, {os.cpu_count()} cores{', ' + a.note if a.note else ''})\n",
             f"`python bench/bench_federated.py --clients {a.clients} --alpha {a.alpha} --rounds {a.rounds} "
             f"--local-epochs {a.local_epochs} --lr {a.lr} --max-length {a.max_length} --local-loss {a.local_loss}"
             f"{f' --max-train-rows {a.max_train_rows}' if a.max_train_rows else ''}` (FedAvg, LoRA r=8 + head; "
             f"same global test split of {f['test_rows']} rows; paired bootstrap 95% intervals)\n",
             "| model | test accuracy | federated minus it |", "|---|---|---|",
             f"| federated (round {f['best_round']} of {a.rounds}) | {f['federated_accuracy']:.4f} | |",
             f"| centralized (pooled, {a.rounds * a.local_epochs} epochs) | {f['centralized_accuracy']:.4f} | "
             f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] |",
             f"| mean silo alone | {f['local_mean_accuracy']:.4f} | {l['difference']:+.4f} [{l['low']:+.4f}, "
             f"{l['high']:+.4f}] |",
             f"| worst silo alone | {f['local_worst_accuracy']:.4f} | |\n",
             f"Traffic: {f['bytes_per_client_per_round'] / 1e6:.3f} MB per client per round each way = "
             f"{f['share_of_full_weights']:.2%} of the full weights ({f['full_model_bytes'] / 1e6:.1f} MB); "
             f"{f['bytes_total'] / 1e6:.1f} MB in all. Federation {f['federation_seconds']:.0f} s, whole run with "
             f"comparisons {f['total_seconds']:.0f} s{' (' + a.note + ')' if a.note else ''}.\n",
             _refit_line(f) + "\n",
             "Targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in f["targets"].items()) + ".\n",
             f"Verdict printed by the report: {f['verdict']}.\n"]
    with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
        fh.write("\n".join(lines))


def _refit_line(f: dict) -> str:
    r = f["head_refit"]
    if not r:
        return "No head refit."
    tried = ", ".join(f"{k} {v:.4f}" for k, v in r["candidates"].items())
    return (f"Head refit from pooled class statistics: validation {r['metric']} averaged head "
            f"{r['averaged_head_validation']:.4f}; {tried}; kept {r['kept'] or 'the averaged head'}; statistics "
            f"{r['bytes_per_silo'] / 1e6:.3f} MB per silo once ({r['share_of_full_weights']:.2%} of the full "
            "weights).")


def federation_args(p: argparse.ArgumentParser, clients: int, rounds: int) -> None:
    """The options every federated benchmark takes (this one and bench_federated_sft.py)."""
    p.add_argument("--clients", type=int, default=clients)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--note", default="", help="e.g. 'contended (load 8)': printed with the times")
    p.add_argument("--append", action="store_true")


def run_federation(a, make_config, prefix: str):
    """federate() on make_config(a, output folder); the finished run and the wall seconds it took."""
    from tunesmith.config import build_config
    from tunesmith.federate import federate

    out = a.output_dir or tempfile.mkdtemp(prefix=prefix)
    tic = time.perf_counter()
    run = federate(build_config(make_config(a, out)))
    return run, time.perf_counter() - tic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    federation_args(p, clients=8, rounds=5)
    p.add_argument("--alpha", type=float, default=0.3)
    p.add_argument("--strategy", default="fedavg")
    p.add_argument("--local-loss", default="plain", choices=["plain", "prior-adjusted"])
    p.add_argument("--no-refit-head", action="store_true", help="federated.refit_head=false (the averaged head)")
    p.add_argument("--no-compare", action="store_true", help="the federation only (no centralized and silo "
                   "models): quick ablations, not the issue's figures")
    p.add_argument("--max-train-rows", type=int, default=None, help="a seeded stratified sample of the training "
                   "split (quick runs on a loaded machine); default: all")
    a = p.parse_args()
    run, wall = run_federation(a, config, "tunesmith-fed-bench-")
    if a.no_compare:
        fed = run.results["federated"]
        print(json.dumps({"federated_accuracy": run.results["test"]["accuracy"], "best_round": fed["best_round"],
                          "round_validation_accuracy": [r["validation"]["accuracy"] for r in fed["round_curve"]],
                          "federation_seconds": fed["seconds"], "local_loss": a.local_loss,
                          **refit_figures(fed)}))
        return
    f = figures(run, wall)
    print(json.dumps(f))
    if a.append:
        append(a, f)


if __name__ == "__main__":
    main()
