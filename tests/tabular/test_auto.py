"""`tunesmith auto --task tabular`: a LightGBM search sized by the budget, trial 0 the defaults, a final run."""
from __future__ import annotations

import json

import yaml

from tests.tabular.tables import make_table
from tunesmith.config import TabularConfig
from tunesmith.cli import main


def test_auto_on_a_table(tmp_path, capsys):
    make_table(500, seed=9).to_csv(tmp_path / "t.csv", index=False)
    code = main(["auto", str(tmp_path / "t.csv"), "--task", "tabular", "--label-column", "fraud", "--time-budget",
                 "1m", "--max-trials", "3", "--output-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and "up to 3 trials" in out and "final run (scored on test)" in out
    study = json.loads((tmp_path / "runs" / "auto-t" / "study.json").read_text())
    assert sum(study["trials"].values()) == 3 and study["metric"] == "loss"
    final = yaml.safe_load((tmp_path / "runs" / "auto-t" / "final" / "config.yaml").read_text())
    best = study["best"]["params"]
    assert {k: final["tabular"][k.split(".")[1]] for k in best} == best  # the final run trains the winner
    defaults = TabularConfig().model_dump()
    trial0 = {k: defaults[k.split(".")[1]] for k in best}
    results = json.loads((tmp_path / "runs" / "auto-t" / "final" / "results.json").read_text())
    assert ("lightgbm_default" in results["baselines"]) == (best != trial0)
