"""The command line: exit code 2 and one line for bad input; train, predict and help work."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_config
from tunesmith.cli import main


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def config_file(tiny_model, tiny_csv, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_model, tiny_csv, tmp_path / "runs")))
    return path


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_help_lists_config_fields_with_descriptions():
    proc = cli("train", "--help")
    assert proc.returncode == 0
    assert "train.learning_rate" in proc.stdout and "Peak learning rate" in proc.stdout


@pytest.mark.parametrize("override, expected", [
    ("data.label_column=category", "no column 'category' (data.label_column); columns found: text, label"),
    ("train.method=qlora", "train.method = 'qlora'"),
    ("train.epochs=zero", "train.epochs = 'zero'"),
    ("data.train=missing.csv", "missing.csv: file not found"),
])
def test_bad_input_is_one_line_and_exit_2(config_file, override, expected):
    line = one_error_line(cli("train", str(config_file), override))
    assert expected in line


def test_missing_config_file_and_bad_run_folder(tmp_path):
    assert "config file not found" in one_error_line(cli("train", str(tmp_path / "nope.yaml")))
    assert "not a tunesmith run folder" in one_error_line(cli("predict", str(tmp_path), "--text", "hi"))


def test_train_then_predict_from_the_command_line(config_file, tmp_path, capsys):
    assert main(["train", str(config_file), "train.epochs=4"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "run"
    assert "majority class" in out and str(run_dir / "report.html") in out

    new = tmp_path / "new.csv"
    pd.DataFrame({"text": ["superb and great food", "the worst awful day"], "id": [1, 2]}).to_csv(new, index=False)
    assert main(["predict", str(run_dir), "--input", str(new), "--output", str(tmp_path / "preds.csv")]) == 0
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert preds["predicted"].tolist() == ["pos", "neg"] and preds["id"].tolist() == [1, 2]
    assert preds["probability"].between(0.5, 1.0).all()
    capsys.readouterr()

    assert main(["predict", str(run_dir), "--text", "great superb"]) == 0
    assert capsys.readouterr().out.startswith("pos\t")

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"body": ["x"]}).to_csv(bad, index=False)
    assert main(["predict", str(run_dir), "--input", str(bad), "--output", str(tmp_path / "p2.csv")]) == 2
    assert "no column 'text'" in capsys.readouterr().err
    assert not (tmp_path / "p2.csv").exists()
