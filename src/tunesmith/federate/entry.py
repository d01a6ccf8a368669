"""`federate(config) -> Run`: split the data into silos (or take one file per silo), run a Flower
federation whose clients train with tunesmith's task and loop, and finish an ordinary run folder
(model/, adapter/, config.yaml, splits.json, results.json, report.html, status.json) from the best
round's global model, with the federated comparison added to results.json and the report."""
from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from tunesmith.config import RunConfig, build_config, field_error, load_config, save_config
from tunesmith.errors import UserError
from tunesmith.federate.spec import TRANSFER_METHOD, FedSpec
from tunesmith.io import atomic_write_json

DEPLOYMENTS = ("simulation", "local")
# deployment -> "module:function" that runs the rounds: runner(spec_path, hooks, fed, seed), raising when the
# federation fails (see simulation.simulate). A deployment without a runner is refused before any compute.
RUNNERS: dict[str, str] = {"simulation": "tunesmith.federate.simulation:simulate",
                           "local": "tunesmith.federate.deploy:deploy_federation"}
SUPPORTED_TASKS = ("text-classification", "image-classification", "sft")
# task -> the transfers it can train, the first being its default when federated.transfer is not set: a CNN
# backbone has no attention projections for LoRA, and a language model has no head to probe
TRANSFERS = {"text-classification": ("adapter", "head", "full"), "image-classification": ("head", "full"),
             "sft": ("adapter", "full")}


