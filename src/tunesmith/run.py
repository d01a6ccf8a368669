"""`fine_tune(config) -> Run`: load and check data, split, fine-tune, evaluate, report.

The run folder describes itself: config.yaml (resolved), splits.json (row fingerprints),
environment.json, data_report.json, metrics.jsonl, checkpoints/, model/, results.json,
test_predictions.csv, report.html and status.json (running | failed | completed).
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import yaml

from tunesmith.config import RunConfig, build_config, load_config, save_config
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json, atomic_write_text
from tunesmith.memo import Memo, audit_key, data_key

STATUS = "status.json"
DEFAULT_LR = {"full": 1e-4, "lora": 1e-3, "linear-probe": 1e-2, "contrastive": 1e-4}  # contrastive: its head stage,
# which starts at the class centroids; Banking77 10-shot validation: 1e-4 kept 0.826, 1e-3 fell to 0.78, 1e-2 to 0.76


@dataclass
class Run:
    """A finished (or failed) run folder and what it produced."""
    path: Path
    config: RunConfig
    status: str
    results: dict

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def load_run(path: str | Path) -> Run:
    """Open a run folder written by fine_tune."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path}: not a tunesmith run folder (no config.yaml)")
    # the resolved config fine_tune saved: its task's defaults and rules were applied before it ran
    try:
        raw = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"{path / 'config.yaml'}: not valid YAML ({str(err).splitlines()[0]}); the run folder is "
                        "damaged") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path / 'config.yaml'}: expected a mapping, found {type(raw).__name__}; the run folder is "
                        "damaged")
    if isinstance(raw.get("model"), dict) and "long_text" not in raw["model"]:
        raw["model"]["long_text"] = "truncate"  # saved before long texts were windowed: the run truncated them
    cfg = build_config(raw, source=str(path / "config.yaml"))
    status = _read_json(path / STATUS).get("status", "unknown") if (path / STATUS).is_file() else "unknown"
    results = _read_json(path / "results.json") if (path / "results.json").is_file() else {}
    return Run(path, cfg, status, results)


def completed_run(path: str | Path) -> Run:
    """load_run for the commands that use the trained model (predict, eval, chat, export): a run that
    failed, was killed or is still training may hold a partial model/, so only a completed one is taken."""
    run = load_run(path)
    if run.status != "completed":
        raise UserError(f"{run.path}: the run did not complete (status: {run.status}), so its model may be partial; "
                        f"finish it with tunesmith train --resume {run.path}, or use a completed run")
    return run


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({str(err).splitlines()[0]}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(data).__name__}; the run folder is damaged")
    return data


def default_epochs(n_train: int) -> int:
    return 5 if n_train < 1000 else 3 if n_train < 10000 else 2


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(text).name if os.sep in text else text).strip("-").lower()[:40]


