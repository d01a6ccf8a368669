"""model/README.md: a model card written from the run folder's own files."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from tunesmith.evaluate.training_summary import training_lines
from tunesmith.io import atomic_write_text


def _ci(m: dict, key: str) -> str:
    ci = m.get("ci", {}).get(key)
    return f"{m[key]:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]" if ci else f"{m[key]:.4f}"


def write_model_card(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    splits = json.loads((run_dir / "splits.json").read_text())
    test = res["test"]
    level = int(round(100 * test["ci"]["accuracy"]["level"])) if "ci" in test else 95
    rows = [f"| fine-tuned ({res['method']}) | {_ci(test, 'accuracy')} | {_ci(test, 'macro_f1')} |"]
    rows += [f"| {name} | {_ci(b['test'], 'accuracy')} | {_ci(b['test'], 'macro_f1')} |"
             for name, b in res["baselines"].items()]
    comp = res.get("comparison") or {}
    verdict = (f"Against the best baseline ({comp['best_baseline']}), accuracy differs by "
               f"{comp['accuracy']['difference']:+.4f} "
               f"[{comp['accuracy']['low']:+.4f}, {comp['accuracy']['high']:+.4f}] "
               f"(paired bootstrap, p = {comp['accuracy']['p_value']:.3f}): **{comp['accuracy']['verdict']}**."
               if comp else "")
    cal = res.get("calibration")
    cal_text = (f"Temperature {cal['temperature']:.3f} fitted on validation; test ECE {cal['test']['ece']:.4f} before, "
                f"{cal['test']['ece_scaled']:.4f} after. `tunesmith predict` applies it; `calibration.json` holds it."
                if cal else "Not calibrated.")
    images = res["task"] == "image-classification"
    drift_hint = "" if images else ("; check with `tunesmith eval RUN_DIR --data new_labelled.csv`, which warns "
                                    "about drift")
    noun = "images" if images else "texts"
    if images:
        data_line = f"images from `{cfg['data']['train']}`"
        size_line = f"input size {cfg['image']['size'] or 'of the model'} px"
    else:
        data_line = (f"training file: `{cfg['data']['train']}`; text column `{cfg['data']['text_column']}`, label "
                     f"column `{cfg['data']['label_column']}`")
        size_line = f"max length {cfg['model']['max_length']} tokens"
    label_list = ", ".join(res["labels"][:20]) + (" …" if len(res["labels"]) > 20 else "")
    split_rows = " / ".join(str(splits[s]["rows"]) for s in ("train", "validation", "test"))
    card = f"""---
library_name: {'timm' if images else 'transformers'}
pipeline_tag: {res['task']}
tags: [tunesmith, {res['method']}]
---
# {run_dir.name}

Fine-tuned by [tunesmith](https://pypi.org/project/tunesmith/) from `{cfg['model']['name']}` with method
`{res['method']}` for {res['task']} over {len(res['labels'])} labels: {label_list}.

## Data
- {data_line}
- split rows (train / validation / test): {split_rows}
- split fingerprints (sha256 of row hashes): train `{splits['train']['sha256'][:16]}`, validation
  `{splits['validation']['sha256'][:16]}`, test `{splits['test']['sha256'][:16]}`

## Results on the held-out test split ({level}% bootstrap intervals)
| model | accuracy | macro-F1 |
|---|---|---|
{chr(10).join(rows)}

{verdict}

## Calibration
{cal_text}

## Training
{'; '.join(training_lines(res['training']))}; {res['training']['epochs_completed']} epochs, {size_line},
learning rate {cfg['train']['learning_rate']}, seed {cfg['train']['seed']}.
{res.get('overfitting', {}).get('summary', '')}

## Intended use and limits
Classifies {noun} like those in the training data into the labels above. It has seen only that data: {noun}
from another domain, source or time, or labels outside the list, will be mapped to the nearest known label
with no warning from the model itself{drift_hint}.
The intervals above describe this test split, not future data.
"""
    out = run_dir / "model" / "README.md"
    atomic_write_text(out, card)
    return out
