"""`tunesmith auto DATA --label-column L --time-budget 15m`: AutoML for people who do not want to tune.

Looks at the data (rows, classes, text lengths) and the time budget, chooses the model, the methods
worth trying (linear probe, LoRA, full fine-tuning) and a search space, runs a TPE + ASHA study
within the budget and writes its reasons to auto.json and the study report, and the config it searched
from to auto.yaml. Trial 0 is the plain defaults (what `tunesmith train auto.yaml` runs), so the report
compares the winner with them on validation (the split the search selected on: the comparison is
optimistic, and the report says so).
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json, atomic_write_text

# Measured on a 2-core CPU with minilm-l6 (ASSETS.md and bench/RESULTS.md): one training step of
# 16 x 128 tokens takes ~1.2 s, i.e. ~0.57 ms per token for full fine-tuning; LoRA saves the
# optimizer work but not the backward pass (~0.8x); a linear probe trains the head on a frozen
# forward pass (~0.35x).
SECONDS_PER_TOKEN = {"full": 0.57e-3, "lora": 0.45e-3, "linear-probe": 0.2e-3}
OVERHEAD_S = 25.0  # model load, audit, evaluation per trial


def profile(path: str, text_column: str, label_column: str) -> dict:
    """Rows, classes and text lengths (in words; ~1.3 tokens per word for English WordPiece)."""
    from tunesmith.data.load import labelled_rows, read_table

    df, _ = labelled_rows(read_table(path), path, text_column, label_column, drop_missing=True)
    words = df["text"].str.split().str.len()
    tokens_p95 = int(min(512, math.ceil(1.3 * float(words.quantile(0.95))) + 2))
    return {"rows": int(len(df)), "classes": int(df["label"].nunique()), "tokens_p95": tokens_p95,
            "smallest_class": int(df["label"].value_counts().min())}


def trial_seconds(method: str, rows: int, tokens: int, epochs: int) -> float:
    return OVERHEAD_S + SECONDS_PER_TOKEN[method] * rows * 0.8 * tokens * epochs


def plan(prof: dict, budget_s: float) -> dict:
    """The methods, epochs and space that fit the budget, with a reason for each choice."""
    rows, tokens = prof["rows"], min(prof["tokens_p95"], 256)
    reasons = [f"{rows} labelled rows, {prof['classes']} classes, 95% of texts within ~{prof['tokens_p95']} tokens; "
               f"budget {budget_s / 60:.0f} min on this machine"]
    max_len = max(16, -(-tokens // 8) * 8)
    if tokens < prof["tokens_p95"]:
        reasons.append(f"texts are truncated to {max_len} tokens to keep trials affordable")
    # a method is worth searching when at least ~4 trials of it (2 epochs) fit in the budget
    methods = [m for m in ("linear-probe", "lora", "full") if 4 * trial_seconds(m, rows, max_len, 2) <= budget_s]
    sample = None
    if not methods:
        methods = ["linear-probe"]
        per_row = trial_seconds("linear-probe", 1, max_len, 2) - OVERHEAD_S
        sample = max(20 * prof["classes"], int((budget_s / 4 - OVERHEAD_S) / max(per_row, 1e-9)))
        reasons.append(f"even a linear probe on all rows does not fit 4 trials: trials train on a stratified sample "
                       f"of {sample} rows")
    reasons.append("methods searched: " + ", ".join(methods) + " (each must fit at least 4 trials of 2 epochs; "
                   + ", ".join(f"{m} ~{trial_seconds(m, rows, max_len, 2) / 60:.1f} min/trial"
                               for m in ("linear-probe", "lora", "full")) + ")")
    from tunesmith.run import default_epochs

    max_epochs = max(4 if rows < 5000 else 3, default_epochs(rows))
    space = {"train.method": {"type": "categorical", "choices": methods},
             "train.learning_rate": {"type": "float", "low": 1e-5, "high": 3e-2, "log": True},
             "train.epochs": {"type": "int", "low": 1, "high": max_epochs}}
    if "lora" in methods:
        space["train.lora.rank"] = {"type": "int", "low": 4, "high": 32, "log": True, "when": {"train.method": "lora"}}
    reasons.append("search: TPE over method, learning rate (1e-5..3e-2, log), epochs (1.." f"{max_epochs})"
                   + (", LoRA rank 4..32 for LoRA trials" if "lora" in methods else "")
                   + "; ASHA prunes trials that fall behind after each epoch")
    return {"methods": methods, "max_length": max_len, "max_train_rows": sample, "space": space, "reasons": reasons,
            "default_method": methods[-1]}


def auto(data: str, label_column: str, text_column: str = "text", time_budget: str = "15m",
         model: str = "minilm-l6", output_dir: str = "runs", test: str | None = None, max_trials: int = 100):
    """Choose, search within the budget, train the winner, report; returns the Study."""
    from tunesmith.tune.search import parse_duration, tune

    budget = parse_duration(time_budget)
    if not budget or budget < 120:
        raise UserError(f"--time-budget {time_budget}: give at least 2m")
    prof = profile(data, text_column, label_column)
    # the final run retrains the winner: keep ~1/4 of the budget for it
    p = plan(prof, budget * 0.75)
    name = f"auto-{Path(data).stem}"
    cfg = build_config({
        "model": {"name": model, "max_length": p["max_length"]},
        # absolute paths: auto.yaml, in the study folder, must name the same files
        "data": {"train": str(Path(data).resolve()), "test": str(Path(test).resolve()) if test else None,
                 "text_column": text_column, "label_column": label_column, "drop_missing": True,
                 "max_train_rows": p["max_train_rows"]},
        # trial 0 runs the method's plain defaults, so the report can compare the winner with them: the rate,
        # epochs and batch stay unset for the run to fill, exactly as `tunesmith train auto.yaml` would
        "train": {"method": p["default_method"]},
        "audit": {"on_issue": "fix"},
        "tune": {"space": p["space"], "sampler": "tpe", "pruner": "asha", "metric": "macro_f1", "n_trials": max_trials,
                 "timeout": f"{int(budget * 0.75)}s", "study_name": name},
        "output_dir": output_dir,
    }, source="auto")
    study_dir = Path(output_dir) / name
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(study_dir / "auto.json", {"profile": prof, **p})
    # the config as set (unset fields stay unset): `tunesmith train auto.yaml` trains what trial 0 trains
    atomic_write_text(study_dir / "auto.yaml", yaml.safe_dump(cfg.model_dump(mode="json", exclude_unset=True),
                                                              sort_keys=False))
    result = tune(cfg)
    import optuna

    from tunesmith.tune.report import write_study_report

    study = optuna.load_study(study_name=result.name, storage=result.storage)
    result.summary["auto"] = {"profile": prof, "reasons": p["reasons"]}
    write_study_report(study, result.path, result.summary)
    atomic_write_json(result.path / "study.json", result.summary)
    return result
