"""Benchmark: tunesmith's image fine-tuning throughput against a plain timm + torchvision loop.

    python bench/bench_image_speed.py [--size 96] [--epochs 2] [--rounds 2] [--append]

Same data (PneumoniaMNIST train split, 2,428 scans), model (EfficientNet-Lite0, shipped weights,
BatchNorm frozen), augmentation, optimizer, batch size, epochs and seed; each tool runs in its own
process, alternating, `--rounds` times. Compared: samples per second over the optimizer steps
(evaluation and checkpoints excluded) and the process's peak RSS. tunesmith runs without the head
warm-up stage (image.freeze_epochs=0), so both train every layer for the same steps.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bench_image import DATA, ROOT, arguments, record  # a sibling script in bench/


def tunesmith_run(size: int, epochs: int, out: Path) -> dict:
    cfg = {"task": "image-classification", "output_dir": str(out.parent), "run_name": out.stem,
           "model": {"name": "efficientnet-lite0"}, "data": {"train": str(DATA)},
           "image": {"label_names": ["normal", "pneumonia"], "size": size, "freeze_epochs": 0,
                     "augment": {"hflip": 0.5, "rotation": 10, "crop_scale": 0.8, "color_jitter": 0.1}},
           "train": {"epochs": epochs, "batch_size": 32, "learning_rate": 1e-3, "warmup_ratio": 0.0, "seed": 0},
           "audit": {"on_issue": "warn"}, "eval": {"baselines": ["majority_class"], "test": False}}
    script = textwrap.dedent(f"""
        import json, resource
        from tunesmith.config import build_config
        from tunesmith.run import fine_tune
        tr = fine_tune(build_config({cfg!r})).results["training"]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"tool": "tunesmith", "train_seconds": tr["train_seconds"],
                          "samples_per_second": tr["train_samples_per_second"], "peak_rss_mb": round(peak, 1)}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_run(size: int, epochs: int, out: Path) -> dict:
    subprocess.run([sys.executable, str(ROOT / "bench" / "peer_timm_image.py"), "--size", str(size), "--epochs",
                    str(epochs), "--out", str(out)], check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = arguments(epochs=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-image-speed-"))
    rows = []
    for r in range(args.rounds):
        rows.append({"round": r, **peer_run(args.size, args.epochs, tmp / f"peer{r}.json")})
        rows.append({"round": r, **tunesmith_run(args.size, args.epochs, tmp / f"tunesmith{r}")})
        print(rows[-2], rows[-1], flush=True)
    lines = ["| round | tool | train s | samples/s | peak RSS MB |", "|---|---|---|---|---|"]
    lines += [f"| {x['round']} | {x['tool']} | {x['train_seconds']} | {x['samples_per_second']} | {x['peak_rss_mb']} |"
              for x in rows]
    ratios = [(t["samples_per_second"] / p["samples_per_second"], t["peak_rss_mb"] / p["peak_rss_mb"])
              for p, t in zip(rows[::2], rows[1::2])]
    body = (f"PneumoniaMNIST train split (2,428 scans) at {args.size} px, {args.epochs} epochs of batch 32, every "
            "layer trained, BatchNorm frozen, the same torchvision v2 augmentation, AdamW lr 1e-3 (tunesmith: "
            "layer-decayed groups, the same compute), each tool in its own process, alternating.\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(
                f"Round {i}: throughput ratio (tunesmith / peer) **{s:.2f}x**, peak RSS ratio **{m:.2f}x**."
                for i, (s, m) in enumerate(ratios)) + "\n")
    record("image fine-tuning speed: tunesmith vs a plain timm loop, EfficientNet-Lite0", body, args.append)


if __name__ == "__main__":
    main()
