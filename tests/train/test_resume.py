"""A run killed with SIGKILL mid-epoch resumes and ends where an uninterrupted run ends."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import tiny_config
from tunesmith.config import build_config
from tunesmith.run import fine_tune

KILL_AT = 7  # optimizer step; epoch 1 has 16 steps; the last checkpoint before it is at step 6


FROZEN = {"freeze_embeddings": True, "freeze_layers": 1}


@pytest.mark.parametrize("variant", [{}, {"batch_tokens": 64}, FROZEN, {**FROZEN, "cache_frozen_layers": True}],
                         ids=["rows", "token-budget", "frozen-bottom", "cached-bottom"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_model, tiny_csv, tmp_path, variant):
    settings = dict(epochs=2, checkpoint_every_steps=3, logging_steps=1, **variant)
    cfg = tiny_config(tiny_model, tiny_csv, tmp_path / "runs", **settings)
    cfg["model"]["dropout"] = 0.2  # dropout draws random numbers: resume must restore the RNG too
    script = textwrap.dedent(f"""
        import os, signal
        from tunesmith.config import build_config
        from tunesmith.run import fine_tune
        def die(state):
            if state["global_step"] == {KILL_AT}:
                os.kill(os.getpid(), signal.SIGKILL)
        fine_tune(build_config({cfg!r}), callbacks=[die])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "run"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    state = json.loads((run_dir / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["epoch"] == 0 and state["batches_in_epoch"] == 6

    resumed = fine_tune(None, resume=run_dir)

    cfg["run_name"] = "straight"
    straight = fine_tune(build_config(cfg))
    for split in ("validation", "test"):
        for key in ("accuracy", "macro_f1", "loss"):
            assert resumed.results[split][key] == pytest.approx(straight.results[split][key], rel=1e-6, abs=1e-7)
    logs = [[json.loads(l) for l in (r.path / "metrics.jsonl").read_text().splitlines()] for r in (resumed, straight)]
    assert [x["step"] for x in logs[0]] == [x["step"] for x in logs[1]]  # nothing logged twice
    assert [x["loss"] for x in logs[0]] == pytest.approx([x["loss"] for x in logs[1]], rel=1e-5)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    if variant.get("cache_frozen_layers"):
        assert json.loads((run_dir / "data_report.json").read_text())["frozen_cache"] is True
