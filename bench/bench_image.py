"""Benchmark: EfficientNet-Lite0 fine-tuned on PneumoniaMNIST (balanced subset in ../shared/data).

    python bench/bench_image.py [--size 96] [--epochs 6] [--seeds 1] [--append]

1. Does fine-tuning help? Full fine-tuning (one head epoch on cached frozen features, then every
   layer with discriminative learning rates) against the majority class and logistic regression on
   the frozen backbone's features, on the 468-image test split, with bootstrap intervals.
2. The augmentation's effect: the same runs with image.augment.enabled=false (same seeds), compared
   on the same test images by a paired bootstrap.
3. The frozen-feature cache: a linear probe trained with cached features vs one that runs the
   frozen backbone every step (image.cache_features=false), same epochs and seed.
Prints the tables and, with --append, adds them, dated, to bench/RESULTS.md.
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

import pandas as pd

from tunesmith.config import build_config
from tunesmith.evaluate.stats import accuracy, paired_bootstrap
from tunesmith.run import fine_tune

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist.npz"


def config(out: Path, name: str, size: int, epochs: int, seed: int, **image) -> dict:
    return {"task": "image-classification", "output_dir": str(out), "run_name": name,
            "model": {"name": "efficientnet-lite0"},
            "data": {"train": str(DATA)},
            "image": {"label_names": ["normal", "pneumonia"], "size": size, **image},
            "train": {"epochs": epochs, "batch_size": 32, "seed": seed},
            "audit": {"on_issue": "fix"}}


def timed_run(raw: dict, overrides: list[str] = ()) -> tuple[dict, float, Path]:
    tic = time.perf_counter()
    run = fine_tune(build_config(raw, list(overrides)))
    return run.results, time.perf_counter() - tic, run.path


def markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows])


def ci(m: dict, key: str = "accuracy") -> str:
    c = m["ci"][key]
    return f"{m[key]:.3f} [{c['low']:.3f}, {c['high']:.3f}]"


def result_row(name: str, seed: int, res: dict, wall: float) -> dict:
    comp = res["comparison"]["accuracy"]
    return {"run": name, "seed": seed, "test accuracy [95% CI]": ci(res["test"]),
            "macro-F1": round(res["test"]["macro_f1"], 3), "majority": ci(res["baselines"]["majority_class"]["test"]),
            "frozen features + LR (C on val)": ci(res["baselines"]["linear_probe"]["test"]),
            "vs best baseline": f"{comp['difference']:+.3f} (p={comp['p_value']:.3f})",
            "train s": res["training"]["train_seconds"], "wall s": round(wall, 1)}


def arguments(epochs: int) -> argparse.ArgumentParser:
    """The options both image benchmarks take; they stop at once when the data is absent."""
    if not DATA.is_file():
        raise SystemExit(f"{DATA} is absent: this benchmark needs ../shared/data/pneumoniamnist.npz")
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--append", action="store_true", help="add the results, dated, to bench/RESULTS.md")
    return ap


def record(title: str, body: str, append: bool) -> None:
    """Print a dated section headed by the machine; with `append`, add it to bench/RESULTS.md."""
    import torch

    text = (f"\n## {dt.date.today()} — {title} ({platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, {torch.get_num_threads()} torch threads)\n\n{body}")
    print(text)
    if append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write(text)


def main() -> None:
    ap = arguments(epochs=6)
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-image-"))
    rows, pairs = [], []
    for seed in range(args.seeds):
        preds = {}
        for aug in (True, False):
            name = f"full-{'aug' if aug else 'noaug'}-{seed}"
            res, wall, path = timed_run(config(out, name, args.size, args.epochs, seed, freeze_epochs=1),
                                        [] if aug else ["image.augment.enabled=false"])
            preds[aug] = pd.read_csv(path / "test_predictions.csv")
            rows.append(result_row(f"fine-tuned, augmentation {'on' if aug else 'off'}", seed, res, wall))
        y = (preds[True]["label"] == "pneumonia").to_numpy()
        a, b = [(preds[k]["predicted"] == "pneumonia").to_numpy() for k in (True, False)]
        pairs.append({"seed": seed, **paired_bootstrap(y, a, b, accuracy)})
    # BatchNorm updated from each batch (image.batchnorm=train) instead of frozen, same seed as the first run
    res, wall, _ = timed_run(config(out, "full-aug-bntrain-0", args.size, args.epochs, 0, freeze_epochs=1,
                                    batchnorm="train"))
    rows.append(result_row("fine-tuned, augmentation on, BatchNorm train", 0, res, wall))
    probe = []
    for cache in (True, False):
        res, wall, path = timed_run(config(out, f"probe-{'cache' if cache else 'nocache'}", args.size, args.epochs,
                                           0, cache_features=cache), ["train.method=linear-probe"])
        report = json.loads((path / "data_report.json").read_text())
        probe.append({"linear probe": "cached features" if cache else "backbone every step",
                      "feature pass s": report["feature_seconds"], "train s": res["training"]["train_seconds"],
                      "wall s": round(wall, 1), "test accuracy": ci(res["test"])})
    cached, uncached = probe
    speedup = uncached["train s"] / max(1e-9, cached["train s"] + cached["feature pass s"])
    table = markdown(rows)
    aug_lines = "\n".join(f"- seed {p['seed']}: accuracy with minus without augmentation {p['difference']:+.3f} "
                          f"[{p['low']:+.3f}, {p['high']:+.3f}], paired bootstrap p = {p['p_value']:.3f}: "
                          f"{p['verdict']}" for p in pairs)
    probe_table = markdown(probe)
    body = (f"Balanced PneumoniaMNIST subset (2,428 / 270 / 468 grey 28x28 X-rays), upsampled to {args.size} px. "
            f"Full fine-tuning: 1 head epoch on cached frozen features (lr 1e-2), then {args.epochs} epochs of every "
            "layer (AdamW lr 1e-3, layer decay 0.7, batch 32, BatchNorm frozen unless the row says otherwise); default "
            "augmentation (hflip 0.5, rotation 10, random resized crop 0.8-1, colour jitter 0.1). "
            "audit.on_issue=fix.\n\n"
            f"{table}\n\nAugmentation's effect (same seed, same test images):\n{aug_lines}\n\n"
            f"Frozen-feature cache (linear probe, {args.epochs} epochs, seed 0):\n\n{probe_table}\n\n"
            f"Head training with cached features (feature pass included) is **{speedup:.1f}x** faster than running "
            "the frozen backbone every step; trials of a study reuse the feature pass (memo), so they pay only the "
            "head's train seconds.\n")
    record("image classification: EfficientNet-Lite0 on PneumoniaMNIST", body, args.append)


if __name__ == "__main__":
    main()
