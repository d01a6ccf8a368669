"""Image batches: resize and normalise as the model's config says; augment training batches only.

Augmentation is torchvision's transforms v2 (flips, rotation, random resized crop, colour jitter,
Gaussian noise) per image, and v2.MixUp / v2.CutMix per batch, which turn labels into class
probabilities (`targets`). Grey images are repeated to three channels for RGB backbones.

Each training batch draws its random numbers from a generator seeded by the run's seed and the
batch's example ids, not from the global stream: a data loader that prepares batches ahead
(Accelerate does) or a resumed run then augments every batch exactly as an uninterrupted run.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from tunesmith.config import AugmentConfig
from tunesmith.models.vision import Preprocess


def pipeline(pre: Preprocess, augment: AugmentConfig | None):
    from torchvision.transforms import v2

    size = pre.size
    if augment is None or not augment.enabled:
        steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    else:
        steps = [v2.RandomResizedCrop(size, scale=(augment.crop_scale, 1.0), antialias=True)
                 if augment.crop_scale else v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip(augment.hflip))
        if augment.vflip:
            steps.append(v2.RandomVerticalFlip(augment.vflip))
        if augment.rotation:
            steps.append(v2.RandomRotation(augment.rotation))
        if augment.color_jitter:
            j = augment.color_jitter
            steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if augment is not None and augment.enabled and augment.noise:
        steps.append(v2.GaussianNoise(sigma=augment.noise, clip=True))
    steps.append(v2.Normalize(list(pre.mean), list(pre.std)))
    return v2.Compose(steps)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×C (C = 1 or 3) -> uint8 3×H×W."""
    x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


class ImageCollate:
    """Examples {"image": uint8 H×W×C, "labels": int} -> {"pixel_values", "labels"[, "targets"]}."""

    def __init__(self, pre: Preprocess, augment: AugmentConfig | None, num_classes: int, seed: int = 0) -> None:
        from torchvision.transforms import v2

        self.transform, self.seed = pipeline(pre, augment), seed
        self.random = augment is not None and augment.enabled
        mixers = []
        if augment is not None and augment.enabled:
            if augment.mixup:
                mixers.append(v2.MixUp(alpha=augment.mixup, num_classes=num_classes))
            if augment.cutmix:
                mixers.append(v2.CutMix(alpha=augment.cutmix, num_classes=num_classes))
        self.mix = None if not mixers else mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not self.random:
            return self._batch(examples)
        ids = ",".join(str(ex.get("index", "")) for ex in examples)
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{ids}".encode()).digest()[:8], "little")
        with torch.random.fork_rng(devices=[]):  # the global random stream is left as it was
            torch.manual_seed(seed)
            return self._batch(examples)

    def _batch(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixels = torch.stack([self.transform(to_chw(ex["image"])) for ex in examples])
        labels = torch.tensor([ex["labels"] for ex in examples])
        batch = {"pixel_values": pixels, "labels": labels}
        if self.mix is not None and len(examples) > 1:
            batch["pixel_values"], batch["targets"] = self.mix(pixels, labels)
        return batch


def collate_features(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {"features": torch.stack([ex["features"] for ex in examples]),
            "labels": torch.tensor([ex["labels"] for ex in examples])}
