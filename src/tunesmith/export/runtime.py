"""Run an exported classifier with ONNX Runtime only: no torch, no transformers.

Text: the `tokenizers` library reads the run's tokenizer.json. Images: numpy and PIL reproduce
the run's evaluation preprocessing (shorter side resized to the model's size, centre crop,
scale to [0, 1], normalise). Both classes implement tunesmith.predict.Predictor.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from tunesmith.errors import UserError
from tunesmith.models.windows import Windows, mean_by_owner, specials

EXPORT_DIR = "export"
MANIFEST = "onnx_config.json"  # what the runtime needs: model file, inputs, labels, temperature, preprocessing
INSTALL = "pip install 'tunesmith[export]'"


def require(*modules: str) -> None:
    """One line naming the install command when an export dependency is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"ONNX export and the onnx backend need {', '.join(missing)} (not installed); "
                        f"install them with: {INSTALL}")


def session(path: Path, threads: int = 2):
    """An ONNX Runtime CPU session with `threads` intra-op threads and full graph optimisation."""
    require("onnxruntime")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # every ORT rewrite (constant folding, its own fusions, layout) on top of what the file already holds
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one classifier graph: no parallel branches to run
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder}: no ONNX export ({MANIFEST} missing); write one with: "
                        f"tunesmith export {Path(folder).parent} --format onnx")
    return json.loads(path.read_text())


class _OnnxClassifier:
    def __init__(self, folder: Path, model_file: str | None = None, threads: int = 2) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.model_file = model_file or self.manifest["model_file"]
        self.session = session(self.folder / self.model_file, threads)
        self.labels = list(self.manifest["labels"])
        self.temperature = float(self.manifest["temperature"])
        self.max_length = self.manifest.get("max_length")
        self.max_side = self.manifest.get("max_side")

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], feeds)[0].astype(np.float32)


class OnnxTextClassifier(_OnnxClassifier):
    """An exported text classifier: tokenizer.json through `tokenizers`, the graph through ONNX Runtime."""
    input_name = "text"

    def __init__(self, folder: Path, model_file: str | None = None, threads: int = 2) -> None:
        super().__init__(folder, model_file, threads)
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()  # the windows cut the texts, as the run did (models/windows.py)
        # exported before long texts were windowed: truncated
        self.windows = Windows(int(self.max_length), **self.manifest.get("windows", {}))
        self.specials = specials(lambda t, add: self.tokenizer.encode(t, add_special_tokens=add).ids)
        self.inputs = list(self.manifest["inputs"])

    def encode(self, windows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Token ids, mask and type ids of a batch of windows, padded to its longest (as the run's collator
        did)."""
        width = max(len(w) for w in windows)
        pad = int(self.manifest["pad_token_id"])
        out = {"input_ids": np.full((len(windows), width), pad, dtype=np.int64),
               "attention_mask": np.zeros((len(windows), width), dtype=np.int64),
               "token_type_ids": np.zeros((len(windows), width), dtype=np.int64)}
        for i, ids in enumerate(windows):
            out["input_ids"][i, :len(ids)] = ids
            out["attention_mask"][i, :len(ids)] = 1
        return {k: out[k] for k in self.inputs}

    def cut(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """The texts' windows (token ids with the specials) and each window's text."""
        ids = [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts], add_special_tokens=False)]
        return self.windows.cut(ids, *self.specials)

    def logits(self, inputs: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not len(inputs):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        cut, owner = self.cut(inputs)
        out = [self._run(self.encode(cut[s:s + batch_size])) for s in range(0, len(cut), batch_size)]
        return mean_by_owner(np.concatenate(out), owner, len(inputs))


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 H×W×C -> the shorter side at `size` (bilinear), the longer scaled alike, as torchvision's Resize(size)."""
    from PIL import Image

    h, w = image.shape[:2]
    if min(h, w) == size:
        return image
    nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    img = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    out = np.asarray(img.resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[..., None] if out.ndim == 2 else out


def preprocess(image: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 H×W×C (C = 1 or 3) -> float32 3×size×size, normalised as the run's evaluation transform."""
    img = resize_shorter(image, size)
    h, w = img.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    img = img[top:top + size, left:left + size]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    x = img.astype(np.float32).transpose(2, 0, 1) / 255.0
    return (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


class OnnxImageClassifier(_OnnxClassifier):
    """An exported image classifier: numpy + PIL preprocessing, the graph through ONNX Runtime."""
    input_name = "image"
    max_length = None

    def pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from tunesmith.data.images import shrink

        m = self.manifest["preprocess"]
        return np.stack([preprocess(shrink(img, self.max_side), m["size"], m["mean"], m["std"]) for img in images])

    def logits(self, inputs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        out = [self._run({"pixel_values": self.pixels(inputs[s:s + batch_size])})
               for s in range(0, len(inputs), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)


def text_predictor(run) -> OnnxTextClassifier:
    """load_predictor(run, backend="onnx") for a text-classification run: RUN_DIR/export."""
    return OnnxTextClassifier(run.path / EXPORT_DIR)


def image_predictor(run) -> OnnxImageClassifier:
    """load_predictor(run, backend="onnx") for an image-classification run: RUN_DIR/export."""
    return OnnxImageClassifier(run.path / EXPORT_DIR)
