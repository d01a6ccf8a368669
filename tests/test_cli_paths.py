"""Every path through the real `tunesmith` executable ends in its summary, exit 0, no traceback, and the
figures it prints are the run's own (results.json): each training method, each task family, and the
commands that train (train here; tune, auto and federate in
tests/tune/test_search.py, tests/tune/test_auto.py and tests/federate/test_deploy.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_chats, make_rows, tiny_config
from tests.image.test_image import face_folder, faces, image_config, tiny_cnn  # noqa: F401 (fixtures)

EXE = Path(sys.executable).with_name("tunesmith")


def tunesmith(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps the summary table at the terminal's width
    proc = subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def results(run_dir: Path) -> dict:
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    return json.loads((run_dir / "results.json").read_text())


def assert_classification_summary(out: str, res: dict, run_dir: Path) -> None:
    """The test table's fine-tuned row shows the run's accuracy; folder and report are named."""
    row = next(l for l in out.splitlines() if f"fine-tuned ({res['method']})" in l)
    assert f"{res['test']['accuracy']:.4f}" in row
    assert f"run folder: {run_dir}" in out and f"report: {run_dir / 'report.html'}" in out


def write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


# (train overrides, what the training lines must say, whether a main stage ran, the encoder a contrastive
# run kept): rows are 24 per class, so auto picks the head alone
TEXT_PATHS = {
    "full": ({"method": "full"}, ["trained {global_step} steps in", "samples/s)"], True, None),
    "lora": ({"method": "lora", "learning_rate": 1e-2}, ["trained {global_step} steps in", "samples/s)"], True, None),
    "linear-probe": ({"method": "linear-probe", "learning_rate": 1e-2}, ["trained {global_step} steps in"], True,
                     None),
    "contrastive-refit": ({"method": "contrastive", "learning_rate": None},
                          ["contrastive stage: {warmup_steps} steps in", "no main stage: the contrastive stage "
                           "finished the model (its head was refitted on the training and validation rows"], False,
                          "any"),
    "contrastive-no-refit": ({"method": "contrastive", "learning_rate": None, "contrastive": {"refit_head": False}},
                             ["contrastive stage: {warmup_steps} steps in", "trained {global_step} steps in"], True,
                             "any"),
    "auto": ({"method": "auto", "learning_rate": None},
             ["method auto chose contrastive (median 24 training rows per class)",
              "no contrastive stage: a head fitted on the pre-trained encoder in", "no main stage: the contrastive "
              "stage finished the model"], False, "linear-probe"),
}


@pytest.mark.parametrize("path", list(TEXT_PATHS))
def test_train_summary_renders_every_text_method(path, tiny_model, tmp_path):
    overrides, expected, main_stage, kept = TEXT_PATHS[path]
    make_rows(60, seed=1).to_csv(tmp_path / "rows.csv", index=False)
    cfg = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", epochs=2)
    cfg["train"].update(overrides)
    cfg["train"] = {k: v for k, v in cfg["train"].items() if v is not None}
    cfg["eval"] = {"bootstrap_resamples": 200}
    proc = tunesmith("train", str(write(tmp_path / "c.yaml", cfg)), cwd=tmp_path)
    run_dir = tmp_path / "runs" / "run"
    res = results(run_dir)
    assert_classification_summary(proc.stdout, res, run_dir)
    tr = res["training"]
    fields = {"global_step": tr["global_step"], "warmup_steps": tr.get("warmup", {}).get("global_step")}
    for line in expected:
        assert line.format(**fields) in proc.stdout, proc.stdout
    assert (tr["global_step"] > 0) == main_stage  # a main stage ran (its steps are the ones printed), or none did
    got = tr.get("warmup", {}).get("outcome", {}).get("kept")
    assert got == kept or (kept == "any" and got in ("linear-probe", "contrastive"))
    assert (tr.get("warmup", {}).get("global_step") == 0) == (path == "auto")  # the head alone takes no steps


def test_image_sft_and_tabular_train_summaries(tmp_path, face_folder, tiny_cnn, tiny_lm):  # noqa: F811
    from tests.sft.test_sft import sft_config, write_jsonl
    from tests.tabular.tables import config as table_config, make_table

    img = image_config(face_folder, tiny_cnn, tmp_path / "runs", train={"epochs": 1})
    img["run_name"] = "image"
    proc = tunesmith("train", str(write(tmp_path / "image.yaml", img)), cwd=tmp_path)
    res = results(tmp_path / "runs" / "image")
    assert_classification_summary(proc.stdout, res, tmp_path / "runs" / "image")
    assert f"{res['training']['warmup']['phase']} stage: {res['training']['warmup']['global_step']} steps" \
        in proc.stdout and f"trained {res['training']['global_step']} steps" in proc.stdout

    sft = sft_config(tiny_lm, write_jsonl(tmp_path / "chats.jsonl", make_chats(60)), tmp_path / "runs", epochs=1)
    sft["run_name"] = "sft"
    proc = tunesmith("train", str(write(tmp_path / "sft.yaml", sft)), cwd=tmp_path)
    res = results(tmp_path / "runs" / "sft")
    assert f"tuned {res['test']['loss']:.4f}" in proc.stdout and "chat: tunesmith chat" in proc.stdout

    make_table(400).to_csv(tmp_path / "t.csv", index=False)
    tab = table_config(tmp_path / "t.csv", tmp_path / "runs")
    tab["run_name"] = "table"
    proc = tunesmith("train", str(write(tmp_path / "t.yaml", tab)), cwd=tmp_path)
    results(tmp_path / "runs" / "table")
    assert f"run folder: {tmp_path / 'runs' / 'table'}" in proc.stdout
