"""Benchmark: tunesmith vs the Hugging Face Trainer peer on Banking77, same model and hyperparameters.

    python bench/bench_textcls.py [--epochs 1 --batch-size 32 --lr 5e-5] [--defaults] [--append]

Runs, one after the other on the same machine: the peer script from ../shared/bench/, tunesmith
with the peer's settings, and (with --defaults) tunesmith with its own defaults. Prints one JSON
line each and the throughput ratio; --append adds a dated table to bench/RESULTS.md.
Needs ../shared (benchmark data and peer script) and the `datasets` package for the peer.
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
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_peer(shared: Path, model_dir: str, a) -> dict:
    cmd = [sys.executable, str(shared / "bench" / "peer_hf_trainer_textcls.py"), "--train",
           str(shared / "data" / "banking77_train.csv"), "--test", str(shared / "data" / "banking77_test.csv"),
           "--model", model_dir, "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--lr", str(a.lr),
           "--max-length", str(a.max_length)]
    tic = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    result["process_wall_s"] = round(time.perf_counter() - tic, 1)
    return result


def run_tunesmith(shared: Path, train: dict, model: dict, label: str) -> dict:
    cfg = {"model": {"name": "minilm-l6", **model},
           "data": {"train": str(shared / "data" / "banking77_train.csv"),
                    "test": str(shared / "data" / "banking77_test.csv"),
                    "text_column": "text", "label_column": "category", "drop_missing": True},
           # the peer trains on every row, so tunesmith reports its audit findings but changes nothing
           "audit": {"on_issue": "warn"},
           "train": train, "output_dir": tempfile.mkdtemp(prefix="tunesmith-bench-"), "run_name": label}
    script = textwrap.dedent(f"""
        import json
        from tunesmith.config import build_config
        from tunesmith.run import fine_tune
        r = fine_tune(build_config({cfg!r}))
        print("RESULT " + json.dumps({{"results": r.results, "config": r.config.model_dump(mode="json")}}))
    """)
    tic = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - tic
    payload = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
    audit = json.loads((Path(cfg["output_dir"]) / label / "audit.json").read_text())
    res, conf = payload["results"], payload["config"]
    tr = res["training"]
    return {"tool": "tunesmith", "run": label, "results_json": str(Path(cfg["output_dir"]) / label / "results.json"),
            "epochs": conf["train"]["epochs"], "batch_size": conf["train"]["batch_size"],
            "lr": conf["train"]["learning_rate"], "max_length": conf["model"]["max_length"],
            "train_wall_s": tr["train_seconds"], "train_samples_per_s": tr["train_samples_per_second"],
            "test_accuracy": round(res["test"]["accuracy"], 4), "test_macro_f1": round(res["test"]["macro_f1"], 4),
            "majority_accuracy": round(res["baselines"]["majority_class"]["test"]["accuracy"], 4),
            "audit_s": round(sum(audit["seconds"].values()), 1),
            "audit_blocking": {f["check"]: f["count"] for f in audit["findings"] if f["severity"] == "blocking"},
            "process_wall_s": round(wall, 1)}


def baseline_table(results: dict, title: str) -> list[str]:
    """Fine-tuned model and every baseline on the test split, with 95% bootstrap intervals."""
    def cell(m: dict, key: str) -> str:
        c = m["ci"][key]
        return f"{m[key]:.4f} [{c['low']:.4f}, {c['high']:.4f}]"

    lines = [f"\n{title}\n", "| model | test accuracy [95% CI] | macro-F1 [95% CI] |", "|---|---|---|",
             f"| fine-tuned ({results['method']}) | {cell(results['test'], 'accuracy')} "
             f"| {cell(results['test'], 'macro_f1')} |"]
    lines += [f"| {name} | {cell(b['test'], 'accuracy')} | {cell(b['test'], 'macro_f1')} |"
              for name, b in results["baselines"].items()]
    comp = results.get("comparison")
    if comp:
        a = comp["accuracy"]
        lines.append(f"\nvs best baseline ({comp['best_baseline']}): {a['difference']:+.4f} "
                     f"[{a['low']:+.4f}, {a['high']:+.4f}], p = {a['p_value']:.3f}: {a['verdict']}.")
    cal = results.get("calibration")
    if cal:
        lines.append(f"Calibration: temperature {cal['temperature']:.3f}; test ECE {cal['test']['ece']:.4f} -> "
                     f"{cal['test']['ece_scaled']:.4f}.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--defaults", action="store_true", help="also run tunesmith on its own defaults")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--append", action="store_true", help="append the results to bench/RESULTS.md")
    a = ap.parse_args()
    if not (a.shared / "data" / "banking77_train.csv").is_file():
        sys.exit(f"benchmark data not found under {a.shared}/data (pass --shared)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunesmith.models.registry import resolve_model

    model_dir = resolve_model("minilm-l6").source
    rows = []
    if not a.skip_peer:
        rows.append(run_peer(a.shared, model_dir, a))
        print(json.dumps(rows[-1]), flush=True)
    # The peer's hyperparameters: no warm-up, no weight decay (Trainer defaults), fixed epochs, same lr.
    same = {"epochs": int(a.epochs), "batch_size": a.batch_size, "learning_rate": a.lr, "warmup_ratio": 0.0,
            "weight_decay": 0.0, "metric_for_best": "accuracy"}
    rows.append(run_tunesmith(a.shared, same, {"max_length": a.max_length}, "peer-settings"))
    print(json.dumps(rows[-1]), flush=True)
    if a.defaults:
        rows.append(run_tunesmith(a.shared, {}, {}, "tunesmith-defaults"))
        print(json.dumps(rows[-1]), flush=True)
    peer = next((r for r in rows if r.get("peer")), None)
    ours = next(r for r in rows if r.get("run") == "peer-settings")
    if peer:
        ratio = ours["train_samples_per_s"] / peer["train_samples_per_s"]
        print(f"throughput ratio tunesmith/peer = {ratio:.2f}", flush=True)
    if a.append:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, torch threads default"
        lines = [f"\n## {dt.date.today()} — Banking77 text classification, minilm-l6 ({machine})\n",
                 "| tool | config | epochs | batch | lr | max len | train s | samples/s | test acc | macro-F1 |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            name = "HF Trainer (peer)" if r.get("peer") else "tunesmith"
            conf = r.get("run", f"padding={r.get('padding')}")
            lines.append(f"| {name} | {conf} | {r['epochs']} | {r.get('batch_size', a.batch_size)} | "
                         f"{r.get('lr', a.lr)} | {r.get('max_length', a.max_length)} | {r['train_wall_s']} | "
                         f"{r['train_samples_per_s']} | {r['test_accuracy']} | {r['test_macro_f1']} |")
        if peer:
            lines.append(f"\nThroughput ratio (tunesmith / peer, same settings): **{ratio:.2f}x**.")
        for r in rows:
            if r.get("run"):
                res = json.loads(Path(r["results_json"]).read_text())
                lines += baseline_table(res, f"tunesmith `{r['run']}` against its baselines (same test split):")
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
