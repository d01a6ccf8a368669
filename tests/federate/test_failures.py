"""A crashed client fails the run (non-zero exit) unless min_available_clients lets the rounds go on."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("flwr")


def test_a_crashed_client_fails_the_federation(tmp_path):
    """The ServerApp's FederationError comes out of Flower's run_simulation (the command then exits 1, below)."""
    from tests.federate.crashing_client import run
    from tunesmith.federate.apps import FederationError

    said = r"round 1: 2 of 3 clients replied successfully, 3 needed; failures: node \d+: .*Message: silo 1 crashed$"
    with pytest.raises(FederationError, match=said):
        run(str(tmp_path), clients=3, rounds=2, min_available=None)
    rounds = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0]  # nothing after the failed round


def test_min_available_clients_lets_the_rounds_go_on_without_the_crashed_client(tmp_path):
    from tests.federate.crashing_client import run

    run(str(tmp_path), clients=3, rounds=2, min_available=2)
    rounds = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [(r["round"], r.get("clients_ok"), r.get("clients_failed")) for r in rounds] == [
        (0, None, None), (1, 2, 1), (2, 2, 1)]
    # FedAvg of the two healthy clients, each adding 1 per round
    assert rounds[-1]["validation"]["macro_f1"] == pytest.approx(2.0)


def test_the_command_exits_1_with_one_line_when_the_federation_fails(tmp_path, capsys, monkeypatch):
    import tunesmith.federate
    from tunesmith.cli import main
    from tunesmith.federate.apps import FederationError

    def failing(*args, **kwargs):
        raise FederationError("round 2: 1 of 3 clients replied successfully, 3 needed")

    monkeypatch.setattr(tunesmith.federate, "federate", failing)
    (tmp_path / "c.yaml").write_text("data: {train: x.csv}\n")
    assert main(["federate", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: federated run failed: FederationError: round 2: 1 of 3 clients replied successfully, "
                   "3 needed"]
