"""Peer for bench_image_speed.py: the fine-tuning loop a practitioner writes with timm and torchvision.

    python bench/peer_timm_image.py --size 96 --epochs 2 --batch-size 32 --out peer.json

Same data (PneumoniaMNIST train split), model (timm tf_efficientnet_lite0 with the shipped ImageNet
weights), BatchNorm frozen, augmentation (torchvision v2: random resized crop 0.8-1, hflip 0.5,
rotation 10, colour jitter 0.1), AdamW lr 1e-3 with weight decay 0.01 and linear decay, batch size,
epochs and seed as tunesmith's run. Times the optimizer steps only; writes samples/s and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import timm
import torch
from timm.layers import freeze_batch_norm_2d
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


class Scans(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).unsqueeze(0).expand(3, -1, -1)
        return self.transform(x), int(self.labels[i])


def model_with_weights() -> torch.nn.Module:
    from tunesmith.models.registry import _efficientnet_lite0
    from tunesmith.models.vision import efficientnet_pytorch_to_timm

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(efficientnet_pytorch_to_timm(torch.load(_efficientnet_lite0(), weights_only=True), model))
    model.reset_classifier(2)
    return freeze_batch_norm_2d(model)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    arrays = np.load(DATA)
    transform = v2.Compose([v2.RandomResizedCrop(args.size, scale=(0.8, 1.0), antialias=True),
                            v2.RandomHorizontalFlip(0.5), v2.RandomRotation(10),
                            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    data = Scans(arrays["train_images"], arrays["train_labels"][:, 0], transform)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = model_with_weights().train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, fused=True)
    total = len(loader) * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    seconds, samples, losses = 0.0, 0, []
    for _ in range(args.epochs):
        tic = time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            samples += len(y)
            losses.append(loss.item())
        seconds += time.perf_counter() - tic
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.write_text(json.dumps({"tool": "timm+torch loop (peer)", "train_seconds": round(seconds, 2),
                                    "samples": samples, "samples_per_second": round(samples / seconds, 2),
                                    "peak_rss_mb": round(peak_mb, 1),
                                    "final_loss": round(float(np.mean(losses[-10:])), 4)}))


if __name__ == "__main__":
    main()
