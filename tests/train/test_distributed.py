"""The same run under `accelerate launch` with 2 CPU processes (gloo) produces the same kind of run folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config
from tests.test_run import RUN_FILES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_process_accelerate_launch(tiny_model, tiny_csv, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_model, tiny_csv, tmp_path / "runs")))
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(accelerate), "launch", "--config_file", str(ROOT / "examples/accelerate/multi_cpu.yaml"),
                           "-m", "tunesmith.cli", "train", str(cfg)], capture_output=True, text=True, timeout=400,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "run"
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
    assert json.loads((run_dir / "environment.json").read_text())["num_processes"] == 2
    results = json.loads((run_dir / "results.json").read_text())
    # 128 training rows, batch 8 per process, 2 processes: 8 optimizer steps per epoch, 4 epochs
    assert results["training"]["global_step"] == 32
    assert results["test"]["n"] == 16 and results["validation"]["n"] == 16  # gathered once, no duplicates
    assert results["test"]["accuracy"] > results["baselines"]["majority_class"]["test"]["accuracy"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_taken_run_name_stops_every_process(tiny_model, tiny_csv, tmp_path):
    """Only the main process checks the name; the other one must stop with it, not train or wait."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_model, tiny_csv, tmp_path / "runs")))
    taken = tmp_path / "runs" / "run"
    taken.mkdir(parents=True)
    (taken / "status.json").write_text('{"status": "completed"}')
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(accelerate), "launch", "--config_file", str(ROOT / "examples/accelerate/multi_cpu.yaml"),
                           "-m", "tunesmith.cli", "train", str(cfg)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 2, proc.stderr[-3000:]
    assert all("a run with this name exists" in line for line in errors)
    assert [p.name for p in taken.iterdir()] == ["status.json"]
