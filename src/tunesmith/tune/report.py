"""The study's report.html: history, importances, slices, best configuration and the gain over defaults."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from tunesmith.evaluate.report import CSS, embed_png, html_table
from tunesmith.io import atomic_write_text


def gain_over_defaults(study, metric: str) -> dict | None:
    """Paired bootstrap on validation between the best trial and trial 0 (the configuration as written)."""
    import optuna

    from tunesmith.evaluate.stats import accuracy, macro_f1, paired_bootstrap

    default = next((tr for tr in study.trials if tr.user_attrs.get("defaults")), None)
    best = study.best_trial
    if default is None:
        return {"available": False, "why": "no trial ran the configuration as written (for the grid sampler it "
                                          "must be a point of the grid)"}
    if default.state != optuna.trial.TrialState.COMPLETE:
        return {"available": False, "why": "the default configuration's trial did not complete (pruned or failed)"}
    if default.number == best.number:
        return {"available": True, "difference": 0.0, "verdict": "the default configuration was the best one found"}
    a = pd.read_csv(Path(best.user_attrs["run_dir"]) / "validation_predictions.csv")
    b = pd.read_csv(Path(default.user_attrs["run_dir"]) / "validation_predictions.csv")
    labels = sorted(set(a["label"]) | set(a["predicted"]) | set(b["predicted"]))
    index = {l: i for i, l in enumerate(labels)}
    y = a["label"].map(index).to_numpy()
    pa, pb = a["predicted"].map(index).to_numpy(), b["predicted"].map(index).to_numpy()
    fn = accuracy if metric != "macro_f1" else (lambda yy, pp: macro_f1(yy, pp, len(labels)))
    res = paired_bootstrap(y, pa, pb, fn)
    return {"available": True, "metric": "accuracy" if metric != "macro_f1" else "macro_f1",
            "best_trial": best.number, "default_trial": default.number, **res}


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
    beat = bool(gain and gain.get("available") and gain.get("verdict") == "better, and not by chance")
    outcome = ("The search beat the plain defaults on validation, and not by chance." if beat else
               "The search could not show that it beat the plain defaults on validation "
               f"({html.escape((gain or {}).get('verdict') or (gain or {}).get('why', 'no comparison'))}).")
    items = "".join(f"<li>{html.escape(r)}</li>" for r in auto["reasons"])
    return ["<h2>AutoML: what was chosen and why</h2>", f"<ul>{items}</ul>", f"<p><b>{outcome}</b></p>"]


def write_study_report(study, study_dir: Path, summary: dict) -> Path:
    import optuna
    from optuna.visualization import matplotlib as ov

    gain = gain_over_defaults(study, summary["metric"])
    summary["gain_over_defaults"] = gain
    rows = [[tr.number, tr.state.name.lower(), "" if tr.value is None else round(tr.value, 4),
             len(tr.intermediate_values), ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in tr.params.items()),
             "defaults" if tr.user_attrs.get("defaults") else ""] for tr in study.trials]
    if gain and gain.get("available") and "low" in gain:
        gain_text = (f"Best trial {gain['best_trial']} vs the configuration as written (trial {gain['default_trial']}), "
                     f"validation {gain['metric']}: {gain['difference']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}], "
                     f"paired bootstrap p = {gain['p_value']:.3f}: <b>{html.escape(gain['verdict'])}</b>.")
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
        + (f"Final run with test scores: <code>{html.escape(summary['final_run'])}</code> "
           "(its own report.html compares it with the baselines on the test split).</p>" if summary["final_run"] else "</p>"),
        "<h2>Gain over the default configuration</h2>", f"<p>{gain_text}</p>",
        "<h2>Optimisation history</h2>", _plot(ov.plot_optimization_history, study),
        "<h2>Parameter importances</h2>",
        _plot(ov.plot_param_importances, study) if len(complete) >= 3 else "<p class='muted'>needs 3 completed trials</p>",
        "<h2>Slice plot</h2>", _plot(ov.plot_slice, study),
        "<h2>Trials</h2>", html_table(["trial", "state", "value", "evaluations", "parameters", ""], rows),
    ]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tunesmith study</title><style>{CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
    out = study_dir / "report.html"
    atomic_write_text(out, page)
    return out
