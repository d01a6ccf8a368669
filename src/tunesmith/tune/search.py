"""`tune(config)`: a budgeted, pruned Optuna study whose trials are ordinary run folders.

Trials never touch the test split (`eval.test=false`); when the budget is spent, the best
configuration is trained once more as the study's final run, which scores test, the baselines
and intervals. Trials report validation scores after every evaluation, so pruners can stop them.
Any number of workers may run the same command against one storage: they share the trials.
A trial that fails on bad data or config stops the study at once (every trial would fail alike);
other failures count against the budget, and `tune.max_consecutive_failures` in a row end it.
"""
from __future__ import annotations

import itertools
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tunesmith.config import RunConfig, TuneConfig, build_config, load_config, plain_name
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json
from tunesmith.memo import Memo
from tunesmith.redact import mask_url


@dataclass
class Study:
    path: Path
    name: str
    storage: str  # as given, credentials included, to reopen the study; written and printed only masked
    best: dict
    final_run: Path | None
    summary: dict


def parse_duration(text: str | None) -> float | None:
    """'90s', '20m', '2h' or a number of seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise UserError(f"tune.timeout = {text!r}: expected a duration such as 90s, 20m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _sampler(cfg: RunConfig):
    import optuna

    from tunesmith.tune.space import grid

    t = cfg.tune
    if t.sampler == "grid":
        return optuna.samplers.GridSampler(grid(t.space), seed=t.seed)
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=t.seed)
    # Optuna's 10 random start-up trials would spend all of a small budget before TPE models anything
    startup = t.startup_trials or (min(10, max(3, t.n_trials // 4)) if t.n_trials else 10)
    return optuna.samplers.TPESampler(seed=t.seed, n_startup_trials=startup)


def _pruner(cfg: RunConfig, max_evals: int):
    """Pruners judge a trial only after `prune_after` evaluations (default: half the planned ones)."""
    import optuna

    first = min(cfg.tune.prune_after or max(1, -(-max_evals // 2)), max(1, max_evals))
    return {"none": lambda: optuna.pruners.NopPruner(),
            "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=first - 1),
            "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=first, max_resource=max(first, max_evals),
                                                                reduction_factor=3)}[cfg.tune.pruner]()


def _storage(url: str):
    import warnings

    import optuna

    # heartbeats let a restarted worker fail the trials a killed worker left running
    warnings.filterwarnings("ignore", message=".*heartbeat_interval.*", category=optuna.exceptions.ExperimentalWarning)

    if url.startswith("sqlite"):
        # Several workers write one SQLite file: wait for locks instead of failing at once.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}},
                                          heartbeat_interval=30, grace_period=120)
    return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)


def _open_study(name: str, url: str, direction: str, sampler, pruner):
    import optuna

    for attempt in range(5):  # workers starting together race to create the schema and the study
        try:
            return optuna.create_study(study_name=name, storage=_storage(url), direction=direction, sampler=sampler,
                                       pruner=pruner, load_if_exists=True)
        except Exception as err:  # noqa: BLE001 - IntegrityError from the race; the next attempt loads it
            problem = _storage_problem(err)
            if problem is not None:
                raise UserError(f"tune.storage = {mask_url(url)!r}: {problem}") from None
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)


def _storage_problem(err: Exception) -> str | None:
    """What is wrong with the storage URL, for errors that a retry cannot mend; None for the others
    (the schema or study creation race between workers starting together)."""
    import sqlalchemy.exc as sa

    example = "expected an SQLAlchemy URL such as sqlite:///study.db or postgresql://user@host/db"
    if isinstance(err, sa.NoSuchModuleError):
        return f"unknown database kind ({str(err).splitlines()[0]}); {example}"
    if isinstance(err, sa.ArgumentError):
        return f"not a database URL; {example}"
    if isinstance(err, ImportError):  # optuna re-raises the driver's ModuleNotFoundError as its cause
        missing = getattr(err.__cause__, "name", None) or "its driver"
        return f"the database driver is not installed (no module {missing!r}); install the package that " \
               "provides it (e.g. psycopg for postgresql)"
    if isinstance(err, (sa.OperationalError, sa.InterfaceError)):
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        reason = reason[0] if reason else type(err).__name__
        if "already exists" in reason:  # another worker created the schema first
            return None
        return f"cannot open the database: {reason}"
    return None


def tune(config: RunConfig | str | Path, overrides: Sequence[str] = (), n_trials: int | None = None,
         timeout: str | None = None, storage: str | None = None, study_name: str | None = None,
         final_run: bool = True) -> Study:
    """Run (or join, or resume) a study; returns the best configuration and the final run."""
    import optuna

    from tunesmith.run import fine_tune
    from tunesmith.tune.space import check_space, overrides as to_overrides, suggest

    base = config if isinstance(config, RunConfig) else load_config(config, list(overrides))
    if isinstance(config, RunConfig) and overrides:
        base = build_config(config.model_dump(mode="json", exclude_unset=True), list(overrides))
    from tunesmith.tasks import configure

    # The study's own settings take the task's defaults (e.g. sft: tune.metric loss); trials and the final run
    # start from the fields the user set, so fine_tune resolves each of them exactly as train would.
    settings = configure(base.model_copy(deep=True))
    written = base.model_dump(mode="json", exclude_unset=True)
    t = settings.tune
    if not t.space:
        raise UserError("tune.space is empty: list the config keys to search, e.g. train.learning_rate: "
                        "{type: float, low: 1e-5, high: 1e-3, log: true}")
    check_space(t.space)
    if study_name is not None:
        plain_name(study_name, "--study")  # the study folder must stay inside output_dir
    name = study_name or t.study_name or f"{base.run_name or base.task}-study"
    study_dir = Path(base.output_dir) / name
    study_dir.mkdir(parents=True, exist_ok=True)
    url = storage or t.storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"
    budget = n_trials if n_trials is not None else t.n_trials
    seconds = parse_duration(timeout if timeout is not None else t.timeout)
    if not budget and not seconds:
        raise UserError("tune: give a budget: tune.n_trials and/or tune.timeout")
    direction = "minimize" if t.metric == "loss" else "maximize"
    max_evals = base.train.epochs or 5
    # ERROR: Optuna would log each failed trial with its traceback; the failures are reported below, one line each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _open_study(name, url, direction, _sampler(settings), _pruner(settings, max_evals))
    defaults = _defaults(written, t)
    memo = Memo()  # data, audit, tokens and frozen features, shared by this worker's trials
    if not study.trials and defaults is not None and t.sampler != "grid":
        # trial 0 is the configuration the user wrote: the search must say what it bought over it
        study.enqueue_trial(defaults, user_attrs={"defaults": True}, skip_if_exists=True)

    failures: dict[str, Any] = {"in_a_row": 0, "last": None}  # this worker's trials

    def objective(trial) -> float:
        as_written = bool(trial.user_attrs.get("defaults"))
        # trial 0 fixes only the searched keys the user wrote: the others stay unset, for fine_tune to fill as
        # train does (e.g. full fine-tuning's batch and rate), and are recorded once it has resolved them
        values = suggest(trial, {k: s for k, s in t.space.items() if k in defaults} if as_written else t.space)
        if defaults is not None and t.sampler == "grid" and _same(values, defaults):
            trial.set_user_attr("defaults", True)  # the grid runs the written config as one of its points
        trial_cfg = build_config(written, [
            *to_overrides(values), f"output_dir={study_dir}", f"run_name=trial-{trial.number:04d}",
            # a trial's score must be held out: no test, and no head refitted on the validation rows it is scored on
            f"train.metric_for_best={t.metric}", "eval.test=false", "train.contrastive.refit_head=false"])

        def report(state: dict) -> None:
            evals = state.get("evals", 0)
            if evals and evals != report.last:
                report.last = evals
                trial.report(state["last_eval"][t.metric], evals)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after evaluation {evals}")

        report.last = 0
        run_dir = study_dir / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            run = fine_tune(trial_cfg, callbacks=[report], memo=memo)
            value = run.results["training"][f"best_validation_{t.metric}"]
            if value is None or value != value:  # None or NaN: Optuna would fail the trial without a reason
                raise RuntimeError(f"the trial ended without a validation {t.metric} (got {value})")
            if as_written:
                trial.set_user_attr("resolved", _resolved(run.config, t, values))
        except optuna.TrialPruned:
            atomic_write_json(run_dir / "status.json", {"status": "pruned"})
            raise
        except UserError:
            raise  # bad data or config: every trial would fail the same way, so the study stops here
        except Exception as err:
            failures["last"] = f"trial {trial.number}: {type(err).__name__}: {_first_line(err)} (see {run_dir})"
            trial.set_user_attr("error", failures["last"])
            print(f"warning: {failures['last']}", file=sys.stderr)
            raise _TrialFailed(failures["last"]) from err
        return value

    def count_failures(study, trial) -> None:
        failures["in_a_row"] = failures["in_a_row"] + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        if failures["in_a_row"] >= t.max_consecutive_failures:
            study.stop()

    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    callbacks = [count_failures] + ([optuna.study.MaxTrialsCallback(budget, states=counted)] if budget else [])
    finished = sum(tr.state in counted for tr in study.trials)
    if not budget or finished < budget:  # MaxTrialsCallback only stops after a trial, so check first
        # a UserError is not caught: Optuna marks that trial failed and re-raises it
        study.optimize(objective, timeout=seconds, callbacks=callbacks, catch=(_TrialFailed,))
    if failures["in_a_row"] >= t.max_consecutive_failures:
        raise UserError(f"study {name}: {failures['in_a_row']} trials in a row failed "
                        f"(tune.max_consecutive_failures = {t.max_consecutive_failures}); the last, {failures['last']}")
    return _finish(study, written, t, study_dir, url, final_run, memo, failures["last"])


class _TrialFailed(Exception):
    """A trial failed for a reason other than bad data or config: it counts against the budget."""


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(v - b[k]) < 1e-12 if isinstance(v, float) else v == b[k]
                                        for k, v in a.items())


def _value(data: dict, key: str) -> Any:
    """The value at a dotted key of a config mapping; None where the mapping lacks it."""
    node: Any = data
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _applies(spec, values: dict) -> bool:
    """Whether a parameter's `when` conditions hold for the values known so far."""
    return not spec.when or all(values.get(k) == v for k, v in spec.when.items())


