"""The training loop's metrics log: rewritten on resume without ever losing what it held."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tunesmith.train.loop import MetricsLog

LINES = [json.dumps({"type": "train", "step": s, "loss": 1.0 / s}) for s in (1, 2, 3, 4)]


def test_resume_forgets_later_steps_and_a_half_written_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(LINES) + '\n{"type": "train", "st')  # killed while appending
    MetricsLog(path, enabled=True).truncate_after(2)
    assert path.read_text() == LINES[0] + "\n" + LINES[1] + "\n"


def test_a_rewrite_that_fails_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    before = "\n".join(LINES) + "\n"
    path.write_text(before)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def truncate_then_disk_full(self, *args, **kwargs):
        self.open("w").close()  # what a plain write does first
        disk_full()

    monkeypatch.setattr(os, "fsync", disk_full)
    monkeypatch.setattr(Path, "write_text", truncate_then_disk_full)
    with pytest.raises(OSError):
        MetricsLog(path, enabled=True).truncate_after(2)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
