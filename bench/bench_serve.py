"""Load benchmark: `tunesmith serve` (dynamic batching, bounded queue) vs a naive FastAPI endpoint
that runs one forward pass per request, on loopback, from this (second) process.

    python bench/bench_serve.py --run RUN_DIR [--backend torch|onnx|both] [--seconds 8] [--rates 10,20,...] [--append]

RUN_DIR: a finished text-classification run, e.g. MiniLM Banking77 (the full training set):
    tunesmith train examples/banking77.yaml audit.on_issue=fix
and for --backend onnx or both, exported: tunesmith export RUN_DIR --format onnx --int8 (the int8 file is
served when the parity gate kept one, else the fp32 one). The run is described from its own files (model,
training rows, epochs, test accuracy), and the served ONNX file's gate figures from export/export.json
(agreement with the PyTorch model, test accuracy of both): what the int8 file costs in accuracy.

--backend picks the pairs, each like with like (both sides serve the same file the same way):
torch: `tunesmith serve --backend torch` vs the naive endpoint on the same PyTorch model (RUN_DIR/model);
onnx: `tunesmith serve --backend onnx` vs the naive endpoint on the same ONNX file (the one
RUN_DIR/export/onnx_config.json names, fp32 or int8) in ONNX Runtime, both with tunesmith's serving
session (one intra-op thread per core, no spinning: tunesmith.serve.onnx); both: the two pairs, and
also what a user gets: `tunesmith serve --backend onnx` (int8 when the export's gate kept it) against the
naive endpoint on the PyTorch model, the one a user writes by hand. The file each server answered with is
recorded as the server itself states it (tunesmith: /v2/models/{name}; the naive server: /served).

All servers run at once, each its own process on 127.0.0.1 (PyTorch ones with torch's default threads
and OMP_WAIT_POLICY=PASSIVE), and are driven in turn (the order alternates per level) open-loop at each
offered rate for a fixed time: 75% of requests carry one Banking77 test text, 25% a list of 8
(--batch-share).
Latency counts from each request's scheduled send time (no coordinated omission). A probe GETs
/health/live every 50 ms throughout. Between levels the script waits until both servers are idle
(a naive server keeps computing requests whose clients gave up). Once a server has been saturated
at two levels (under 90% of the offered rate answered, or p99 over 2 s), higher levels skip it.

The load generator is one asyncio process that writes pre-encoded HTTP/1.1 requests on keep-alive
connections and reads only the status line and Content-Length, so it takes little of the CPU the
servers share with it (its CPU time per level is printed). The CPU time of each server process,
split by thread (event loop, batcher, others: torch's intra-op threads, FastAPI's thread pool), gives
texts per CPU-second, which a machine shared with other jobs distorts less than wall-clock throughput.
Prints one JSON line per level; --append adds a dated table to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BATCH_SIZE = 8
CLIENT_TIMEOUT = 15.0
SATURATED_P99_S = 2.0
HEALTH_TARGET_MS = 50.0  # the issue: /health/live under 50 ms throughout


def naive_server(run_dir: str, port: int, backend: str) -> None:
    """The endpoint people write first: a plain (sync) FastAPI route, one forward pass per request,
    run in FastAPI's thread pool, no queue bound."""
    import uvicorn
    from fastapi import FastAPI

    from tunesmith.predict import calibrated, load_predictor

    predictor = load_predictor(run_dir, backend)
    if backend == "onnx":  # the session tunesmith serve runs: only the batching differs
        from tunesmith.serve.onnx import for_serving

        for_serving(predictor)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict):
        inputs = body["inputs"]
        single = isinstance(inputs, str)
        probs = calibrated(predictor, [inputs] if single else inputs)
        out = [[{"label": predictor.labels[int(p.argmax())], "score": float(p.max())}] for p in probs]
        return out[0] if single else out

    @app.get("/health/live")
    async def live():
        return {"live": True}

    @app.get("/served")
    async def served():  # the bench checks the file this server loaded against the run's manifest
        from tunesmith.serve.onnx import served_file

        return {"served_file": served_file(predictor, backend)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_spec(spec: str) -> tuple[str, str, str]:
    """`KIND@BACKEND[:SRC]` -> (kind, backend, src): KIND tunesmith or naive, BACKEND torch or onnx, SRC another
    source folder for tunesmith (e.g. an older commit's `git archive`, for an A/B run)."""
    name, _, src = spec.partition(":")
    kind, _, backend = name.partition("@")
    if kind not in ("tunesmith", "naive") or backend not in ("torch", "onnx"):
        raise SystemExit(f"--servers: {spec!r}; expected tunesmith@torch, tunesmith@onnx, naive@torch or naive@onnx "
                         "(tunesmith@BACKEND:SRC for another source tree)")
    return kind, backend, src


def served_model(run_dir: str, backend: str) -> str:
    """The file a server on `backend` answers with, as the run folder names it."""
    from importlib.metadata import version

    if backend == "torch":
        return f"model/ (PyTorch {version('torch')}, torch's default threads)"
    from tunesmith.serve.onnx import usable_cores

    manifest = json.loads((Path(run_dir) / "export" / "onnx_config.json").read_text())
    return (f"export/{manifest['model_file']} (ONNX Runtime {version('onnxruntime')}, {usable_cores()} intra-op "
            "threads, no spinning)")


def onnx_precision(run_dir: str) -> str:
    """"int8 ONNX, gated" or "fp32 ONNX": which file RUN_DIR/export/onnx_config.json serves."""
    manifest = json.loads((Path(run_dir) / "export" / "onnx_config.json").read_text())
    return "int8 ONNX, gated" if "int8" in manifest["model_file"] else "fp32 ONNX"


def served_accuracy(run_dir: str) -> str:
    """What the served ONNX file costs in accuracy, from export/export.json's parity gate: its argmax agreement
    with the PyTorch model on the run's validation and test rows, and the test accuracy of both."""
    folder = Path(run_dir) / "export"
    record = json.loads((folder / "export.json").read_text())
    served = json.loads((folder / "onnx_config.json").read_text())["model_file"]  # what the servers load
    gate = record["fp32"]
    if served != gate["file"]:
        chosen = record["int8"]["chosen"]
        gate = next(c for c in record["int8"]["candidates"] if c["setting"] == chosen and c["passes"])
        what = f"export/{served} (int8: {chosen}; kept by the parity gate"
        bound = record["int8"]["bound"]
        what += (f", which asks >= {bound['min_agreement']:.0%} agreement and <= "
                 f"{bound['max_test_accuracy_loss'] * 100:g} points of test accuracy lost)")
    else:
        what = f"export/{served} (fp32)"
    acc = gate["test_accuracy"]
    n = sum(s["n"] for s in gate["splits"].values())
    pct = lambda d: f"{d['value']:.2%} [{d['low']:.2%}, {d['high']:.2%}]"  # noqa: E731
    diff = acc["difference"]
    return (f"{what}: agrees with the PyTorch model on {gate['agreement']:.2%} of {n} validation+test rows; "
            f"test accuracy {pct(acc['exported'])} against PyTorch's {pct(acc['pytorch'])}, difference "
            f"{diff['difference'] * 100:+.2f} points [{diff['low'] * 100:+.2f}, {diff['high'] * 100:+.2f}] "
            f"({diff['verdict']})")


def describe_run(run_dir: str) -> str:
    """The run in a few words, from its own files: model, data, training rows, epochs, test accuracy."""
    import yaml

    run = Path(run_dir)
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = json.loads((run / "splits.json").read_text())["train"]["rows"]
    test = json.loads((run / "results.json").read_text())["test"]
    cap = config["data"].get("max_train_rows")
    return (f"{config['model']['name']}, {Path(config['data']['train']).stem}, {rows} training rows"
            f"{f' (data.max_train_rows={cap})' if cap else ''}, {config['train']['epochs']} epochs, "
            f"test accuracy {test['accuracy']:.4f} on {test['n']} rows (PyTorch)")


def start(spec: str, run_dir: str, port: int) -> subprocess.Popen:
    """One server process (see parse_spec)."""
    kind, backend, src = parse_spec(spec)
    env = {**os.environ, "PYTHONPATH": f"{src or ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("OMP_NUM_THREADS", None)  # every server runs with torch's default threads
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # tunesmith serve's default; the naive server gets it too (like with like)
    if kind == "tunesmith":
        cmd = [sys.executable, "-m", "tunesmith.cli", "serve", run_dir, "--port", str(port), "--max-batch", "32",
               "--max-wait-ms", "5", "--max-queue", "256", "--timeout-s", "10", "--backend", backend]
    else:
        cmd = [sys.executable, __file__, "--naive-server", "--run", run_dir, "--port", str(port),
               "--backend", backend]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def said_served_file(kind: str, port: int, run_dir: str) -> str:
    """What a server says it answers with: tunesmith's /v2/models/{name} served_file, the naive server's /served."""
    import urllib.request

    path = f"/v2/models/{Path(run_dir).name}" if kind == "tunesmith" else "/served"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        said = json.load(answer)
    return said["parameters"]["served_file"] if kind == "tunesmith" else said["served_file"]


def request_bytes(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    if body:
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def exchange(conn, data: bytes) -> int:
    """Send one request on a keep-alive connection; read its answer; the status code."""
    reader, writer = conn
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


class Pool:
    """Keep-alive connections to one server: an idle one is reused, else a new one is opened. A connection
    idle for KEEP_ALIVE_S is dropped first: uvicorn closes it after 5 s, and a request written as it does
    would fail for the client's sake, not the server's."""
    KEEP_ALIVE_S = 4.0

    def __init__(self, port: int) -> None:
        self.port, self.idle = port, []  # (reader, writer, last used), most recently used last

    async def send(self, data: bytes, timeout: float) -> int | str:
        conn = None
        while self.idle and conn is None:
            reader, writer, used = self.idle.pop()
            if time.monotonic() - used < self.KEEP_ALIVE_S and not reader.at_eof():
                conn = (reader, writer)
            else:
                writer.close()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), timeout)
            status = await asyncio.wait_for(exchange(conn, data), timeout)
        except asyncio.TimeoutError:
            status = "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            status = type(err).__name__
        if isinstance(status, int):
            self.idle.append((*conn, time.monotonic()))
        elif conn is not None:
            conn[1].close()
        return status

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


def wait_ready(port: int, path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(request_bytes("GET", path))
                if s.recv(64)[9:12] == b"200":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready in 300 s")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of a process, keyed by thread id and name."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            head, _, rest = (task / "stat").read_text().rpartition(")")
            fields = rest.split()
            out[f"{task.name}:{head.partition('(')[2]}"] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError):  # the thread ended meanwhile
            pass
    return out


def cpu_split(before: dict[str, float], after: dict[str, float], pid: int) -> dict[str, float]:
    """CPU seconds between two thread_cpu readings: the event loop (the main thread), tunesmith's batcher
    thread, and every other thread (torch's intra-op threads; the naive server's thread pool)."""
    split = {"event_loop": 0.0, "batcher": 0.0, "other_threads": 0.0}
    for key, seconds in after.items():
        used = seconds - before.get(key, 0.0)
        tid, _, name = key.partition(":")
        part = "event_loop" if tid == str(pid) else "batcher" if name.startswith("tunesmith-batch") else "other_threads"
        split[part] += used
    return {k: round(v, 2) for k, v in split.items()}


def wait_idle(pids: list[int], limit_s: float = 120.0) -> None:
    """Until every server used under 5% of a core over half a second (or limit_s passed)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = [sum(thread_cpu(p).values()) for p in pids]
        time.sleep(0.5)
        if all(sum(thread_cpu(p).values()) - b < 0.025 for p, b in zip(pids, before)):
            return


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def level(port: int, rate: float, seconds: float, texts: list[str], seed: int, batch_share: float) -> dict:
    rng = random.Random(seed)
    n = int(rate * seconds)
    payloads = [rng.choice(texts) if rng.random() >= batch_share else rng.sample(texts, BATCH_SIZE) for _ in range(n)]
    encoded = [request_bytes("POST", "/predict", json.dumps({"inputs": p}).encode()) for p in payloads]
    probe_bytes = request_bytes("GET", "/health/live")
    records: list[tuple[int | str, float, int]] = []
    health: list[float] = []
    pool, prober = Pool(port), Pool(port)
    loop = asyncio.get_running_loop()
    cpu = time.process_time()
    start = loop.time()
    done = asyncio.Event()

    async def one(data: bytes, items: int, scheduled: float) -> None:
        status = await pool.send(data, CLIENT_TIMEOUT)
        records.append((status, loop.time() - scheduled, items))

    async def probe() -> None:
        while not done.is_set():
            tic = loop.time()
            status = await prober.send(probe_bytes, CLIENT_TIMEOUT)
            health.append(loop.time() - tic if status == 200 else float("inf"))
            await asyncio.sleep(0.05)

    prober_task = asyncio.create_task(probe())
    tasks = []
    for i, (data, payload) in enumerate(zip(encoded, payloads)):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        tasks.append(asyncio.create_task(one(data, 1 if isinstance(payload, str) else len(payload), scheduled)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    done.set()
    await prober_task
    client_cpu = time.process_time() - cpu
    pool.close()
    prober.close()
    ok = [lat for status, lat, _ in records if status == 200]
    statuses: dict[str, int] = {}
    for status, _, _ in records:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {"offered_rps": rate, "sent": n, "statuses": statuses, "wall_s": round(wall, 1),
            "ok_rps": round(len(ok) / wall, 1),
            "ok_texts": sum(k for status, _, k in records if status == 200),
            "ok_texts_per_s": round(sum(k for status, _, k in records if status == 200) / wall, 1),
            "p50_ms": ms(percentile(ok, 50)), "p99_ms": ms(percentile(ok, 99)),
            "health_p50_ms": ms(percentile(health, 50)), "health_p99_ms": ms(percentile(health, 99)),
            "health_max_ms": ms(max(health) if health else None), "health_probes": len(health),
            "client_cpu_s": round(client_cpu, 2)}


def saturated(row: dict) -> bool:
    return row["ok_rps"] < 0.9 * row["offered_rps"] or (row["p99_ms"] or 0) > SATURATED_P99_S * 1000


def best_at(rows: list[dict], p99_ms: float) -> float:
    """Highest throughput among error-free levels whose p99 stays within the budget."""
    good = [r["ok_rps"] for r in rows if set(r["statuses"]) == {"200"} and r["p99_ms"] is not None
            and r["p99_ms"] <= p99_ms]
    return max(good, default=0.0)


def pairs(names: list[str], onnx: str = "ONNX") -> list[tuple[str, str, str]]:
    """(what the pair compares, tunesmith's server, the naive one): like with like per backend, then
    what a user gets (tunesmith on ONNX against the naive endpoint on PyTorch) when both ran. `onnx` names the
    served ONNX file's kind (onnx_precision)."""
    out = [(f"like with like ({onnx}: both serve the same file)", "tunesmith@onnx", "naive@onnx"),
           ("like with like (PyTorch: both serve model/)", "tunesmith@torch", "naive@torch"),
           (f"what a user gets: tunesmith serve ({onnx}) vs naive endpoint (PyTorch)", "tunesmith@onnx",
            "naive@torch")]
    found = [p for p in out if p[1] in names and p[2] in names]
    if not found and len(names) >= 2:  # e.g. an A/B run of two tunesmith source trees
        found = [(f"{names[0]} vs {names[1]}", names[0], names[1])]
    return found


def summary(results: dict, budgets: list[float], target: float = 3.0, onnx: str = "ONNX") -> list[str]:
    """The issue's claims, checked: throughput at equal p99 (against the 3x target), errors below saturation,
    only 429s above it, /health/live latency, texts per CPU-second."""
    lines = []
    for what, a, b in pairs(list(results), onnx):
        for budget in budgets:
            t, n = best_at(results[a], budget), best_at(results[b], budget)
            ratio = (f"{t / n:.2f}x: {'meets' if t >= target * n else 'below'} the {target:g}x target" if n
                     else f"{b} never met it")
            lines.append(f"- {what}: highest error-free throughput with p99 <= {budget:g} ms: {a} {t} req/s, "
                         f"{b} {n} req/s ({ratio}).")
    for name, rows in results.items():
        below = [r for r in rows if not saturated(r)]
        above = [r for r in rows if saturated(r)]
        errors_below = sum(v for r in below for k, v in r["statuses"].items() if k != "200")
        above_kinds = sorted({k for r in above for k in r["statuses"] if k != "200"})
        health = max((r["health_max_ms"] for r in rows), default=None)
        health_p99 = max((r["health_p99_ms"] for r in rows), default=None)
        cpu_s = sum(r["cpu_s"] for r in rows)
        levels = ", ".join(f"{r['offered_rps']:g}" for r in below) or "none"
        lines.append(f"- {name}: {sum(r['ok_texts'] for r in rows) / max(cpu_s, 0.1):.1f} texts per server CPU-second "
                     f"over all levels; {errors_below} non-200 answers below saturation "
                     f"(levels {levels}); above it: "
                     f"{', '.join(above_kinds) or 'none'} besides 200; /health/live p99 at most {health_p99} ms, "
                     f"max {health} ms (below saturation: max "
                     f"{max((r['health_max_ms'] for r in below), default=None)} ms; "
                     f"the issue's {HEALTH_TARGET_MS:g} ms throughout: "
                     f"{'met' if health is not None and health < HEALTH_TARGET_MS else 'not met'}).")
    return lines


def record(results: dict, a, lines: list[str], served: dict[str, str], accuracy: str | None) -> str:
    load = os.getloadavg()
    names = list(results)
    # wall-clock figures from a machine shared with other jobs say more about the neighbours: said in the title.
    # Only the load before the servers start tells: the benchmark's own processes raise it (the naive server's
    # runnable pool threads by ~10)
    contended = float(a.load_at_start) > 1.0
    table = [f"## {dt.date.today().isoformat()} — serving: {' vs '.join(names)} "
             f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})"
             + (f" — contended (load {a.load_at_start} to {load[0]:.1f})" if contended else ""), "",
             f"Run: `{Path(a.run).name}` ({a.run_note}). Load generator: this script, one asyncio process on "
             f"127.0.0.1 (pre-encoded HTTP/1.1 on keep-alive connections); {a.batch_share:.0%} of requests "
             f"carry {BATCH_SIZE} texts, the rest one; {a.seconds:g} s per level, open loop; latency from each "
             f"request's scheduled send time. tunesmith: --max-batch 32 --max-wait-ms 5 --max-queue 256 "
             f"--timeout-s 10. Naive: a sync FastAPI route, one forward pass per request (thread pool), no queue "
             f"bound. Client timeout {CLIENT_TIMEOUT:g} s. PyTorch servers with OMP_WAIT_POLICY=PASSIVE. "
             f"Served (as each server stated it): {'; '.join(f'{n}: {m}' for n, m in served.items())}. "
             f"Machine load average at start: {a.load_at_start}; at the end: {load[0]:.2f}.", "",
             *([f"Accuracy of the served ONNX file (export/export.json's parity gate): {accuracy}.", ""]
               if accuracy else []),
             "| server | offered req/s | ok req/s | texts/s | p50 ms | p99 ms | statuses | /health/live p50 / p99 / "
             "max ms | server CPU s (loop / batcher / other) | texts per CPU-s | client CPU s | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = sorted(((r["offered_rps"], names.index(n), n, r) for n in names for r in results[n]),
                  key=lambda x: x[:2])
    for _, _, name, r in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        split = r["cpu_split"]
        table.append(f"| {name} | {r['offered_rps']:g} | {r['ok_rps']} | {r['ok_texts_per_s']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {statuses} | {r['health_p50_ms']} / {r['health_p99_ms']} / "
                     f"{r['health_max_ms']} | {r['cpu_s']} ({split['event_loop']} / {split['batcher']} / "
                     f"{split['other_threads']}) | {r['texts_per_cpu_s']} | {r['client_cpu_s']} | {r['load']} |")
    return "\n".join(table + [""] + lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--run-note", default=None, help="how RUN_DIR is described (default: from its files)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rates", default="10,20,30,40,50,65,80,100,125,150,200,250,300,400")
    parser.add_argument("--p99-budgets", default="250,1000")
    parser.add_argument("--batch-share", type=float, default=0.25, help="share of requests that carry 8 texts")
    parser.add_argument("--backend", choices=["torch", "onnx", "both"], default="torch",
                        help="the pairs to run: torch, onnx (RUN_DIR/export), or both (and onnx vs naive torch)")
    parser.add_argument("--servers", default=None,
                        help="instead of --backend's pairs, comma-separated: tunesmith@torch, tunesmith@onnx, "
                             "naive@torch, naive@onnx, tunesmith@BACKEND:SRC (another source tree)")
    parser.add_argument("--append", action="store_true")
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.naive_server:
        return naive_server(a.run, a.port, "torch" if a.backend == "both" else a.backend)
    import pandas as pd

    a.load_at_start = f"{os.getloadavg()[0]:.2f}"
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # a cheaper loop leaves more CPU to the servers
    except ImportError:
        pass
    texts = pd.read_csv(SHARED / "data" / "banking77_test.csv")["text"].dropna().astype(str).tolist()
    rates = [float(x) for x in a.rates.split(",")]
    backends = ["onnx", "torch"] if a.backend == "both" else [a.backend]
    names = a.servers.split(",") if a.servers else [f"{k}@{b}" for b in backends for k in ("tunesmith", "naive")]
    sys.path.insert(0, str(ROOT / "src"))  # served_model reads tunesmith.serve.onnx
    served = {name: served_model(a.run, parse_spec(name)[1]) for name in names}
    a.run_note = a.run_note or describe_run(a.run)
    uses_onnx = any(parse_spec(name)[1] == "onnx" for name in names)
    accuracy = served_accuracy(a.run) if uses_onnx else None
    onnx = onnx_precision(a.run) if uses_onnx else "ONNX"
    print(json.dumps({"run": a.run, "run_note": a.run_note, "served_onnx_accuracy": accuracy}), flush=True)
    results: dict[str, list[dict]] = {name: [] for name in names}
    ports = {name: free_port() for name in names}
    procs = {name: start(name, a.run, ports[name]) for name in names}
    began = time.monotonic()
    try:
        for name in names:
            wait_ready(ports[name], "/health/ready" if name.startswith("tunesmith") else "/health/live", procs[name])
            kind, _, src = parse_spec(name)
            if not src:  # what it answers with, in its own words (another source tree may not say it)
                said = said_served_file(kind, ports[name], a.run)
                if not served[name].startswith(said):
                    raise SystemExit(f"{name} serves {said}, expected {served[name]}")
            print(json.dumps({"server": name, "served": served[name]}), flush=True)
            asyncio.run(level(ports[name], 5, 2, texts, 99, a.batch_share))  # warm the caches
        for i, rate in enumerate(rates):
            for name in (names if i % 2 == 0 else names[::-1]):
                if sum(saturated(r) for r in results[name]) >= 2:
                    continue
                pid = procs[name].pid
                wait_idle([p.pid for p in procs.values()])
                cpu = thread_cpu(pid)
                row = asyncio.run(level(ports[name], rate, a.seconds, texts, i, a.batch_share))
                wait_idle([pid])  # work the server still does for this level counts too
                row["cpu_split"] = cpu_split(cpu, thread_cpu(pid), pid)
                row["cpu_s"] = round(sum(row["cpu_split"].values()), 1)
                row["texts_per_cpu_s"] = round(row["ok_texts"] / max(row["cpu_s"], 0.1), 1)
                row["load"] = round(os.getloadavg()[0], 1)
                print(json.dumps({"server": name, **row}), flush=True)
                results[name].append(row)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"benchmark took {time.monotonic() - began:.0f} s after the servers started", flush=True)
    if len(results) >= 2:
        budgets = [float(x) for x in a.p99_budgets.split(",")]
        section = record(results, a, summary(results, budgets, onnx=onnx), served, accuracy)
        print(section)
        if a.append:
            with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as fh:
                fh.write("\n" + section)


if __name__ == "__main__":
    main()
