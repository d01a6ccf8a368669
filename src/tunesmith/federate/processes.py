"""Start, watch and stop the processes of a local Flower deployment, leaving no orphans.

Each process is started in its own session, with its output in a log file. Flower's SuperLink and
SuperNodes start helpers of their own (`flower-superexec`, which starts `flwr-serverapp` and
`flwr-clientapp` per task) in new sessions, so a process-group kill does not reach them: `close()`
collects every descendant first, then terminates them all, and kills whatever is left after a grace period.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

GRACE_SECONDS = 8.0  # SuperLink and SuperNode shut down their servers on SIGTERM within a few seconds


class DeploymentError(RuntimeError):
    """The local deployment could not start, or a process of it failed: the run fails (exit code 1)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flower_env(extra_path: Sequence[str] = (), threads: int = 1) -> dict[str, str]:
    """The environment for Flower's processes: this interpreter's scripts first on PATH (the SuperLink and
    SuperNode start `flower-superexec` by name), tunesmith importable (the Flower App's components are
    import strings into it), no update check or telemetry, THREADS intra-op threads per process."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def script(name: str) -> str:
    """The path of console script NAME beside this interpreter (the venv's), else NAME on PATH."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@dataclass
class Proc:
    """One started process: NAME (e.g. `supernode-1`), its Popen and its log file."""
    name: str
    popen: subprocess.Popen
    log: Path

    def exited(self) -> int | None:
        """Its exit code once it has exited, else None."""
        return self.popen.poll()

    def log_tail(self, lines: int = 5) -> str:
        """The last LINES non-empty lines of its log, joined with ' | ' (for a one-line error)."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(ln.strip() for ln in text if ln.strip())[-600:] if lines else ""


@dataclass
class Supervisor:
    """The processes of one deployment; a context manager whose exit stops them all (`close`)."""
    folder: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Proc:
        """Start ARGV as NAME in a new session, stdout and stderr to FOLDER/NAME.log."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def wait_until(self, proc: Proc, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll READY until it holds; DeploymentError when PROC exits first or TIMEOUT seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            code = proc.exited()
            if code is not None:
                raise DeploymentError(f"{proc.name} exited with code {code} before {what} "
                                      f"(log {proc.log}: {proc.log_tail()})")
            time.sleep(0.2)
        raise DeploymentError(f"{proc.name} did not become ready ({what}) within {timeout:.0f} s "
                              f"(log {proc.log}: {proc.log_tail()})")

    def close(self) -> list[int]:
        """Terminate every started process and all their descendants; kill survivors after a grace period.
        Returns the pids that had to be killed."""
        import psutil

        victims: dict[int, psutil.Process] = {}
        for proc in self.procs:
            try:
                root = psutil.Process(proc.popen.pid)
                for p in [root, *root.children(recursive=True)]:
                    victims[p.pid] = p
            except psutil.NoSuchProcess:
                pass
        for p in victims.values():
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(list(victims.values()), timeout=GRACE_SECONDS)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=GRACE_SECONDS)
        for proc in self.procs:  # reap our direct children
            try:
                proc.popen.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return [p.pid for p in alive]

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when URL answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False
