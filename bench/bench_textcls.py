"""Benchmark (issue 13): tunesmith vs the fair peer, the Hugging Face Trainer with its own length grouping,
on the same 10,001 Banking77 rows, model (MiniLM-L6), epochs, batch size, learning rate and max length.

    python bench/bench_textcls.py --defaults --append      # idle 2-core machine: about 12 minutes

Runs one after the other: the peer (`--group-by-length`), tunesmith with the peer's hyperparameters and
its own speed settings (bf16 autocast where the CPU has AVX512-BF16, frozen word embeddings), tunesmith
with the peer's exact training semantics (fp32, every weight trained), and with --defaults tunesmith
on its defaults (config names only the data). Prints one JSON line each, then: the throughput ratio on
two clocks (the optimizer steps only: the Trainer's `train()` vs tunesmith's train_seconds; and the
whole process, start to exit), the share of the FLOP floor (6 x body parameters x real tokens per
epoch, at the fp32 GEMM rate measured here first), and the defaults run's test accuracy with its 95%
interval, training time and the time budget (half the peer's 5-epoch lr 2e-4 recipe, from its samples/s).
--peer-recipe also runs that recipe (5 epochs, lr 2e-4; about 6 more minutes idle).
Needs ../shared (data and peer script) and the `datasets` package for the peer.
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


# The peer script has no precision flag: this runs it with TrainingArguments(bf16=True), the Trainer's own
# mixed-precision option (bf16 autocast through Accelerate, on the CPU too), so the peer gets what tunesmith gets.
_BF16_PEER = """
import runpy, sys
import torch
from transformers import training_args
_init = training_args.TrainingArguments.__init__
def __init__(self, *args, **kwargs):
    kwargs.setdefault("bf16", True)
    kwargs.setdefault("use_cpu", not torch.cuda.is_available())  # the Trainer asks for it with bf16 on a CPU
    _init(self, *args, **kwargs)
training_args.TrainingArguments.__init__ = __init__
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_peer(shared: Path, model_dir: str, a, bf16: bool = False) -> dict:
    """The Trainer script with length grouping (and with bf16: its bf16 option); its train_wall_s times
    trainer.train() only."""
    script = str(shared / "bench" / "peer_hf_trainer_textcls.py")
    cmd = [sys.executable, *(["-c", _BF16_PEER] if bf16 else []), script, "--train",
           str(shared / "data" / "banking77_train.csv"), "--test", str(shared / "data" / "banking77_test.csv"),
           "--model", model_dir, "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--lr", str(a.lr),
           "--max-length", str(a.max_length), "--group-by-length"]
    tic = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    result["process_wall_s"] = round(time.perf_counter() - tic, 1)
    result["precision"] = "bf16" if bf16 else "fp32"
    return result


