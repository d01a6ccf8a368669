"""Read labelled images: a folder with one sub-folder per class (optionally under train/, val/,
test/), a table (CSV, TSV, JSONL, Parquet) of image paths and labels, or a NumPy .npz in the
MedMNIST layout (`train_images`, `train_labels`, `val_…`, `test_…`).

Every split becomes a DataFrame with the columns the rest of tunesmith expects: `text` (where
the image came from, e.g. `cats/003.png` or `train_images[17]`), `label`, the user-visible row
number, plus `image` (a uint8 array H×W×C, C = 1 for grey, 3 for colour) and `sha256` (of the
pixels). An unreadable image stops the run with one line naming the file, unless
image.skip_unreadable, in which case it is skipped and counted.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.config import ImageConfig
from tunesmith.data.load import ROW, read_table
from tunesmith.errors import UserError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_DIRS = {"train": ("train",), "validation": ("val", "valid", "validation"), "test": ("test",)}
NPZ_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def to_uint8(img) -> np.ndarray:
    """A PIL image as uint8 H×W×C: grey stays one channel, everything else becomes RGB."""
    if img.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit and float scans (common in medical imaging)
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return arr.round().astype(np.uint8)[..., None]
    if img.mode in ("L", "1", "LA"):
        return np.asarray(img.convert("L"), dtype=np.uint8)[..., None]
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def shrink(arr: np.ndarray, max_side: int) -> np.ndarray:
    if max(arr.shape[:2]) <= max_side:
        return arr
    from PIL import Image

    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return to_uint8(img)


def read_image(path: Path, max_side: int) -> np.ndarray:
    """Decode one file; raises OSError/ValueError for unreadable or corrupt files."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return shrink(to_uint8(img), max_side)


def pixel_hash(arr: np.ndarray) -> str:
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()


class _Reader:
    """Decodes files, stopping on (or skipping and recording) unreadable ones."""

    def __init__(self, cfg: ImageConfig) -> None:
        self.cfg, self.skipped = cfg, []

    def __call__(self, path: Path) -> np.ndarray | None:
        try:
            return read_image(path, self.cfg.max_side)
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            if not self.cfg.skip_unreadable:
                raise UserError(f"{path}: not a readable image ({reason}); fix or remove the file, or set "
                                "image.skip_unreadable=true to skip such files (they are counted)") from None
            self.skipped.append({"file": str(path), "error": reason})
            return None


def _frame(refs: list[str], labels: list[str], arrays: list[np.ndarray | None], rows: list[int]) -> pd.DataFrame:
    keep = [i for i, a in enumerate(arrays) if a is not None]
    return pd.DataFrame({"text": [refs[i] for i in keep], "label": [str(labels[i]) for i in keep],
                         "image": pd.Series([arrays[i] for i in keep], dtype=object),
                         "sha256": [pixel_hash(arrays[i]) for i in keep], ROW: [rows[i] for i in keep]})


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def _class_folder(root: Path, read: _Reader) -> pd.DataFrame:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class sub-folders; expected one folder of images per class "
                        "(e.g. cats/, dogs/) or train/, val/, test/ folders holding them")
    refs, labels, files = [], [], []
    for d in classes:
        found = _image_files(d)
        files += found
        refs += [str(p.relative_to(root)) for p in found]
        labels += [d.name] * len(found)
    if not files:
        raise UserError(f"{root}: the class folders hold no images (looked for {', '.join(sorted(SUFFIXES))})")
    return _frame(refs, labels, [read(p) for p in files], list(range(1, len(files) + 1)))


def _table(path: Path, cfg: ImageConfig, label_column: str, read: _Reader) -> pd.DataFrame:
    from tunesmith.data.load import blank, select_columns

    df = select_columns(read_table(path), path, cfg.image_column, label_column)
    missing = blank(df["text"]) | blank(df["label"])
    if missing.any():
        raise UserError(f"{path}: line {int(df.loc[missing, ROW].iloc[0])}: no image path or no label "
                        f"({int(missing.sum())} rows)")
    files = [(path.parent / str(p)).resolve() if not Path(str(p)).is_absolute() else Path(str(p)) for p in df["text"]]
    for row, f in zip(df[ROW], files):
        if not f.is_file():
            raise UserError(f"{path}: line {row}: image file {str(f)!r} not found (paths are relative to the table's "
                            "folder)")
    return _frame(df["text"].astype(str).tolist(), df["label"].astype(str).str.strip().tolist(),
                  [read(f) for f in files], df[ROW].tolist())


def _npz(path: Path, cfg: ImageConfig) -> dict[str, pd.DataFrame]:
    try:
        arrays = np.load(path, allow_pickle=False)
    except Exception as err:
        raise UserError(f"{path}: not a readable NumPy .npz file ({type(err).__name__}: {err})") from None
    out = {}
    for split, prefix in NPZ_SPLITS.items():
        ik, lk = f"{prefix}_images", f"{prefix}_labels"
        if ik not in arrays.files:
            continue
        if lk not in arrays.files:
            raise UserError(f"{path}: has {ik} but no {lk}")
        images, labels = arrays[ik], arrays[lk].reshape(len(arrays[lk]), -1)
        if labels.shape[1] != 1 or len(labels) != len(images):
            raise UserError(f"{path}: {lk} has shape {arrays[lk].shape}; expected one integer label per image "
                            f"({len(images)} images)")
        if images.ndim not in (3, 4) or images.dtype != np.uint8:
            raise UserError(f"{path}: {ik} has shape {images.shape} and dtype {images.dtype}; expected uint8 images "
                            "N×H×W (grey) or N×H×W×C")
        names = cfg.label_names
        ints = labels[:, 0].astype(int)
        if names is not None and ints.max() >= len(names):
            raise UserError(f"{path}: {lk} holds label {int(ints.max())} but image.label_names has {len(names)} names")
        text = [names[i] if names else str(i) for i in ints]
        imgs = [shrink(im[..., None] if im.ndim == 2 else im, cfg.max_side) for im in images]
        out[split] = _frame([f"{ik}[{i}]" for i in range(len(images))], text, imgs, list(range(1, len(images) + 1)))
    if "train" not in out:
        raise UserError(f"{path}: no train_images array; found {', '.join(arrays.files)} (expected the MedMNIST "
                        "layout: train_images, train_labels, val_images, ...)")
    return out


def load_source(path: Path, cfg: ImageConfig, label_column: str) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """One configured path -> {split: frame} (a split-layout folder or an .npz gives several) and the
    files skipped as unreadable."""
    read = _Reader(cfg)
    if not path.exists():
        raise UserError(f"{path}: not found")
    if path.is_dir():
        split_dirs = {s: next((path / n for n in names if (path / n).is_dir()), None)
                      for s, names in SPLIT_DIRS.items()}
        if split_dirs["train"] is not None:
            frames = {s: _class_folder(d, read) for s, d in split_dirs.items() if d is not None}
            for s, df in frames.items():  # references relative to the data root, so they name the file
                frames[s] = df.assign(text=[f"{split_dirs[s].name}/{t}" for t in df["text"]])
            return frames, read.skipped
        return {"train": _class_folder(path, read)}, read.skipped
    if path.suffix.lower() == ".npz":
        return _npz(path, cfg), []
    return {"train": _table(path, cfg, label_column, read)}, read.skipped