def _defaults(written: dict, t: TuneConfig) -> dict[str, Any] | None:
    """The values the user wrote for the searched keys (where they lie in the space); a key left unset is
    absent, for fine_tune to fill as train would. None when the grid sampler cannot take them: it needs every
    parameter, on the grid."""
    from tunesmith.tune.space import grid

    out = {}
    for key, spec in t.space.items():
        node = _value(written, key)
        if node is None or not _applies(spec, out):
            continue
        if spec.type == "categorical" and node in spec.choices:
            out[key] = node
        elif spec.type != "categorical" and spec.low <= node <= spec.high:
            out[key] = node
    if t.sampler == "grid":
        points = grid(t.space)
        if set(out) != set(points) or not any(_same(out, dict(zip(points, combo)))
                                              for combo in itertools.product(*points.values())):
            return None
    return out


def _resolved(cfg: RunConfig, t: TuneConfig, values: dict) -> dict[str, Any]:
    """What the trial's run resolved for the searched keys that trial 0 left to it (for the report)."""
    data, out = cfg.model_dump(mode="json"), dict(values)
    for key, spec in t.space.items():
        if key not in values and _applies(spec, out):
            out[key] = _value(data, key)
    return {k: v for k, v in out.items() if k not in values}


def _finish(study, written: dict, t: TuneConfig, study_dir: Path, url: str, final_run: bool, memo: Memo,
            last_error: str | None = None) -> Study:
    import optuna

    from tunesmith.run import fine_tune
    from tunesmith.tune.report import write_study_report
    from tunesmith.tune.space import overrides as to_overrides

    done = [tr for tr in study.trials if tr.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        where = f"the last failure, {last_error}" if last_error else f"see the trial folders in {study_dir}"
        raise UserError(f"study {study.study_name}: no trial completed; {where}")
    best = study.best_trial
    final = None
    if final_run:
        # the best trial's searched values on top of what the user wrote: fine_tune fills the rest as train does
        final_cfg = build_config(written, [
            *to_overrides(best.params), f"output_dir={study_dir}", "run_name=final",
            f"train.metric_for_best={t.metric}"])
        if (study_dir / "final" / "status.json").is_file():
            final = study_dir / "final"
        else:
            final = fine_tune(final_cfg, memo=memo).path
    summary = {
        "study": study.study_name, "storage": mask_url(url),  # credentials never reach study.json
        "metric": t.metric, "direction": study.direction.name, "sampler": t.sampler, "pruner": t.pruner,
        "trials": {s.name.lower(): sum(1 for tr in study.trials if tr.state == s) for s in optuna.trial.TrialState},
        "best": {"number": best.number, "value": best.value,
                 "params": {**best.user_attrs.get("resolved", {}), **best.params},
                 "run_dir": best.user_attrs.get("run_dir")},
        "trial_evaluations": sum(len(tr.intermediate_values) for tr in study.trials),
        "final_run": str(final) if final else None,
        "shared": dict(memo.hits),  # runs that reused this worker's data, audit, tokens, features
    }
    write_study_report(study, study_dir, summary)  # adds the gain over the default configuration
    atomic_write_json(study_dir / "study.json", summary)
    return Study(study_dir, study.study_name, url, summary["best"], final, summary)
