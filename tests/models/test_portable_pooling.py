"""A contrastive (mean-pooled) run's model/ folder means the same wherever it is loaded: through tunesmith, through
transformers with trust_remote_code (the modelling file is in the folder), through sentence-transformers; plain
transformers without trust_remote_code refuses it rather than read it with BERT's [CLS] pooler. A folder saved
before (plain BERT marked `sentence_pooling: mean`) still predicts with its pooling."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import make_rows, tiny_config
from tests.test_cli_paths import tunesmith, write

TEXTS = ["good film", "the staff was awful and the food was bad", "it was a nice day", "meh"]


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    """`tunesmith train` of a head-alone contrastive run (train.contrastive.epochs 0), as a user runs it."""
    tmp = tmp_path_factory.mktemp("portable")
    make_rows(60, seed=1).to_csv(tmp / "rows.csv", index=False)
    cfg = tiny_config(tiny_model, tmp / "rows.csv", tmp / "runs")
    cfg["train"].update(method="contrastive", contrastive={"epochs": 0})
    cfg["train"].pop("learning_rate")
    cfg["eval"] = {"bootstrap_resamples": 100}
    tunesmith("train", str(write(tmp / "c.yaml", cfg)), cwd=tmp)
    return tmp / "runs" / "run"


def _cli_probabilities(run, tmp_path) -> pd.DataFrame:
    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "in.csv", index=False)
    tunesmith("predict", str(run), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
              cwd=tmp_path)
    return pd.read_csv(tmp_path / "out.csv")


def _logits(model, folder) -> np.ndarray:
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(folder)(TEXTS, truncation=True, max_length=32, padding=True,
                                                return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**enc).logits.numpy()


def _temperature(folder) -> float:
    path = folder / "calibration.json"
    return json.loads(path.read_text())["temperature"] if path.is_file() else 1.0


FRESH = """
import json, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
import torch
folder, texts = sys.argv[1], json.loads(sys.argv[2])
out = {"refused": []}
for load in (lambda: AutoModelForSequenceClassification.from_pretrained(folder),
             lambda: pipeline("text-classification", folder)):
    try:
        load()
        out["refused"].append("loaded")
    except Exception as e:
        out["refused"].append(str(e))
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
enc = AutoTokenizer.from_pretrained(folder)(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
with torch.no_grad():
    out["logits"] = model(**enc).logits.tolist()
out["module"] = type(model).__module__
out["labels"] = model.config.id2label
print("\\n" + json.dumps(out))
"""


def test_the_folder_loads_the_same_with_trust_remote_code_and_refuses_without(run_dir, tmp_path):
    """In a fresh process without tunesmith (it registers the classes in its own): plain transformers refuses the
    folder rather than read it with the [CLS] pooler, and trust_remote_code runs the folder's own modelling file,
    whose logits are tunesmith's."""
    folder = run_dir / "model"
    proc = subprocess.run([sys.executable, "-c", FRESH, str(folder), json.dumps(TEXTS)], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(fresh["refused"]) == 2 and all("trust_remote_code" in e for e in fresh["refused"]), fresh["refused"]
    assert fresh["module"].startswith("transformers_modules")  # the folder's own file, not tunesmith's
    logits = np.array(fresh["logits"])
    from tunesmith.predict import run_logits

    ours, _, _ = run_logits(run_dir, TEXTS)
    assert np.abs(ours - logits).max() < 1e-5
    scaled = torch.softmax(torch.from_numpy(logits) / _temperature(folder), -1).numpy()
    got = _cli_probabilities(run_dir, tmp_path)
    assert list(got["predicted"]) == [fresh["labels"][str(i)] for i in scaled.argmax(1)]
    assert np.abs(got["probability"].to_numpy() - scaled.max(1)).max() < 1e-5
    config = json.loads((folder / "config.json").read_text())
    assert config["sentence_pooling"] == "mean" and config["model_type"] == "mean_pooled_bert"


def test_sentence_transformers_encode_gives_the_logits(run_dir):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForSequenceClassification

    folder = run_dir / "model"
    model = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    assert model.max_seq_length == 32
    encoded = model.encode(TEXTS, convert_to_numpy=True)
    logits = _logits(AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True), folder)
    assert np.abs(encoded - logits).max() < 1e-5


def test_an_old_plain_bert_folder_marked_mean_still_predicts_with_its_pooling(run_dir, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from tunesmith.models import pooling
    from tunesmith.predict import run_logits

    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    folder = old / "model"
    model = pooling.load_classifier(folder)
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    plain = BertForSequenceClassification(BertConfig(**fields))  # as tunesmith saved it before
    plain.load_state_dict(model.state_dict())
    for extra in ["mean_bert.py", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                  "1_Pooling", "2_Normalize", "3_Dense"]:
        path = folder / extra
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    plain.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["sentence_pooling"] == "mean"
    new, _, _ = run_logits(run_dir, TEXTS)
    got, _, _ = run_logits(old, TEXTS)
    assert np.abs(got - new).max() < 1e-5
    with torch.no_grad():  # and it is not what the [CLS] pooler reads
        assert np.abs(_logits(plain, folder) - new).max() > 1e-4
