"""--deployment local: real SuperLink and SuperNode processes on 127.0.0.1 (Flower 1.42's HTTP APIs).

The machinery tests run a numpy-only Flower App (flower_toy.py) so that they time the deployment, not a
model; test_federate_local runs tunesmith's own apps on a tiny model end to end."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("flwr")

from tunesmith.federate.deploy import run_local, write_app  # noqa: E402
from tunesmith.federate.processes import DeploymentError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOY = "tests.federate.flower_toy"


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    # the Flower processes import the toy app from the repository root
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _silos(tmp_path: Path, values: list[float]) -> list[str]:
    files = []
    for i, v in enumerate(values):
        path = tmp_path / f"silo-{i}.txt"
        path.write_text(str(v))
        files.append(str(path))
    return files


def _flower_processes() -> list[psutil.Process]:
    mine = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(name in cmd for name in ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-")):
            mine.append(p)
    return mine


def _kill_tree(pid: int) -> None:
    """A crash: SIGKILL the SuperNode and the processes it started."""
    root = psutil.Process(pid)
    for p in [*root.children(recursive=True), root]:
        p.send_signal(signal.SIGKILL)


def _config(tmp_path: Path, need: int, sleep: float = 0.0, rounds: int = 2) -> dict:
    return {"toy-need": need, "toy-rounds": rounds, "toy-sleep": sleep, "toy-out": str(tmp_path / "out.json")}


def _crash_when_training(tmp_path: Path, silo: int):
    """An on_started callback: once silo SILO's client is inside its round-1 task, SIGKILL its SuperNode."""
    def crash(info):
        marker = tmp_path / f"silo-{silo}.training"
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        _kill_tree(info["nodes"][silo]["pid"])
    return crash


def test_app_folder_is_a_flower_app(tmp_path):
    from flwr.cli.config_utils import load_and_validate

    app = write_app(tmp_path / "app", {"tunesmith-spec": "/x/spec.json"})
    config, _ = load_and_validate(app / "pyproject.toml", check_module=False)
    assert config["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "tunesmith.federate.flower_app:server_app",
        "clientapp": "tunesmith.federate.flower_app:client_app"}
    assert config["tool"]["flwr"]["app"]["config"] == {"tunesmith-spec": "/x/spec.json"}


def test_crashed_client_fails_the_run(tmp_path):
    # a ClientApp that raises: Flower itself finishes such a run as `completed`; tunesmith's reply check fails it
    with pytest.raises(DeploymentError, match=r"finished:failed .*round 1: 1 of 2 clients replied successfully"):
        run_local(_config(tmp_path, 2, rounds=1), _silos(tmp_path, [1.0, -1.0]), tmp_path / "deploy", 2, 300,
                  module=TOY)


def test_killed_supernode_stops_the_run_below_min_available(tmp_path):
    before = {p.pid for p in _flower_processes()}

    with pytest.raises(DeploymentError, match=r"SuperNode of silo 1 exited .* 1 of 2 silos remain, "
                                              r"federated.min_available_clients needs 2; run stopped"):
        run_local(_config(tmp_path, 2, sleep=3.0), _silos(tmp_path, [1.0, 3.0]), tmp_path / "deploy", 2, 300,
                  module=TOY, on_started=_crash_when_training(tmp_path, 1))
    assert [p for p in _flower_processes() if p.pid not in before] == []


@pytest.mark.slow
def test_killed_supernode_run_goes_on_with_enough_clients(tmp_path, capfd):
    summary = run_local(_config(tmp_path, 2, sleep=3.0), _silos(tmp_path, [1.0, 3.0, 100.0]), tmp_path / "deploy",
                        2, 300, module=TOY, on_started=_crash_when_training(tmp_path, 2))
    assert summary["status"] == "finished:completed" and list(summary["lost"]) == [2]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["vector"] == [4.0, 4.0]  # silo 2 (+100) never contributed
    assert out["traffic"]["1"]["clients_failed"] == 1 and out["traffic"]["2"]["clients_sampled"] == 2
    assert "going on with 2 of 3 silos" in capfd.readouterr().err


def test_federate_local_end_to_end(tmp_path, tiny_model):
    """`tunesmith federate --deployment local` (the executable): tunesmith's own ClientApp and ServerApp on a
    tiny BERT, two SuperNodes; exit code 0, its summary shows the run's figures, an ordinary run folder that
    predict accepts, each SuperNode given only its file, and no Flower process left behind."""
    import pandas as pd
    import yaml

    from tests.conftest import make_rows, tiny_config
    from tests.test_cli_paths import assert_classification_summary, results, tunesmith
    from tunesmith.cli import main

    before = {p.pid for p in _flower_processes()}
    make_rows(120, seed=3).to_csv(tmp_path / "rows.csv", index=False)
    cfg = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", method="auto", learning_rate=2e-2)
    cfg["train"].pop("epochs")
    cfg["audit"] = {"enabled": False}
    cfg["eval"] = {"baselines": ["majority_class"], "bootstrap_resamples": 100}
    cfg["federated"] = {"clients": 2, "rounds": 1, "transfer": "head", "compare": False}
    (tmp_path / "fed.yaml").write_text(yaml.safe_dump(cfg))
    proc = tunesmith("federate", str(tmp_path / "fed.yaml"), "--deployment", "local", cwd=tmp_path)

    run_dir = tmp_path / "runs" / "run"
    res = results(run_dir)  # completed
    assert_classification_summary(proc.stdout, res, run_dir)  # the CLI's summary (issue 24 point 1)
    assert f"trained {res['training']['global_step']} steps" in proc.stdout and "traffic:" in proc.stdout
    rounds = json.loads((run_dir / "results.json").read_text())["federated"]["round_curve"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(r["clients_ok"] == 2 and r["bytes_received"] > 0 for r in rounds[1:])
    deployment = json.loads((run_dir / "federation" / "deploy" / "deployment.json").read_text())
    assert deployment["status"] == "finished:completed" and deployment["lost"] == {}
    for i, node_config in enumerate(deployment["node_configs"]):
        assert node_config.count("silo-file=") == 1 and f"silo-{i}.silo.jsonl" in node_config
    # the spec the processes read (the app's run config names it) lists no silo file
    app_config = (run_dir / "federation" / "deploy" / "app" / "pyproject.toml").read_text()
    shared_path = run_dir / "federation" / "deploy" / "spec.json"
    assert f'tunesmith-spec = "{shared_path}"' in app_config
    assert not any("/" in f for f in json.loads(shared_path.read_text())["silo_files"])
    test = pd.read_csv(run_dir / "test_predictions.csv")
    test[["text"]].to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "in.csv"), "--output",
                 str(tmp_path / "out.csv")]) == 0
    assert pd.read_csv(tmp_path / "out.csv")["predicted"].tolist() == test["predicted"].tolist()
    assert [p for p in _flower_processes() if p.pid not in before] == []
