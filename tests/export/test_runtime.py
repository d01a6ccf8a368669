"""The onnx backend: predicts what the PyTorch path predicts, in a process that never imports torch."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tunesmith.errors import UserError
from tunesmith.export import export_run
from tunesmith.predict import load_predictor, predict, predict_image_folder

TEXTS = ["good great", "awful bad the movie", "the staff was nice", "it is broken and poor", "meh plain day"]


def test_fresh_process_predicts_with_onnx_runtime_only_and_agrees_with_torch(text_run, image_run, tmp_path):
    export_run(text_run, "onnx", int8=False)
    export_run(image_run, "onnx")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, ref in enumerate(pd.read_csv(image_run / "test_predictions.csv")["image"][:6]):
        src = next(p for p in (image_run.parent.parent / "data").rglob("*.png") if str(p).endswith(ref))
        Image.open(src).save(folder / f"{i}.png")
    script = textwrap.dedent(f"""
        import sys
        from tunesmith.cli import main
        from tunesmith.predict import load_predictor
        texts = {TEXTS!r}
        assert main(["predict", {str(text_run)!r}, "--backend", "onnx", *sum((["--text", t] for t in texts), [])]) == 0
        assert main(["predict", {str(image_run)!r}, "--backend", "onnx", "--input", {str(folder)!r},
                     "--output", {str(tmp_path / "onnx.csv")!r}]) == 0
        p = load_predictor({str(text_run)!r}, backend="onnx")
        assert p.input_name == "text" and p.labels == ["neg", "pos"] and p.max_length == 32
        print("TORCH_LOADED", "torch" in sys.modules, "transformers" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_LOADED False False" in proc.stdout
    onnx_labels = [line.split("\t")[0] for line in proc.stdout.splitlines() if "\t" in line]
    assert onnx_labels == predict(text_run, TEXTS)["label"].tolist()
    predict_image_folder(image_run, folder, tmp_path / "torch.csv")
    got, want = pd.read_csv(tmp_path / "onnx.csv"), pd.read_csv(tmp_path / "torch.csv")
    assert got["predicted"].tolist() == want["predicted"].tolist()
    assert np.allclose(got["probability"], want["probability"], atol=1e-4)


def test_onnx_backend_without_an_export_names_the_command(text_run, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(text_run, bare, ignore=shutil.ignore_patterns("export", "checkpoints"))
    with pytest.raises(UserError, match=r"no ONNX export .*tunesmith export .*bare --format onnx"):
        load_predictor(bare, backend="onnx")
    with pytest.raises(UserError, match="backend 'tflite': expected one of torch, onnx"):
        load_predictor(bare, backend="tflite")


@pytest.mark.parametrize("shape, size", [((300, 451, 3), 96), ((28, 28, 1), 64), ((40, 25, 3), 32)])
def test_numpy_preprocessing_matches_torchvision_within_one_grey_level(shape, size):
    from tunesmith.data.transforms import pipeline, to_chw
    from tunesmith.export.runtime import preprocess
    from tunesmith.models.vision import Preprocess

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pre = Preprocess(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    want = pipeline(pre, None)(to_chw(img)).numpy()
    got = preprocess(img, size, pre.mean, pre.std)
    assert got.shape == want.shape == (3, size, size)
    # one grey level (1/255) after dividing by the smallest std
    assert np.abs(got - want).max() <= 1 / 255 / 0.224 + 1e-6
