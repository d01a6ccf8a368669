"""The study's report.html: history, importances, slices, best configuration and the gain over defaults."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.evaluate.report import CSS, embed_png, html_table
from tunesmith.io import atomic_write_text


SELECTION_NOTE = ("The best trial was chosen on this same validation split among {n} completed trials, so its "
                  "advantage here is biased upward: the interval and p-value do not allow for that choice. A gain "
                  "that is not distinguishable even here means the search found no clear gain; a better score here "
                  "is only suggestive. The final run's test scores against the baselines are unbiased.")


def gain_over_defaults(study, metric: str) -> dict:
    """The best trial against trial 0 (the configuration as written) on validation, paired by example:
    predictions for classification (accuracy or macro-F1), response losses for SFT. The search picked
    the best trial on that split, so the comparison is selection-biased and says so."""
    import optuna

    default = next((tr for tr in study.trials if tr.user_attrs.get("defaults")), None)
    best = study.best_trial
    if default is None:
        return {"available": False, "why": "no trial ran the configuration as written (for the grid sampler it "
                                          "must be a point of the grid)"}
    if default.state != optuna.trial.TrialState.COMPLETE:
        return {"available": False, "why": "the default configuration's trial did not complete (pruned or failed)"}
    if default.number == best.number:
        return {"available": True, "difference": 0.0, "outcome": "same",
                "verdict": "the default configuration was the best one found"}
    a, b = Path(best.user_attrs["run_dir"]), Path(default.user_attrs["run_dir"])
    if (a / "validation_losses.csv").is_file() and (b / "validation_losses.csv").is_file():
        res = _loss_gain(a / "validation_losses.csv", b / "validation_losses.csv")
    elif (a / "validation_predictions.csv").is_file() and (b / "validation_predictions.csv").is_file():
        res = _prediction_gain(a / "validation_predictions.csv", b / "validation_predictions.csv", metric)
    else:
        return {"available": False, "why": f"trials {best.number} and {default.number} left no per-example "
                                          "validation scores here (validation_predictions.csv or "
                                          "validation_losses.csv; a worker on another machine keeps its own)"}
    n = sum(tr.state == optuna.trial.TrialState.COMPLETE for tr in study.trials)
    outcome = {"better, and not by chance": "better", "worse, and not by chance": "worse"}.get(res.pop("verdict"),
                                                                                                "not distinguishable")
    verdict = {"better": f"better on validation, but validation chose the best of {n} trials: an optimistic "
                         "estimate, not evidence of a real gain",
               "worse": "worse on this comparison's measure, although chosen on validation " + metric,
               "not distinguishable": f"not distinguishable even on the validation split that chose it among {n} "
                                      "trials: no evidence that the search helped"}[outcome]
    return {"available": True, **res, "best_trial": best.number, "default_trial": default.number,
            "split": "validation", "selection_biased": True, "trials_compared": n, "outcome": outcome,
            "verdict": verdict, "supports": SELECTION_NOTE.format(n=n)}


def _prediction_gain(best_csv: Path, default_csv: Path, metric: str) -> dict:
    from tunesmith.evaluate.stats import accuracy, macro_f1, paired_bootstrap

    a, b = pd.read_csv(best_csv), pd.read_csv(default_csv)
    labels = sorted(set(a["label"]) | set(a["predicted"]) | set(b["predicted"]))
    index = {l: i for i, l in enumerate(labels)}
    y = a["label"].map(index).to_numpy()
    pa, pb = a["predicted"].map(index).to_numpy(), b["predicted"].map(index).to_numpy()
    fn = accuracy if metric != "macro_f1" else (lambda yy, pp: macro_f1(yy, pp, len(labels)))
    return {"metric": "accuracy" if metric != "macro_f1" else "macro_f1", **paired_bootstrap(y, pa, pb, fn)}


def _loss_gain(best_csv: Path, default_csv: Path) -> dict:
    """Response loss reduction default - best (positive: the best trial is better), paired by conversation."""
    from tunesmith.evaluate.generation import compare_losses

    both = pd.read_csv(best_csv).merge(pd.read_csv(default_csv), on="row", suffixes=("_best", "_default"))
    res = compare_losses((both["loss_sum_default"].to_numpy(), both["tokens_default"].to_numpy()),
                         (both["loss_sum_best"].to_numpy(), both["tokens_best"].to_numpy()), 1000, 0.95, 0)
    return {"metric": "response loss reduction", "conversations": int(len(both)), **res}


def _plot(fn, study) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ax = fn(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few trials for this plot
            return f"<p class='muted'>not available: {html.escape(str(err).splitlines()[0])}</p>"
    fig = np.ravel(ax)[0].figure if isinstance(ax, np.ndarray) else ax.figure
    fig.set_size_inches(9, 4)
    return embed_png(fig)


def _auto_section(summary: dict, gain: dict | None) -> list[str]:
    auto = summary.get("auto")
    if not auto:
        return []
    gain = gain or {}
    if gain.get("outcome") == "better":
        outcome = ("The search scored better than the plain defaults on validation, but validation is the split it "
                   "selected on: an optimistic estimate, not proof of a real gain.")
    elif gain.get("outcome") == "same":
        outcome = "The plain defaults were the best configuration the search found."
    else:
        outcome = ("The search could not show that it beat the plain defaults, even on the validation split it "
                   f"selected on ({html.escape(gain.get('verdict') or gain.get('why', 'no comparison'))}).")
    items = "".join(f"<li>{html.escape(r)}</li>" for r in auto["reasons"])
    return ["<h2>AutoML: what was chosen and why</h2>", f"<ul>{items}</ul>", f"<p><b>{outcome}</b></p>"]


def _settings(trial) -> dict:
    """A trial's searched values; trial 0 with what its run resolved for the keys the user left unset."""
    return {**trial.user_attrs.get("resolved", {}), **trial.params}