def resolve_config(config: RunConfig | str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config with the task's defaults and train.method set from federated.transfer."""
    from tunesmith.tasks import configure

    if isinstance(config, RunConfig):
        raw = config.model_dump(mode="json", exclude_unset=True)
        cfg = build_config(raw, list(overrides))
    else:
        cfg = load_config(config, list(overrides))
    if cfg.task not in SUPPORTED_TASKS:
        raise field_error("task", cfg.task, f"federate supports {', '.join(SUPPORTED_TASKS)} so far")
    cfg = cfg.model_copy(deep=True)
    fed = cfg.federated
    allowed = TRANSFERS[cfg.task]
    if "transfer" not in fed.model_fields_set:
        fed.transfer = allowed[0]
    if fed.transfer not in allowed:
        raise field_error("federated.transfer", fed.transfer, f"task {cfg.task} federates {' or '.join(allowed)}")
    if cfg.task == "sft" and (fed.partition or "").startswith("dirichlet:"):
        raise field_error("federated.partition", fed.partition, "task sft has no labels to skew; use iid or "
                          "by-column:COLUMN")
    if cfg.task == "sft" and fed.local_loss != "plain":
        raise field_error("federated.local_loss", fed.local_loss, "task sft has no labels to adjust for; use plain")
    if cfg.task == "sft" and fed.dp is not None:
        raise field_error("federated.dp", "set", "differential privacy is federated for classification tasks only "
                          "so far; remove federated.dp")
    if fed.refit_head and cfg.task == "sft":
        raise field_error("federated.refit_head", True, "task sft has no classifier head; remove it")
    if fed.refit_head and fed.dp is not None:
        raise field_error("federated.refit_head", True, "the class statistics would travel without DP noise; "
                          "set it to false with federated.dp")
    if fed.refit_head is None:
        fed.refit_head = cfg.task != "sft" and fed.dp is None
    method = TRANSFER_METHOD[fed.transfer]
    if cfg.train.method not in ("auto", method):
        raise field_error("train.method", cfg.train.method, f"federated.transfer = {fed.transfer!r} trains with "
                          f"{method}; set train.method to {method} or auto, or choose another transfer")
    cfg.train.method = method
    if cfg.task == "image-classification":
        # a round is local epochs of the main stage: the head-first warm-up of an ordinary run has no place in it
        cfg.image.freeze_epochs = 0
    if not cfg.eval.test:
        raise field_error("eval.test", False, "a federated run is judged on the test split; set eval.test=true")
    return configure(cfg)


def federate(config: RunConfig | str | Path, overrides: Sequence[str] = (), deployment: str = "simulation"):
    """Run a federated fine-tuning job; returns the finished run (tunesmith.run.Run).

    deployment: `simulation` (Flower's simulation runtime, Ray, one machine) or `local` (a SuperLink and one
    SuperNode per silo as processes on 127.0.0.1, each SuperNode given only its silo's file: deploy.py)."""
    if deployment not in DEPLOYMENTS:
        raise UserError(f"--deployment {deployment!r}: expected one of {', '.join(DEPLOYMENTS)}")
    cfg = resolve_config(config, overrides)
    if deployment not in RUNNERS:
        raise UserError(f"--deployment {deployment}: not available yet; use --deployment "
                        f"{' or '.join(RUNNERS)}")
    from tunesmith.federate.apps import require_flwr

    require_flwr()
    from tunesmith.memo import Memo
    from tunesmith.run import claim_run_dir, folder_slug, make_accelerator, mark_status
    from tunesmith.tasks import get_task

    task = get_task(cfg.task)
    data = task.load_data(cfg)
    silo_rows = None
    if cfg.federated.silo_files:
        from tunesmith.federate.client import read_silo

        silo_rows = [read_silo(p, cfg, task) for p in cfg.federated.silo_files]
        data.splits["train"] = pd.concat(silo_rows, ignore_index=True)
    accelerator = make_accelerator(cfg)
    default = f"federated-{folder_slug(cfg.model.name)}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dir = claim_run_dir(Path(cfg.output_dir), cfg.run_name or default, cfg.run_name is not None)
    try:
        return _execute(cfg, task, data, silo_rows, run_dir, accelerator, Memo(enabled=False), deployment)
    except BaseException as err:
        mark_status(run_dir, "failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise


def _silos(cfg: RunConfig, data, silo_rows) -> list[pd.DataFrame]:
    """Each silo's training rows (after the audit): the given files, or a seeded partition of data.train."""
    from tunesmith.federate.partition import partition_rows

    train = data.splits["train"]
    if silo_rows is not None:
        sizes = [len(r) for r in silo_rows]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        # the audit may drop rows: keep each silo's surviving rows by position in the pooled frame
        return [train.iloc[s:s + n] for s, n in zip(starts, sizes)] if len(train) == sum(sizes) else silo_rows
    fed = cfg.federated
    spec = fed.partition or "iid"
    frame = train
    if spec.startswith("by-column:"):
        frame = _with_column(cfg, train, spec.split(":", 1)[1])
    parts = partition_rows(frame, spec, fed.n_clients, cfg.train.seed)
    return [train.iloc[idx].reset_index(drop=True) for idx in parts]


def _with_column(cfg: RunConfig, train: pd.DataFrame, column: str) -> pd.DataFrame:
    """The training rows with COLUMN from data.train (the task keeps only text and label), joined by row number."""
    from tunesmith.data.load import ROW, read_table

    if column in train.columns:
        return train
    raw = read_table(cfg.data.train)
    if column not in raw.columns:
        raise UserError(f"federated.partition = 'by-column:{column}': {cfg.data.train} has no column {column!r}; "
                        f"columns: {', '.join(c for c in map(str, raw.columns) if c != ROW)}")
    values = raw.set_index(ROW)[column]
    return train.assign(**{column: values.reindex(train[ROW]).to_numpy()})


def runner(deployment: str):
    """The function that runs the rounds for DEPLOYMENT (RUNNERS)."""
    import importlib

    module, _, name = RUNNERS[deployment].partition(":")
    return getattr(importlib.import_module(module), name)


def _execute(cfg: RunConfig, task, data, silo_rows, run_dir: Path, accelerator, memo,
             deployment: str = "simulation") -> "object":
    from accelerate.utils import set_seed

    from tunesmith.federate.client import write_silo
    from tunesmith.federate.partition import label_distribution
    from tunesmith.models import quiet_hf
    from tunesmith.run import DEFAULT_LR, audit_run, describe_run, mark_status

    quiet_hf()
    fed = cfg.federated
    mark_status(run_dir, "running")
    save_config(cfg, run_dir / "config.yaml")
    data, splits, _ = audit_run(cfg, task, data, run_dir, True, False, memo)
    silos = _silos(cfg, data, silo_rows)
    lr = cfg.train.learning_rate or getattr(task, "default_lr", DEFAULT_LR)[cfg.train.method]
    resolved = cfg.model_copy(deep=True)
    resolved.train.epochs, resolved.train.learning_rate = fed.local_epochs, lr
    set_seed(cfg.train.seed)
    prepared = task.prepare(resolved, data)
    resolved.model.max_length = prepared.resolved["max_length"]
    save_config(resolved, run_dir / "config.yaml")
    distribution = label_distribution(pd.concat([s["label"] for s in silos], ignore_index=True),
                                      _positions(silos), data.labels) if data.labels else None  # sft: no labels
    describe_run(run_dir, resolved, task, data, splits, accelerator,
              {**prepared.resolved, "federated": {"silo_rows": [len(s) for s in silos],
                                                  "silo_label_counts": distribution}})
    folder = run_dir / "federation"
    folder.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tunesmith-silos-"))  # the silos' rows live outside the run folder
    try:
        files = [str(write_silo(s, tmp / f"silo-{i}.silo.jsonl")) for i, s in enumerate(silos)]
        validation = write_silo(data.splits["validation"], folder / "validation.silo.jsonl")
        spec = FedSpec(config=resolved.model_dump(mode="json"), labels=list(data.labels), silo_files=files,
                       folder=str(folder), validation_file=str(validation))
        spec_path = spec.save(folder / "spec.json")
        tic = time.perf_counter()
        from tunesmith.federate.server import model_hooks

        hooks = model_hooks(task, resolved, data, prepared, accelerator, folder)
        runner(deployment)(spec_path, hooks, fed, resolved.train.seed)
        seconds = time.perf_counter() - tic
        # the spec's silo paths are gone after this run; keep the spec for the record without them
        spec.silo_files = [f"silo-{i} ({len(s)} rows)" for i, s in enumerate(silos)]
        spec.save(spec_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _finish(resolved, task, data, prepared, accelerator, silos, distribution, seconds, run_dir)


def _positions(silos: list[pd.DataFrame]) -> list:
    import numpy as np

    sizes = [len(s) for s in silos]
    return [np.arange(sum(sizes[:i]), sum(sizes[:i + 1])) for i in range(len(sizes))]


def _finish(cfg, task, data, prepared, accelerator, silos, distribution, seconds, run_dir):
    """The ordinary run folder from the best round's global model, plus the federated comparison."""
    import json

    from tunesmith.evaluate.metrics import headline
    from tunesmith.run import Run, mark_status
    from tunesmith.evaluate.report import write_report
    from tunesmith.federate.compare import compare_arms
    from tunesmith.federate.server import load_global, read_refit, read_rounds
    from tunesmith.models.methods import load_trainable_state

    fed = cfg.federated
    folder = run_dir / "federation"
    rounds = read_rounds(folder)
    load_trainable_state(prepared.model, load_global(folder))
    metric = cfg.train.metric_for_best
    best = [r for r in rounds if r["best"]][-1]
    refitted = read_refit(folder)
    kept = next((c["validation"] for c in (refitted or {}).get("candidates", []) if c["head"] == refitted["kept"]),
                best["validation"])  # the refitted head's score when the run kept it
    # the loop's record format, one evaluation per round, so the report's curves and overfitting watch read it
    with (run_dir / "metrics.jsonl").open("w") as fh:
        for r in rounds:
            if r.get("train_loss") is not None:
                fh.write(json.dumps({"type": "train", "step": r["round"], "epoch": r["round"] * fed.local_epochs,
                                     "loss": r["train_loss"], "lr": cfg.train.learning_rate}) + "\n")
            fh.write(json.dumps({"type": "eval", "split": "validation", "step": r["round"],
                                 "epoch": r["round"] * fed.local_epochs, **r["validation"]}) + "\n")
    n_train = sum(len(s) for s in silos)
    training = {"global_step": fed.rounds, "epochs_completed": fed.rounds * fed.local_epochs,
                "epochs_planned": fed.rounds * fed.local_epochs, "best_step": best["round"],
                "best_validation_" + metric: kept[metric], "stopped_early": False,
                "train_seconds": round(seconds, 2),
                "train_samples_per_second": round(n_train * fed.rounds * fed.local_epochs * fed.fraction_fit
                                                  / max(seconds, 1e-9), 2),
                "steps_are": "federated rounds"}
    if fed.compare:  # the federated model's test outputs, before finish saves (and a LoRA save merges) it
        from tunesmith.federate.compare import test_outputs

        own = test_outputs(task, cfg, prepared, accelerator)
    results = task.finish(cfg, data, prepared, accelerator, training, run_dir)
    federated = {"clients": fed.n_clients, "partition": fed.partition or ("silo_files" if fed.silo_files else "iid"),
                 "strategy": fed.strategy, "transfer": fed.transfer, "rounds": fed.rounds,
                 "local_epochs": fed.local_epochs, "fraction_fit": fed.fraction_fit, "best_round": best["round"],
                 "silo_rows": [len(s) for s in silos], "silo_label_counts": distribution,
                 "round_curve": rounds, "seconds": round(seconds, 2)}
    if refitted is not None:
        federated["head_refit"] = refitted
    federated["traffic"] = _traffic(rounds, prepared.model, refitted)
    if fed.compare:
        epochs = fed.rounds * fed.local_epochs  # the same passes over each row as the federation made
        federated["comparison"] = compare_arms(task, cfg, data, silos, own, epochs, accelerator)
        federated["comparison"]["epochs"] = epochs
    if fed.dp is not None:  # the privacy budget, and the DP model against the base model (privacy.py)
        from tunesmith.federate import privacy

        y, dp_logits, base_logits = privacy.test_logits(task, cfg, data, accelerator, load_global(folder))
        federated["privacy"] = privacy.judge(y, dp_logits, base_logits, fed, cfg.eval, cfg.train.seed)
    results["federated"] = federated
    atomic_write_json(run_dir / "results.json", results)
    write_report(run_dir)
    if fed.dp is not None:
        from tunesmith.federate import privacy

        privacy.gate(federated["privacy"])  # PrivacyGateError: federate() marks the run failed, the command exits 1
    mark_status(run_dir, "completed", **({"test": headline(results["test"])} if "test" in results else {}))
    return Run(run_dir, cfg, "completed", results)


def _traffic(rounds: list[dict], model, refitted: dict | None = None) -> dict:
    """Bytes per round and in total (the head refit's statistics included), and against sending every weight
    of the model (float32)."""
    trained = [r for r in rounds if r["round"] > 0]
    everything = trained + ([refitted["traffic"]] if refitted else [])
    sent = sum(r.get("bytes_sent", 0) for r in everything)
    received = sum(r.get("bytes_received", 0) for r in everything)
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    per_client = max((r.get("bytes_sent_per_client", 0) for r in trained), default=0)
    refit = {}
    if refitted:  # one message each way per silo, once: the global tensors out, the class statistics back
        back = refitted["traffic"]["bytes_received_per_client"]
        refit = {"refit_bytes_per_client": back, "refit_share_of_full_weights": back / full if full else None}
    return {"bytes_sent_total": sent, "bytes_received_total": received, "bytes_total": sent + received,
            "bytes_per_client_per_round": per_client, "full_model_bytes": full,
            "share_of_full_weights": per_client / full if full else None, **refit}
