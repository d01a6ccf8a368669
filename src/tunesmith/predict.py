"""A finished run's model on new data: `predict(run_dir, texts)` and the `predict` command, and
`eval_run(run_dir, data)` (the `eval` command), which scores it on labelled data."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import pandas as pd

from tunesmith.errors import UserError
from tunesmith.models.windows import Windows, mean_by_owner


class Predictor(Protocol):
    """A finished classification run's model, loaded once: what `predict`, `eval` and `serve` call.

    `logits` takes texts (text-classification) or uint8 H×W×C arrays (image-classification) and
    returns raw scores, one column per label; dividing by `temperature` calibrates them."""
    labels: list[str]
    temperature: float
    input_name: str  # "text" or "image"
    max_length: int | None  # token limit (text); None for images

    def logits(self, inputs: Sequence) -> np.ndarray: ...


class TorchTextClassifier:
    """RUN_DIR/model as transformers saved it."""
    input_name = "text"

    def __init__(self, run) -> None:
        from transformers import AutoTokenizer

        from tunesmith.models import pooling, quiet_hf

        quiet_hf()
        pooling.register()  # before the tokenizer, which reads config.json's model_type too
        self.tokenizer = AutoTokenizer.from_pretrained(run.model_dir)
        # with the pooling a contrastive run trained (see models/pooling.py)
        self.model = pooling.load_classifier(run.model_dir).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.temperature = _temperature(run.model_dir)
        self.max_length = run.config.model.max_length
        self.windows = Windows.of(run.config.model, self.max_length)  # as the run read its texts

    def logits(self, inputs: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        types = "token_type_ids" in self.tokenizer.model_input_names
        with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad)
            for start in range(0, len(inputs), batch_size):
                chunk = [str(t) for t in inputs[start:start + batch_size]]
                cut, owner = self.windows.hf(self.tokenizer, chunk)
                for at in range(0, len(cut), batch_size):  # a batch of at most batch_size windows
                    enc = self.tokenizer.pad({"input_ids": cut[at:at + batch_size]}, return_tensors="pt")
                    if types:
                        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
                    logits = self.model(**enc).logits.float().numpy()
                    out.append((owner[at:at + batch_size] + start, logits))
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return mean_by_owner(np.concatenate([l for _, l in out]), np.concatenate([o for o, _ in out]), len(inputs))


class TorchImageClassifier:
    """RUN_DIR/model as timm saved it, with its own preprocessing (no augmentation)."""
    input_name = "image"
    max_length = None

    def __init__(self, run) -> None:
        from tunesmith.data.transforms import pipeline
        from tunesmith.models.vision import load_saved

        self.model, self.labels, pre = load_saved(run.model_dir)
        self.transform = pipeline(pre, None)
        self.temperature = _temperature(run.model_dir)
        self.max_side = run.config.image.max_side

    def logits(self, inputs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        import torch

        from tunesmith.data.images import shrink
        from tunesmith.data.transforms import to_chw

        out = []
        with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad)
            for start in range(0, len(inputs), batch_size):
                batch = [self.transform(to_chw(shrink(img, self.max_side))) for img in inputs[start:start + batch_size]]
                out.append(self.model(torch.stack(batch)).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)


def _onnx(kind: str) -> Callable:
    """ONNX Runtime predictors live in tunesmith.export (imported only when asked for: no torch there)."""
    def load(run):
        from tunesmith.export import runtime

        return getattr(runtime, kind)(run)

    return load


_BACKENDS: dict[str, dict[str, Callable]] = {
    "torch": {"text-classification": TorchTextClassifier, "image-classification": TorchImageClassifier},
    "onnx": {"text-classification": _onnx("text_predictor"), "image-classification": _onnx("image_predictor")},
}


def load_predictor(run_dir: str | Path, backend: str = "torch") -> Predictor:
    """Load a finished classification run's model once, for many calls (`backend`: torch, or onnx for
    RUN_DIR/export written by `tunesmith export --format onnx`, run by ONNX Runtime without torch)."""
    from tunesmith.run import completed_run

    run = completed_run(run_dir)
    if backend not in _BACKENDS:
        raise UserError(f"backend {backend!r}: expected one of {', '.join(_BACKENDS)}")
    kinds = _BACKENDS[backend]
    if run.config.task not in kinds:
        raise UserError(f"{run.path}: a {run.config.task} run; predict, eval and serve's classification routes take "
                        f"{' and '.join(kinds)} runs (sft: tunesmith chat RUN_DIR)")
    if backend == "torch" and not any((run.model_dir / f).is_file() for f in ("config.json", "model.safetensors")):
        raise UserError(f"{run.path}: no trained model in model/ (run status: {run.status})")
    return kinds[run.config.task](run)


def calibrated(predictor: Predictor, inputs: Sequence) -> np.ndarray:
    """Temperature-calibrated class probabilities, one row per input."""
    from tunesmith.evaluate.metrics import softmax

    return softmax(predictor.logits(inputs) / predictor.temperature)


def _frame(predictor: Predictor, inputs: Sequence) -> pd.DataFrame:
    probs = calibrated(predictor, inputs)
    return pd.DataFrame({"label": [predictor.labels[i] for i in probs.argmax(1)],
                         "probability": probs.max(1).round(6)})


def run_logits(run_dir: str | Path, texts: Sequence[str], batch_size: int = 64, backend: str = "torch"
               ) -> tuple[np.ndarray, list[str], float]:
    """Raw logits of a text-classification run's model for each text, the label names, and the saved
    calibration temperature."""
    predictor = load_predictor(run_dir, backend)
    if predictor.input_name != "text":
        raise UserError(f"{run_dir}: an image-classification run; predict --text and eval take text-classification "
                        "runs (images: predict --input IMAGES_FOLDER)")
    return predictor.logits(texts, batch_size), predictor.labels, predictor.temperature


def predict(run_dir: str | Path, texts: Sequence[str] | pd.DataFrame, batch_size: int = 64,
            backend: str = "torch") -> pd.DataFrame:
    """Label and calibrated probability for each text, from RUN_DIR/model (backend onnx: RUN_DIR/export); for
    a tabular run, give a DataFrame of feature columns (see tunesmith.predict_tabular.predict_table)."""
    if isinstance(texts, pd.DataFrame):  # a table's rows, for a tabular run
        from tunesmith.predict_tabular import predict_table

        return predict_table(run_dir, texts)
    predictor = load_predictor(run_dir, backend)
    if predictor.input_name != "text":
        raise UserError(f"{run_dir}: an image-classification run; give images: predict --input IMAGES_FOLDER")
    return _frame(predictor, texts)


def _temperature(model_dir: Path) -> float:
    from tunesmith.evaluate.calibration import CALIBRATION

    path = model_dir / CALIBRATION
    return json.loads(path.read_text())["temperature"] if path.is_file() else 1.0


def read_images(files: Sequence[Path], max_side: int) -> list[np.ndarray]:
    """Decode image files; an unreadable one is a UserError naming it."""
    from tunesmith.data.images import read_image

    out = []
    for f in files:
        try:
            out.append(read_image(f, max_side))
        except Exception as err:  # PIL raises many types for damaged files
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise UserError(f"{f}: not a readable image ({reason})") from None
    return out


def predict_images(run_dir: str | Path, files: Sequence[Path], batch_size: int = 64, backend: str = "torch"
                   ) -> pd.DataFrame:
    """Label and calibrated probability for each image file, from an image-classification run's model."""
    predictor = load_predictor(run_dir, backend)
    if predictor.input_name != "image":
        raise UserError(f"{run_dir}: a text-classification run; give texts: predict --input FILE or --text")
    return _frame(predictor, read_images(files, predictor.max_side))


