"""The data audit for images: the same report shape, severities and fixes as for text.

Exact duplicates compare pixel hashes; near-duplicates are candidate pairs whose 64-bit
perceptual hashes (pHash, `imagehash`) differ in at most `audit.image_hash_distance` bits,
confirmed when their 32×32 grey thumbnails differ by at most `audit.image_pixel_tolerance`
on average (pHash alone over-matches on uniform images such as small X-rays). Class balance
and unseen labels are the text checks; unreadable files come from loading.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tunesmith.config import AuditConfig
from tunesmith.data.audit import (BLOCKING, INFO, SPLIT_ORDER, WARNING, finding, check_classes, check_exact,
                                  run_checks)
from tunesmith.data.load import ROW


def _grey(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).convert("L")


def phash_bits(images) -> np.ndarray:
    import imagehash

    return np.array([int(str(imagehash.phash(_grey(a))), 16) for a in images], dtype=np.uint64)


def thumbnails(images) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(_grey(a).resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32) / 255
                     for a in images])


def near_pairs(hashes: np.ndarray, thumbs: np.ndarray, distance: int, tolerance: float,
               chunk: int = 2048) -> list[tuple[int, int, int, float]]:
    """(i, j, hash distance, pixel difference) for i < j: candidates by hash, confirmed by pixels."""
    out = []
    for start in range(0, len(hashes), chunk):
        block = np.bitwise_count(hashes[start:start + chunk, None] ^ hashes[None, :])
        for a, j in zip(*np.nonzero(block <= distance)):
            i = start + int(a)
            if j <= i:
                continue
            diff = float(np.abs(thumbs[i] - thumbs[j]).mean())
            if diff <= tolerance:
                out.append((i, int(j), int(block[a, j]), diff))
    return out


def check_near_images(frames: dict[str, pd.DataFrame], cfg: AuditConfig) -> list[dict]:
    rows = [(s, int(r), ref, lab, sha) for s in SPLIT_ORDER if s in frames
            for r, ref, lab, sha in zip(frames[s][ROW], frames[s]["text"], frames[s]["label"], frames[s]["sha256"])]
    images = [a for s in SPLIT_ORDER if s in frames for a in frames[s]["image"]]
    pairs = near_pairs(phash_bits(images), thumbnails(images), cfg.image_hash_distance, cfg.image_pixel_tolerance)
    within, leaks = [], []
    for i, j, dist, diff in pairs:
        a, b = rows[i], rows[j]  # rows are in split order, so b is the later one
        if a[4] == b[4]:
            continue  # identical pixels: an exact duplicate, reported there
        pair = {"split": b[0], "row": b[1], "image": b[2], "matches": {"split": a[0], "row": a[1], "image": a[2]},
                "hash_distance": dist, "pixel_difference": round(diff, 4), "label": b[3], "label_of_match": a[3]}
        (within if a[0] == b[0] else leaks).append(pair)
    rule = f"pHash distance <= {cfg.image_hash_distance} and thumbnail difference <= {cfg.image_pixel_tolerance}"
    return [finding("near_duplicates", WARNING, within, f"{len(within)} pairs of images in the same split are "
                     f"near-duplicates ({rule})"),
            finding("leakage_near", BLOCKING, leaks, f"{len(leaks)} evaluation images nearly duplicate an image of "
                     f"an earlier split ({rule})")]


def check_unreadable(skipped: list[dict]) -> dict:
    return finding("unreadable_images", WARNING, skipped, f"{len(skipped)} files could not be read and were skipped"
                    if skipped else "every image file was readable")


def check_sizes(frames: dict[str, pd.DataFrame]) -> dict:
    sizes = pd.DataFrame([(s, a.shape[0], a.shape[1], a.shape[2]) for s, df in frames.items() for a in df["image"]],
                         columns=["split", "h", "w", "c"])
    grey = int((sizes["c"] == 1).sum())
    small = int(((sizes["h"] < 32) | (sizes["w"] < 32)).sum())
    return finding("image_sizes", INFO, [], f"height {int(sizes['h'].median())} x width {int(sizes['w'].median())} "
                    f"px (median); {grey} grey, {len(sizes) - grey} colour; {small} smaller than 32 px",
                    sizes={"median_height": int(sizes["h"].median()), "median_width": int(sizes["w"].median()),
                           "min_side": int(sizes[["h", "w"]].min().min()), "grey": grey})


def audit_image_splits(frames: dict[str, pd.DataFrame], cfg: AuditConfig, skipped: list[dict]) -> dict:
    return run_checks(frames, [
        ("unreadable", lambda: check_unreadable(skipped)),
        ("exact", lambda: check_exact(frames, key_column="sha256")),
        ("near", lambda: check_near_images(frames, cfg)),
        ("classes", lambda: check_classes(frames)),
        ("sizes", lambda: check_sizes(frames)),
        ("label_errors", lambda: finding("label_errors", INFO, [], "not checked for images")),
    ])