def run_tunesmith(shared: Path, train: dict, model: dict, label: str, same_rows: bool = False) -> dict:
    """One tunesmith run in its own process. same_rows: train on all 10,001 rows like the peer (validation:
    200 test rows, scored once per epoch outside the training clock), no audit and no baselines, so the
    whole-process clock holds what the peer's holds (load, tokenize, train, predict the test split)."""
    out_dir = Path(tempfile.mkdtemp(prefix="tunesmith-bench-"))
    data = {"train": str(shared / "data" / "banking77_train.csv"), "test": str(shared / "data" / "banking77_test.csv"),
            "text_column": "text", "label_column": "category", "drop_missing": True}
    extra: dict = {}
    if same_rows:
        import pandas as pd

        pd.read_csv(data["test"]).sample(200, random_state=0).to_csv(out_dir / "validation.csv", index=False)
        data["validation"] = str(out_dir / "validation.csv")
        extra = {"audit": {"enabled": False}, "eval": {"baselines": []}}
    cfg = {"model": {"name": "minilm-l6", **model}, "data": data,
           # the peer trains on every row, so tunesmith reports its audit findings but changes nothing
           "audit": {"on_issue": "warn"},
           "train": train, "output_dir": str(out_dir), "run_name": label, **extra}
    script = textwrap.dedent(f"""
        import json
        from tunesmith.config import build_config
        from tunesmith.run import fine_tune
        r = fine_tune(build_config({cfg!r}))
        print("RESULT " + json.dumps({{"results": r.results, "config": r.config.model_dump(mode="json")}}))
    """)
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"tunesmith run {label} failed:\n{proc.stderr[-3000:]}")
    out = proc.stdout
    wall = time.perf_counter() - tic
    payload = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
    audit_file = Path(cfg["output_dir"]) / label / "audit.json"
    audit = json.loads(audit_file.read_text()) if audit_file.is_file() else {"seconds": {}, "findings": []}
    res, conf = payload["results"], payload["config"]
    tr = dict(res["training"])
    # the frozen bottom's cache pass (train.cache_frozen_layers) runs before the loop over every split: the
    # training rows' share of it is training work, so it goes on the optimizer-step clock and into samples/s (the
    # validation and test rows' share replaces part of their evaluation, which the whole-process clock holds)
    report = Path(cfg["output_dir"]) / label / "data_report.json"
    described = json.loads(report.read_text()) if report.is_file() else {}
    split_rows = described.get("split_rows", {})
    cache_all_s = described.get("frozen_cache_seconds", 0.0)
    cache_s = round(cache_all_s * split_rows.get("train", 0) / max(sum(split_rows.values()), 1), 2)
    if cache_s:
        rows_seen = tr["train_samples_per_second"] * tr["train_seconds"]
        tr["train_seconds"] = round(tr["train_seconds"] + cache_s, 2)
        tr["train_samples_per_second"] = round(rows_seen / tr["train_seconds"], 2)
    return {"tool": "tunesmith", "run": label, "results_json": str(Path(cfg["output_dir"]) / label / "results.json"),
            "epochs": conf["train"]["epochs"], "batch_size": conf["train"]["batch_size"],
            "lr": conf["train"]["learning_rate"], "max_length": conf["model"]["max_length"],
            "precision": conf["train"]["precision"], "freeze_embeddings": conf["train"]["freeze_embeddings"],
            "train_rows": round(tr["train_samples_per_second"] * tr["train_seconds"] / max(tr["epochs_completed"], 1)),
            "epochs_completed": tr["epochs_completed"], "stopped_early": tr["stopped_early"],
            "test_accuracy_ci": [round(res["test"]["ci"]["accuracy"]["low"], 4),
                                 round(res["test"]["ci"]["accuracy"]["high"], 4)],
            "comparison": (res.get("comparison") or {}).get("accuracy"),
            "train_wall_s": tr["train_seconds"], "train_samples_per_s": tr["train_samples_per_second"],
            "test_accuracy": round(res["test"]["accuracy"], 4), "test_macro_f1": round(res["test"]["macro_f1"], 4),
            "majority_accuracy": (round(res["baselines"]["majority_class"]["test"]["accuracy"], 4)
                                  if "majority_class" in res.get("baselines", {}) else None),
            "frozen_layers": described.get("freeze_layers"), "frozen_cache_train_s": cache_s,
            "frozen_cache_all_splits_s": cache_all_s, "audit_s": round(sum(audit["seconds"].values()), 1),
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


def flop_floor(model_dir: str, train_csv: Path, max_length: int) -> dict:
    """Seconds per epoch the GEMMs alone need: 6 x body parameters (embeddings excluded) x real tokens,
    at the fp32 GEMM rate this machine sustains (measured now, torch's default threads)."""
    import pandas as pd
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    texts = pd.read_csv(train_csv).dropna(subset=["text", "category"])["text"].astype(str).tolist()
    tokens = sum(len(ids) for ids in AutoTokenizer.from_pretrained(model_dir)(
        texts, truncation=True, max_length=max_length)["input_ids"])
    body = AutoModel.from_config(AutoConfig.from_pretrained(model_dir))
    n_body = sum(p.numel() for n, p in body.named_parameters() if "embeddings" not in n)
    a, b = torch.randn(512, 384), torch.randn(384, 1536)
    for _ in range(5):
        a @ b
    n, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < 3.0:
        a @ b
        n += 1
    rate = 2 * 512 * 384 * 1536 * n / (time.perf_counter() - tic)
    flop = 6 * n_body * tokens
    return {"rows": len(texts), "tokens_per_epoch": tokens, "body_params": n_body,
            "tflop_per_epoch": round(flop / 1e12, 2),
            "gemm_gflops_fp32": round(rate / 1e9, 1), "floor_s_per_epoch": round(flop / rate, 1),
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--defaults", action="store_true", help="also run tunesmith on its own defaults")
    ap.add_argument("--peer-recipe", action="store_true", help="also run the peer's 5-epoch lr 2e-4 recipe")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--peer-bf16", action="store_true", help="also run the peer with the Trainer's bf16 option "
                    "(and its 5-epoch recipe so, with --peer-recipe)")
    ap.add_argument("--append", action="store_true", help="append the results to bench/RESULTS.md")
    a = ap.parse_args()
    if not (a.shared / "data" / "banking77_train.csv").is_file():
        sys.exit(f"benchmark data not found under {a.shared}/data (pass --shared)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunesmith.models.registry import resolve_model

    model_dir = resolve_model("minilm-l6").source
    load = os.getloadavg()[0]
    floor = flop_floor(model_dir, a.shared / "data" / "banking77_train.csv", a.max_length)
    print(json.dumps({"flop_floor": floor}), flush=True)
    rows = []
    if not a.skip_peer:
        rows.append(run_peer(a.shared, model_dir, a))
        print(json.dumps(rows[-1]), flush=True)
        if a.peer_bf16:
            rows.append(run_peer(a.shared, model_dir, a, bf16=True))
            print(json.dumps(rows[-1]), flush=True)
    # The peer's hyperparameters: no warm-up, no weight decay (Trainer defaults), fixed epochs, same lr.
    same = {"method": "full", "epochs": int(a.epochs), "batch_size": a.batch_size, "learning_rate": a.lr,
            "warmup_ratio": 0.0, "weight_decay": 0.0, "metric_for_best": "accuracy"}
    rows.append(run_tunesmith(a.shared, same, {"max_length": a.max_length}, "peer-settings", same_rows=True))
    print(json.dumps(rows[-1]), flush=True)
    rows.append(run_tunesmith(a.shared, {**same, "precision": "fp32", "freeze_embeddings": False},
                              {"max_length": a.max_length}, "peer-semantics", same_rows=True))
    print(json.dumps(rows[-1]), flush=True)
    if a.defaults:
        rows.append(run_tunesmith(a.shared, {}, {}, "tunesmith-defaults"))
        print(json.dumps(rows[-1]), flush=True)
    if a.peer_recipe:
        recipe = argparse.Namespace(**{**vars(a), "epochs": 5.0, "lr": 2e-4})
        rows.append({**run_peer(a.shared, model_dir, recipe), "recipe": "5 epochs, lr 2e-4"})
        print(json.dumps(rows[-1]), flush=True)
        if a.peer_bf16:
            rows.append({**run_peer(a.shared, model_dir, recipe, bf16=True), "recipe": "5 epochs, lr 2e-4, bf16"})
            print(json.dumps(rows[-1]), flush=True)
    peers = [r for r in rows if r.get("peer") and "recipe" not in r]
    peer = max(peers, key=lambda r: r["train_samples_per_s"], default=None)  # the fair peer: its fastest option
    lines = []
    for r in rows:
        if r.get("run") in ("peer-settings", "peer-semantics") or r in peers:
            share = floor["floor_s_per_epoch"] * r["epochs"] / r["train_wall_s"]
            lines.append(f"{r.get('run', 'HF Trainer (peer, ' + r['precision'] + ')')}: {r['train_samples_per_s']} "
                         f"samples/s, {share:.0%} of the fp32 FLOP floor")
    for p in peers:
        for r in rows:
            if r.get("run") in ("peer-settings", "peer-semantics"):
                lines.append(f"throughput ratio tunesmith {r['run']} / peer {p['precision']}: optimizer steps "
                             f"{r['train_samples_per_s'] / p['train_samples_per_s']:.2f}x, whole process "
                             f"{p['process_wall_s'] / r['process_wall_s']:.2f}x")
    dflt = next((r for r in rows if r.get("run") == "tunesmith-defaults"), None)
    if dflt:
        c = dflt["comparison"] or {}
        lines.append(f"defaults: test accuracy {dflt['test_accuracy']} {dflt['test_accuracy_ci']} after "
                     f"{dflt['train_wall_s']} s of training ({dflt['epochs_completed']} epochs, precision "
                     f"{dflt['precision']}); vs best baseline {c.get('difference', float('nan')):+.4f} "
                     f"[{c.get('low', float('nan')):+.4f}, {c.get('high', float('nan')):+.4f}]: {c.get('verdict')}")
        if peer:
            budget = 5 * peer["train_rows"] / peer["train_samples_per_s"] / 2
            lines.append(f"time budget (half the fastest peer's ({peer['precision']}) 5-epoch recipe at its measured "
                         f"{peer['train_samples_per_s']} samples/s): {budget:.0f} s; defaults used "
                         f"{dflt['train_wall_s'] / budget:.2f} of it")
    print("\n".join(lines), flush=True)
    if a.append:
        machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"torch threads {floor['torch_threads']}, 1-min load average at start {load:.1f}")
        out = [f"\n## {dt.date.today()} — Banking77 text classification vs the fair peer, minilm-l6 ({machine})\n",
               f"FLOP floor: {floor['tflop_per_epoch']} TFLOP/epoch ({floor['tokens_per_epoch']} tokens x 6 x "
               f"{floor['body_params']} body parameters) at {floor['gemm_gflops_fp32']} GFLOP/s fp32 = "
               f"{floor['floor_s_per_epoch']} s/epoch.\n",
               "| tool | run | epochs | batch | lr | precision | frozen word emb. | train s | samples/s | "
               "process s | test acc |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            name = "HF Trainer (peer, group_by_length)" if r.get("peer") else "tunesmith"
            out.append(f"| {name} | {r.get('run', r.get('recipe', 'peer settings'))} | {r['epochs']} | "
                       f"{r.get('batch_size', a.batch_size)} | {r.get('lr', a.lr)} | {r.get('precision', 'fp32')} | "
                       f"{r.get('freeze_embeddings', False)} | {r['train_wall_s']} | {r['train_samples_per_s']} | "
                       f"{r['process_wall_s']} | {r['test_accuracy']} |")
        out += [""] + lines
        if dflt:
            out += baseline_table(json.loads(Path(dflt["results_json"]).read_text()),
                                  "tunesmith defaults against its baselines (same test split):")
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