def _write_csv(out: pd.DataFrame, output_path: str | Path) -> None:
    """Written under a temporary name, then renamed: an interrupted write leaves no partial file."""
    from tunesmith.io import atomic_write_text

    atomic_write_text(Path(output_path), out.to_csv(index=False))


def predict_image_folder(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                         backend: str = "torch") -> int:
    """Predict every image under a folder (or one image file); write image, predicted, probability."""
    from tunesmith.data.images import SUFFIXES

    root = Path(input_path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        names = [str(p.relative_to(root)) for p in files]
    elif root.is_file():
        files, names = [root], [root.name]
    else:
        raise UserError(f"{root}: not found; expected a folder of images or one image file")
    if not files:
        raise UserError(f"{root}: no images found (looked for {', '.join(sorted(SUFFIXES))})")
    preds = predict_images(run_dir, files, backend=backend)
    _write_csv(pd.DataFrame({"image": names, "predicted": preds["label"], "probability": preds["probability"]}),
               output_path)
    return len(files)


def predict_file(run_dir: str | Path, input_path: str | Path, output_path: str | Path,
                 text_column: str | None = None, backend: str = "torch") -> int:
    """Read a table, predict each row's text, write the table with `predicted` and `probability` columns.
    For an image-classification run, the input is a folder of images (or one image)."""
    from tunesmith.data.load import ROW, blank, read_table
    from tunesmith.run import completed_run

    run = completed_run(run_dir)
    if run.config.task == "image-classification":
        return predict_image_folder(run_dir, input_path, output_path, backend)
    if run.config.task.startswith("tabular"):
        from tunesmith.predict_tabular import predict_table

        df = read_table(input_path)
        out = df.drop(columns=[ROW]).join(predict_table(run_dir, df, str(input_path)).set_index(df.index),
                                          rsuffix="_predicted")
        _write_csv(out, output_path)
        return len(out)
    column = text_column or run.config.data.text_column
    df = read_table(input_path)
    if column not in df.columns:
        cols = ", ".join(c for c in df.columns if c != ROW)
        raise UserError(f"{input_path}: no column {column!r} (the run's text column); columns found: {cols}; "
                        "pass --text-column")
    texts = df[column]
    empty = blank(texts)
    if empty.any():
        rows = ", ".join(str(r) for r in df.loc[empty, ROW].head(5))
        raise UserError(f"{input_path}: {int(empty.sum())} rows have no text in column {column!r} "
                        f"(first at line {rows})")
    preds = predict(run_dir, texts.astype(str).tolist(), backend=backend)
    out = df.drop(columns=[ROW]).assign(predicted=preds["label"].values, probability=preds["probability"].values)
    _write_csv(out, output_path)
    return len(out)


def eval_run(run_dir: str | Path, data: str | Path, text_column: str | None = None,
             label_column: str | None = None) -> dict:
    """Metrics with intervals, calibration and drift of RUN_DIR's model on a labelled file; also written
    to RUN_DIR/evals/<file stem>.json."""
    from tunesmith.data.load import ROW, labelled_rows, read_table
    from tunesmith.evaluate.saved import labelled_data_report
    from tunesmith.io import atomic_write_json
    from tunesmith.run import completed_run

    run = completed_run(run_dir)
    cfg = run.config
    df, _ = labelled_rows(read_table(data), data, text_column or cfg.data.text_column,
                          label_column or cfg.data.label_column, cfg.data.drop_missing)
    logits, labels, temperature = run_logits(run.path, df["text"].tolist())
    index = {l: i for i, l in enumerate(labels)}
    unknown = df.loc[~df["label"].isin(index)]
    if len(unknown):
        row = unknown.iloc[0]
        known = f"{', '.join(labels[:10])}{' …' if len(labels) > 10 else ''}"
        raise UserError(f"{data}: row {row[ROW]}: label {row['label']!r} is not one the model knows "
                        f"({len(unknown)} rows); known labels: {known}")
    y = df["label"].map(index).to_numpy()
    profile_path = run.path / "data_report.json"
    profile = json.loads(profile_path.read_text()).get("train_profile") if profile_path.is_file() else None
    words = df["text"].str.split().str.len().to_numpy()
    report = {"run": str(run.path), "data": str(data),
              "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              **labelled_data_report(y, logits, labels, temperature, words, profile, cfg.eval, cfg.train.seed)}
    out = run.path / "evals" / f"{Path(data).stem}.json"
    atomic_write_json(out, report)
    report["path"] = str(out)
    return report
