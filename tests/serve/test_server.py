"""`tunesmith serve` as a real uvicorn process on 127.0.0.1: start, ready, predict, SIGTERM while a
request is queued, the request still answered, exit code 0; and with --workers 2, each worker with the options."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

import httpx
import pytest

from tests.serve.conftest import wait_until

KEY = "process-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, **kwargs) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _start_server(run, tmp_path, *options: str):
    """`tunesmith serve RUN` with an API key file and `options` on a free port, in its own process group:
    yields (process, base URL, auth header); a process still running at the end (a failed check) is
    killed with its whole group, so no spawned worker outlives the test."""
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "serve", str(run), "--port", str(port),
                             "--api-key-file", str(keys), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc, f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {KEY}"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_uvicorn_process_serves_then_drains_on_sigterm_and_exits_0(text_run, tmp_path):
    # a long batching wait keeps the last request in the queue while the signal arrives
    with _start_server(text_run, tmp_path, "--max-wait-ms", "1500") as (proc, base, auth):
        wait_until(lambda: answers(f"{base}/health/ready") or proc.poll() is not None, "the server", timeout=240)
        assert proc.poll() is None
        assert httpx.get(f"{base}/health/live").json() == {"live": True}
        first = httpx.post(f"{base}/predict", json={"inputs": ["great superb food", "awful broken"]}, headers=auth,
                           timeout=60)
        assert first.status_code == 200 and [r[0]["label"] for r in first.json()] == ["pos", "neg"]
        assert httpx.post(f"{base}/predict", json={"inputs": "good"}, timeout=60).status_code == 401

        late: dict = {}
        thread = threading.Thread(target=lambda: late.update(
            r=httpx.post(f"{base}/predict", json={"inputs": "nice happy day"}, headers=auth, timeout=60)))
        thread.start()
        wait_until(lambda: "tunesmith_queue_depth 1.0" in httpx.get(f"{base}/metrics", headers=auth).text,
                   "the request to be queued")
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert late["r"].status_code == 200 and late["r"].json()[0]["label"] == "pos"  # drained, not dropped
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Shutting down" in err and "Finished server process" in err
    assert KEY not in out + err
    assert not answers(f"{base}/health/live")


def worker_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` and that run a multiprocessing spawn (uvicorn's workers)."""
    from pathlib import Path

    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rpartition(")")[2].split()[1]) == parent \
                    and b"spawn_main" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError):  # the process ended meanwhile
            pass
    return pids


@pytest.mark.slow  # three processes import torch and load the model: 127 s at load average 13 here
def test_workers_2_starts_two_processes_that_each_take_the_options_and_stop_on_sigterm(text_run, tmp_path):
    with _start_server(text_run, tmp_path, "--workers", "2", "--max-batch", "3") as (proc, base, auth):
        wait_until(lambda: len(worker_pids(proc.pid)) == 2 or proc.poll() is not None, "two workers", timeout=240)
        workers = worker_pids(proc.pid)
        assert proc.poll() is None and len(workers) == 2
        wait_until(lambda: answers(f"{base}/health/ready") or proc.poll() is not None, "a ready worker", timeout=240)
        for _ in range(6):  # a fresh connection each time: whichever worker accepts it has the options
            with httpx.Client(base_url=base, timeout=60) as c:
                assert c.post("/predict", json={"inputs": "good"}).status_code == 401  # the key file
                assert c.post("/predict", json={"inputs": ["a", "b", "c", "d"]}, headers=auth).status_code == 422
                ok = c.post("/predict", json={"inputs": ["great superb food", "awful broken"]}, headers=auth)
                assert ok.status_code == 200 and [r[0]["label"] for r in ok.json()] == ["pos", "neg"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert worker_pids(proc.pid) == [] and KEY not in out + err
    assert not answers(f"{base}/health/live")