def environment(accelerator) -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("tunesmith", "torch", "transformers", "accelerate", "peft", "tokenizers", "timm", "torchvision",
                "scikit-learn", "pandas", "lightgbm", "xgboost"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "num_processes": accelerator.num_processes, "device": str(accelerator.device),
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _distributed_without_gpu() -> bool:
    """Launched as several processes (torchrun / accelerate launch) on a machine without a GPU:
    Accelerate then needs cpu=True to pick the gloo backend instead of running N single processes."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def mixed_precision(precision: str) -> str:
    """Accelerate's name for train.precision; fp16 needs CUDA (its loss scaler has no CPU kernel)."""
    import torch

    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("train.precision = 'fp16': needs a CUDA GPU and none is available; use bf16 or fp32")
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16", "auto": "no"}[precision]  # auto: see _resolve_precision


def _resolve_precision(cfg: RunConfig, data) -> RunConfig:
    """train.precision auto made concrete from the task, the hardware and the training rows (the run's
    config.yaml records the result, so a resumed run keeps it)."""
    from tunesmith.train.precision import resolve_precision

    if cfg.train.precision != "auto":
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.train.precision = resolve_precision("auto", cfg.task, len(data.splits.get("train", ())))
    return cfg


def _accelerator(cfg: RunConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    precision = mixed_precision(cfg.train.precision)
    current = AcceleratorState._shared_state.get("_mixed_precision")  # None until an Accelerator exists
    if current is not None and current != precision:
        # Accelerate keeps one precision per process; the trials of a study may differ in it
        AcceleratorState._reset_state()
    return Accelerator(gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
                       cpu=_distributed_without_gpu(), mixed_precision=precision)


def claim_run_dir(output_dir: Path, name: str, explicit: bool) -> Path:
    """Create the run folder OUTPUT_DIR/NAME. A default name takes -2, -3... when a folder of that name
    exists (runs started within the same second, by this or another process): mkdir without exist_ok
    is the claim, so two processes never share a folder. An explicit name may reuse a folder that
    holds no run (no status.json), never a run's."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"output_dir = '{output_dir}': is a file; expected a folder that receives the run folders")
    output_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = output_dir / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if not explicit:
                continue
            if (candidate / STATUS).exists() or not candidate.is_dir():
                raise UserError(f"{candidate}: a run with this name exists; resume it with --resume {candidate} or "
                                "choose another run_name") from None
            return candidate
    raise AssertionError("unreachable")


def _shared_run_dir(cfg: RunConfig, main: bool) -> Path:
    """The main process claims the run folder and sends its path to the others; an error there (name
    taken, output_dir a file) reaches every process, so none waits for a peer that has stopped."""
    from accelerate.utils import broadcast_object_list

    chosen: list = [None, None]
    if main:
        default = f"{cfg.task}-{_slug(cfg.model.name)}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        try:
            chosen = [str(claim_run_dir(Path(cfg.output_dir), cfg.run_name or default, cfg.run_name is not None)),
                      None]
        except (UserError, OSError) as err:
            chosen = [None, err]
    path, err = broadcast_object_list(chosen)
    if err is not None:
        raise err if main else UserError(str(err))
    return Path(path)


def _mark(run_dir: Path, status: str, **extra) -> None:
    atomic_write_json(run_dir / STATUS, {"status": status, **extra,
                                         "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


def _split_record(splits) -> dict:
    from tunesmith.data.split import fingerprint

    return {name: fingerprint(df) for name, df in splits.items()}


def fine_tune(config: RunConfig | str | Path, overrides: Sequence[str] = (), resume: str | Path | None = None,
              callbacks: Sequence[Callable[[dict], None]] = (), memo: Memo | None = None) -> Run:
    """Run the whole job. `config` is a RunConfig or a YAML path; `resume` a run folder to continue;
    `memo` shares loaded data, audit, tokenization and frozen features between the runs of a study."""
    if resume is not None:
        resume = Path(resume)
        if not (resume / "config.yaml").is_file():
            raise UserError(f"{resume}: cannot resume: not a tunesmith run folder (no config.yaml)")
        cfg = load_config(resume / "config.yaml", list(overrides))
    elif isinstance(config, RunConfig):
        # only the fields that were set: a task's defaults (tunesmith.tasks.configure) fill the others
        cfg = build_config(config.model_dump(mode="json", exclude_unset=True), list(overrides))
    else:
        cfg = load_config(config, list(overrides))

    from tunesmith.tasks import configure, get_task

    cfg = configure(cfg)  # the task's own defaults and rules, before any data loads

    memo = memo or Memo(enabled=False)
    task = get_task(cfg.task)
    # every data problem surfaces here, before any model loads
    data = memo.get("data", data_key(cfg, task), lambda: task.load_data(cfg))
    cfg = _resolve_precision(cfg, data)
    accelerator = _accelerator(cfg)
    main = accelerator.is_main_process
    run_dir = resume if resume is not None else _shared_run_dir(cfg, main)
    try:
        return _execute(cfg, task, data, run_dir, accelerator, resume is not None, callbacks, memo)
    except BaseException as err:
        if main:
            _mark(run_dir, "failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise


def _audit(cfg, task, data, run_dir: Path, main: bool, resuming: bool, memo: Memo):
    """Audit and clean the splits; stop on blocking findings unless audit.on_issue says otherwise.
    On resume, the cleaned splits must be the ones the run started with."""
    import copy

    from tunesmith.data.audit import gate

    report = None
    if cfg.audit.enabled:
        data, report = memo.get("audit", audit_key(cfg, task), lambda: task.audit(cfg, data))
        report = copy.deepcopy(report)  # this run adds to it
        if main:
            atomic_write_json(run_dir / "audit.json", report)
        gate(report, cfg.audit.on_issue, str(run_dir / "audit.json"))
    splits = _split_record(data.splits)
    if resuming:
        saved = json.loads((run_dir / "splits.json").read_text())
        for name, fp in splits.items():
            if saved.get(name, {}).get("sha256") != fp["sha256"]:
                raise UserError(f"{run_dir}: the {name} split differs from the one this run started with "
                                "(data files or audit settings changed); start a new run instead of resuming")
    return data, splits, report


def _warmup(cfg, task, data, prepared, run_dir: Path, accelerator, resuming: bool) -> dict | None:
    """Train the task's warm-up stage (e.g. the head on a frozen backbone) in RUN_DIR/<name>/, then
    unfreeze: the main stage starts from its best weights. "final": the stage's leave made the model final
    (e.g. a head fitted on training and validation rows), so there is no main stage."""
    from dataclasses import replace

    from tunesmith.train.loop import train_loop

    phase = prepared.warmup
    if phase is None or (phase.epochs == 0 and phase.leave is None):
        return None
    if phase.epochs == 0:  # nothing to train, but the stage's leave still decides (e.g. a head fitted in closed form)
        import time

        tic = time.perf_counter()
        phase.enter(prepared.model)
        final = bool(phase.leave(prepared.model))
        return _stage_record(phase, cfg, final, 0, 0, None, time.perf_counter() - tic)
    folder = run_dir / phase.name
    folder.mkdir(exist_ok=True)
    phase.enter(prepared.model)
    view = replace(prepared, encoded=phase.encoded, collate=phase.collate, eval_collate=phase.eval_collate)
    loss = phase.loss or prepared.loss or task.loss  # the stage's, else this run's (e.g. class-weighted)
    evaluate = phase.evaluate or (lambda model: task.validate(cfg, data, view, model, accelerator))
    lengths = phase.lengths or [1] * len(phase.encoded["train"])
    result = train_loop(loss, prepared.model, phase.encoded["train"], lengths, phase.collate, evaluate, cfg.train,
                        phase.epochs, phase.learning_rate, folder, accelerator, resume=resuming)
    final = False
    if phase.leave is not None:
        final = bool(phase.leave(prepared.model))
    else:
        for param in prepared.model.parameters():
            param.requires_grad_(True)
    return _stage_record(phase, cfg, final, result.epochs_completed, result.global_step, result.best_metric,
                         result.train_seconds)


def _length_note(model, resolved: dict) -> str:
    """What the token limit does to the training texts, for the audit's length check."""
    cut, limit = resolved["truncated_share"], resolved["max_length"]
    if resolved["long_text"] != "windows":
        return f"{cut:.1%} of training texts exceed max_length {limit} tokens and are truncated"
    return (f"{resolved['windowed_share']:.1%} of training texts exceed max_length {limit} tokens and are read as "
            f"up to {model.max_windows} windows sharing {resolved['window_overlap']} tokens; {cut:.1%} are longer "
            "still and are cut after the last window")


def _stage_record(phase, cfg, final: bool, epochs: int, global_step: int, best, seconds: float) -> dict:
    """results.json's record of a warm-up stage."""
    return {"phase": phase.name, "final": final, "epochs": epochs, "learning_rate": phase.learning_rate,
            "global_step": global_step, "best_validation_" + cfg.train.metric_for_best: best,
            "train_seconds": round(seconds, 2), **({"outcome": phase.outcome} if phase.outcome else {})}


def _choose_method(cfg, task, data, run_dir: Path, resuming: bool) -> tuple[RunConfig, dict | None]:
    """Resolve train.method auto from the (cleaned) training data; a resumed run keeps the choice it
    made (its config.yaml holds the chosen method, data_report.json the reason)."""
    if resuming:
        report = run_dir / "data_report.json"
        return cfg, json.loads(report.read_text()).get("method_choice") if report.is_file() else None
    if cfg.train.method != "auto":
        return cfg, None
    choose = getattr(task, "choose_method", None)
    choice = choose(cfg, data) if choose else {"method": "full", "reason": f"task {cfg.task}: full fine-tuning "
                                                                            "(auto chooses by data size for "
                                                                            "text classification only)"}
    cfg = cfg.model_copy(deep=True)
    cfg.train.method = choice["method"]
    for name, value in choice.get("contrastive", {}).items():  # the choice's stage settings, unless the config set them
        if name not in cfg.train.contrastive.model_fields_set:
            setattr(cfg.train.contrastive, name, value)
    return cfg, choice


def _describe(run_dir: Path, cfg, task, data, splits: dict, accelerator, resolved: dict) -> None:
    """splits.json, environment.json and data_report.json (with what the task derived from the data)."""
    atomic_write_json(run_dir / "splits.json", splits)
    atomic_write_json(run_dir / "environment.json", {**environment(accelerator), "seed": cfg.train.seed})
    atomic_write_json(run_dir / "data_report.json", {**data.data_report, "labels": data.labels,
                                                     "split_rows": {k: len(v) for k, v in data.splits.items()},
                                                     "train_profile": task.profile(data), **resolved})


def _execute(cfg, task, data, run_dir: Path, accelerator, resuming: bool, callbacks, memo: Memo) -> Run:
    from accelerate.utils import set_seed

    from tunesmith.evaluate.metrics import headline
    from tunesmith.models import quiet_hf
    from tunesmith.train.loop import LoopResult, train_loop

    quiet_hf()
    main = accelerator.is_main_process
    if main:
        _mark(run_dir, "running")
        if not resuming:
            save_config(cfg, run_dir / "config.yaml")  # replaced by the resolved config below
    data, splits, audit_report = _audit(cfg, task, data, run_dir, main, resuming, memo)
    if hasattr(task, "fit"):  # trains outside the torch loop (gradient boosting): no prepare, no train_loop
        return _fit(cfg, task, data, splits, run_dir, accelerator, callbacks)
    cfg, method_choice = _choose_method(cfg, task, data, run_dir, resuming)
    n_train = len(data.splits["train"])
    if hasattr(task, "method_defaults") and not resuming:  # e.g. text full fine-tuning's batch, rate and epochs
        cfg = task.method_defaults(cfg, n_train)
    epochs = cfg.train.epochs or default_epochs(n_train)
    lr = cfg.train.learning_rate or getattr(task, "default_lr", DEFAULT_LR)[cfg.train.method]
    set_seed(cfg.train.seed)
    prepared = task.prepare(cfg, data, memo)
    resolved = cfg.model_copy(deep=True)
    resolved.train.epochs, resolved.train.learning_rate = epochs, lr
    resolved.model.max_length = prepared.resolved["max_length"]
    for name in ("long_text", "window_overlap"):  # how text runs read long texts: predict reads them the same
        if name in prepared.resolved:
            setattr(resolved.model, name, prepared.resolved[name])
    if main and audit_report is not None and "truncated_share" in prepared.resolved:
        # the model's token limit is known only now: add what it truncates to the length check
        lengths = next(f for f in audit_report["findings"] if f["check"] == "lengths")
        lengths["truncated_share"] = prepared.resolved["truncated_share"]
        lengths["message"] += "; " + _length_note(resolved.model, prepared.resolved)
        atomic_write_json(run_dir / "audit.json", audit_report)
    if main and audit_report is not None and prepared.resolved.get("audit_findings"):
        # checks that need the tokenizer (e.g. conversations longer than the context)
        audit_report["findings"] += prepared.resolved["audit_findings"]
        atomic_write_json(run_dir / "audit.json", audit_report)
    if main and not resuming:
        save_config(resolved, run_dir / "config.yaml")
        _describe(run_dir, cfg, task, data, splits, accelerator, {
            **prepared.resolved, **({"method_choice": method_choice} if method_choice else {})})
    accelerator.wait_for_everyone()

    warmup = _warmup(cfg, task, data, prepared, run_dir, accelerator, resuming)
    if method_choice and warmup and warmup.get("outcome", {}).get("reason"):  # e.g. probe vs contrastive body
        method_choice = {**method_choice, "reason": f"{method_choice['reason']}; then {warmup['outcome']['reason']}"}
    loss = prepared.loss or task.loss  # this run's loss (e.g. class-weighted), else the task's
    if warmup and warmup["final"]:  # the warm-up stage finished the model: no main stage
        epochs, result = 0, LoopResult(global_step=0, epochs_completed=0, best_step=None, best_metric=None,
                                       stopped_early=False, train_seconds=0.0, train_samples=0)
        if main:
            atomic_write_text(run_dir / "metrics.jsonl", "")
    else:
        result = train_loop(loss, prepared.model, prepared.encoded["train"], prepared.lengths, prepared.collate,
                            lambda model: task.validate(cfg, data, prepared, model, accelerator), cfg.train, epochs,
                            lr, run_dir, accelerator, resume=resuming, callbacks=callbacks,
                            param_groups=prepared.param_groups)
    training = {**({"warmup": warmup} if warmup else {}), **({"method_choice": method_choice} if method_choice else {}),
                "global_step": result.global_step, "epochs_completed": result.epochs_completed,
                "epochs_planned": epochs, "best_step": result.best_step,
                "best_validation_" + cfg.train.metric_for_best: result.best_metric,
                "stopped_early": result.stopped_early, "train_seconds": round(result.train_seconds, 2),
                "train_samples_per_second": round(result.samples_per_second, 2) if result.train_samples else None,
                **({"validation_held_out": False} if warmup and warmup["final"] else {})}
    # every process takes part (predictions are gathered); only the main one writes
    results = task.finish(cfg, data, prepared, accelerator, training, run_dir)
    if main:
        _mark(run_dir, "completed", **({"test": headline(results["test"])} if "test" in results else {}))
    accelerator.wait_for_everyone()
    return Run(run_dir, resolved, "completed", results)


def _fit(cfg, task, data, splits: dict, run_dir: Path, accelerator, callbacks) -> Run:
    """A task that trains itself: `task.fit(cfg, data, run_dir, callbacks) -> training dict`, then its finish."""
    from tunesmith.evaluate.metrics import headline

    _describe(run_dir, cfg, task, data, splits, accelerator, {})
    training = task.fit(cfg, data, run_dir, callbacks)
    results = task.finish(cfg, data, None, accelerator, training, run_dir)
    _mark(run_dir, "completed", **({"test": headline(results["test"])} if "test" in results else {}))
    return Run(run_dir, cfg, "completed", results)


# The steps another entry point that writes an ordinary run folder (tunesmith.federate) shares with fine_tune.
make_accelerator = _accelerator
audit_run = _audit
describe_run = _describe
mark_status = _mark
folder_slug = _slug