def write_study_report(study, study_dir: Path, summary: dict) -> Path:
    import optuna
    from optuna.visualization import matplotlib as ov

    gain = gain_over_defaults(study, summary["metric"])
    summary["gain_over_defaults"] = gain
    rows = [[tr.number, tr.state.name.lower(), "" if tr.value is None else round(tr.value, 4),
             len(tr.intermediate_values), ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in _settings(tr).items()),
             "defaults" if tr.user_attrs.get("defaults") else ""] for tr in study.trials]
    if gain and gain.get("available") and "low" in gain:
        gain_text = (f"Best trial {gain['best_trial']} vs the configuration as written "
                     f"(trial {gain['default_trial']}), validation {gain['metric']}: {gain['difference']:+.4f} "
                     f"[{gain['low']:+.4f}, {gain['high']:+.4f}], "
                     f"paired bootstrap p = {gain['p_value']:.3f}: <b>{html.escape(gain['verdict'])}</b>.</p>"
                     f"<p class='muted'>{html.escape(gain['supports'])}")
    else:
        gain_text = html.escape((gain or {}).get("verdict") or (gain or {}).get("why", ""))
    complete = [tr for tr in study.trials if tr.state == optuna.trial.TrialState.COMPLETE]
    parts = [
        f"<h1>tunesmith study: {html.escape(summary['study'])}</h1>",
        f"<p>sampler <b>{summary['sampler']}</b> · pruner <b>{summary['pruner']}</b> · objective validation "
        f"<b>{summary['metric']}</b> ({summary['direction'].lower()}) · trials: "
        + ", ".join(f"{n} {state}" for state, n in summary["trials"].items() if n) + "</p>",
        *_auto_section(summary, gain),
        "<h2>Best configuration</h2>",
        html_table(["parameter", "value"], [[k, v] for k, v in summary["best"]["params"].items()]),
        f"<p>validation {summary['metric']} {summary['best']['value']:.4f} (trial {summary['best']['number']}). "
        + (f"Final run with test scores: <code>{html.escape(summary['final_run'])}</code> (its own "
           "report.html compares it with the baselines on the test split).</p>" if summary["final_run"] else "</p>"),
        "<h2>Gain over the default configuration</h2>", f"<p>{gain_text}</p>",
        "<h2>Optimisation history</h2>", _plot(ov.plot_optimization_history, study),
        "<h2>Parameter importances</h2>",
        _plot(ov.plot_param_importances, study) if len(complete) >= 3
        else "<p class='muted'>needs 3 completed trials</p>",
        "<h2>Slice plot</h2>", _plot(ov.plot_slice, study),
        "<h2>Trials</h2>", html_table(["trial", "state", "value", "evaluations", "parameters", ""], rows),
    ]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tunesmith study</title><style>{CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
    out = study_dir / "report.html"
    atomic_write_text(out, page)
    return out
