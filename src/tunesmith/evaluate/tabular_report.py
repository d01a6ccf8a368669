"""report.html sections and the model card of a tabular run, written from its results.json."""
from __future__ import annotations

import html
import json
from pathlib import Path

import yaml

from tunesmith.evaluate.report import audit_section, embed_png, html_table
from tunesmith.io import atomic_write_text


def _ci(m: dict, key: str) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    ci = m.get("ci", {}).get(key) or {}
    if ci.get("low") is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"


def _columns(results: dict) -> tuple[list[str], callable]:
    """Header and row cells of the comparison table for this kind of target."""
    if results["headline"] == "pr_auc":
        costly = bool(results["decision"].get("costs"))
        head = ["PR-AUC [95% CI]", "ROC-AUC [95% CI]", "recall @ 1% FPR", "recall @ 0.1% FPR", "precision @ top 1%",
                "Brier", *(["expected cost / row [95% CI]"] if costly else [])]

        def cells(m: dict) -> list:
            return [_ci(m, "pr_auc"), _ci(m, "roc_auc"), m["recall_at_fpr"]["0.01"]["recall"],
                    m["recall_at_fpr"]["0.001"]["recall"], m["precision_at_top"]["0.01"]["precision"], m["brier"],
                    *([_ci(m, "expected_cost")] if costly else [])]
        return head, cells
    if results["headline"] == "rmse":
        return ["RMSE [95% CI]", "MAE [95% CI]", "R² [95% CI]"], lambda m: [_ci(m, "rmse"), _ci(m, "mae"), _ci(m, "r2")]
    return ["accuracy [95% CI]", "macro-F1 [95% CI]", "log loss"], \
        lambda m: [_ci(m, "accuracy"), _ci(m, "macro_f1"), m["loss"]]


def _pair_text(name: str, pair: dict) -> str:
    key = next(iter(pair))
    p = pair[key]
    return (f"{key.replace('_', ' ')} {p['difference']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}] vs "
            f"{name.replace('_', ' ')}, paired bootstrap p = {p['p_value']:.3f}: {p['verdict']}")


def _verdict(comp: dict) -> str:
    """The paired comparison with the best baseline, in words."""
    return _pair_text(comp["best_baseline"], {k: v for k, v in comp.items() if k not in ("best_baseline", "metric")})


def comparison_rows(results: dict) -> tuple[list[str], list[list]]:
    head, cells = _columns(results)
    rows = [[f"{results['model']} (this run)", *cells(results["test"]), results["test"]["n"]]]
    rows += [[name.replace("_", " "), *cells(b["test"]), b["test"]["n"]] for name, b in results["baselines"].items()]
    return ["model", *head, "n"], rows


def _decision(results: dict) -> list[str]:
    if results["headline"] != "pr_auc":
        return []
    d, t = results["decision"], results["test"]["decision"]
    why = (f"chosen on validation to minimise {d['costs']['fn']:g} × missed positives + {d['costs']['fp']:g} × false "
           f"alarms (validation cost per row {d['validation_cost_per_row']:.4f}; at 0.5 it would be "
           f"{d['validation_cost_at_0.5']:.4f})" if d.get("costs") else "0.5 (no eval.costs given)")
    parts = [f"<h2>Decision threshold</h2><p>Flag <b>{html.escape(str(results['positive_label']))}</b> when its "
             f"probability ≥ <b>{d['threshold']:.4f}</b>: {why}. <code>tunesmith predict</code> applies it.</p>",
             html_table(["test", "flagged & positive", "false alarms", "missed", "precision", "recall", "FPR"],
                    [["at the threshold", t["tp"], t["fp"], t["fn"], t["precision"], t["recall"], t["fpr"]]])]
    if "expected_cost" in results["test"]:
        parts.append(f"<p>Expected cost on test: {_ci(results['test'], 'expected_cost')} per row. Each baseline's "
                     "expected cost in the table above is at its own threshold, chosen on validation the same way."
                     "</p>")
    return parts


def _warm(results: dict) -> list[str]:
    w = results.get("warm_start")
    if not w:
        return []
    m = w["metric"].replace("_", "-").upper() if w["metric"] == "pr_auc" else w["metric"]
    parts = ["<h2>Warm start: did continuing the source model help?</h2>",
             f"<p>Source run: <code>{html.escape(w['source_run'])}</code>. All three on this run's test split:</p>",
             html_table(["model", m], [["warm-started (source + this data)", w["test"]["warm_start"]],
                                   ["this data only, from scratch", w["test"]["target_only"]],
                                   ["source model only", w["test"]["source_only"]]]),
             f"<p>{html.escape(_pair_text('this data only', w['vs_target_only']))}.<br>"
             f"{html.escape(_pair_text('the source model', w['vs_source_only']))}.</p>"]
    f = w["forgetting"]
    if f["checked"]:
        parts.append(f"<p>Forgetting: on the source run's own test split ({f['rows']} rows) the source model scored "
                     f"{f['source_model']:.4f}, the warm-started one {f['warm_started']:.4f}; "
                     f"{html.escape(_pair_text('the source model', f['change']))}.</p>")
    else:
        parts.append(f"<p class='muted'>Forgetting not checked: {html.escape(f['why'])}.</p>")
    return parts


def _loss_curves(records: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind, name in (("train", "train loss"), ("eval", "validation loss")):
        pts = [r for r in records if r["type"] == kind and r.get("loss") is not None]
        ax.plot([r["step"] for r in pts], [r["loss"] for r in pts], label=name)
    ax.set_xlabel("boosting round"), ax.set_title("loss"), ax.legend()
    return embed_png(fig)


def _calibration(test: dict) -> list[str]:
    if "calibration" not in test:
        return []
    import matplotlib.pyplot as plt

    bins = test["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = max(max(b["predicted"] for b in bins), max(b["observed"] for b in bins), 1e-3)
    ax.plot([0, top], [0, top], "k--", lw=1, label="perfect")
    ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], "o-", label="model")
    ax.set_xlabel("mean predicted probability"), ax.set_ylabel("observed positive rate")
    ax.set_title("calibration (test, equal-count bins)"), ax.legend()
    return ["<h2>Calibration</h2>", f"<p>Brier score {test['brier']:.4f}; expected calibration error "
            f"{test['calibration']['ece']:.4f} over {len(bins)} equal-count bins.</p>", embed_png(fig)]


def tabular_sections(results: dict, run_dir: Path, records: list[dict], training: list[str]) -> list[str]:
    """The body of report.html for a tabular run."""
    head, rows = comparison_rows(results)
    comp = results.get("comparison") or {}
    tr = results["training"]
    parts = [f"<h1>tunesmith run: {html.escape(run_dir.name)}</h1>",
             f"<p>{html.escape(results['task'])} · target <b>{html.escape(results['target'])}</b> · model <b>"
             f"{html.escape(results['model'])}</b> · {len(tr['features'])} features"
             + (f" · positive class <b>{html.escape(str(results['positive_label']))}</b>, prevalence "
                f"{results['test']['prevalence']:.2%} in test" if results.get("positive_label") is not None else "")
             + "</p>",
             "<h2 id='comparison'>Did the model beat simple baselines? (held-out test split)</h2>",
             html_table(head, rows)]
    if comp:
        parts.append(f"<p class='verdict'>Against the best baseline (<b>{html.escape(comp['best_baseline'])}</b>): "
                     f"{html.escape(_verdict(comp))}.</p>")
    parts += [*_decision(results), *_warm(results), *audit_section(run_dir), *training,
              f"<p>{tr['rounds']} boosting rounds kept ({tr['rounds_trained']} trained on this data"
              + (f", after {tr['init_rounds']} from the source model" if tr.get("init_rounds") else "")
              + f"); early stopping {'fired' if tr['stopped_early'] else 'did not fire'}.</p>"
              if tr["rounds"] else "<p>Linear model (no boosting rounds).</p>"]
    if records:
        parts += ["<h3>Learning curves</h3>", _loss_curves(records)]
    parts += _calibration(results["test"])
    if results.get("importance"):
        parts += ["<h2>Feature importance</h2><p>Total split gain, split counts, and the mean absolute contribution "
                  "to the raw score (the library's own pred_contrib: SHAP values for trees).</p>",
                  html_table(["feature", "gain", "splits", "mean |contribution|"],
                         [[r["feature"], r["gain"], r["splits"], r["mean_abs_contribution"]]
                          for r in results["importance"][:25]])]
    if results.get("unseen_categories"):
        parts.append("<p>Test values never seen in training (treated as missing): " + html.escape(
            ", ".join(f"{k}: {v} rows" for k, v in results["unseen_categories"].items())) + "</p>")
    return parts


def write_tabular_card(run_dir: str | Path) -> Path:
    """model/README.md for a tabular run."""
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    splits = json.loads((run_dir / "splits.json").read_text())
    head, rows = comparison_rows(res)
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                      ["| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in r) + " |"
                       for r in rows])
    comp = res.get("comparison") or {}
    verdict = _verdict(comp) if comp else ""
    d = res["decision"]
    decision = (f"Decision threshold {d['threshold']:.4f} for `{res['positive_label']}`, "
                + (f"chosen on validation for costs fn={d['costs']['fn']:g}, fp={d['costs']['fp']:g}"
                   if d.get("costs") else "the default") + "; `tunesmith predict` applies it (model/decision.json)."
                if res.get("positive_label") is not None else "")
    warm = f" (warm-started from `{cfg['tabular']['init_from']}`)" if cfg["tabular"].get("init_from") else ""
    model_file = json.loads((run_dir / "model" / "model_info.json").read_text())["file"]
    card = f"""---
library_name: {res['model'] if res['model'] != 'logistic' else 'scikit-learn'}
pipeline_tag: {res['task']}
tags: [tunesmith, {res['model']}]
---
# {run_dir.name}

Trained by tunesmith: {res['model']} predicting `{res['target']}` from {len(res['training']['features'])} features
of `{cfg['data']['train']}`{warm}.
Files: `{model_file}` (the model in its library's own format), `schema.json` (column kinds, category levels
from training; values never seen in training are treated as missing), `decision.json`.

## Data
- split rows (train / validation / test): {' / '.join(str(splits[s]['rows']) for s in ('train', 'validation', 'test'))}
- split fingerprints: train `{splits['train']['sha256'][:16]}`, test `{splits['test']['sha256'][:16]}`

## Results on the held-out test split (95% bootstrap intervals)
{table}

{verdict}

{decision}

## Intended use and limits
Scores rows like those in the training data. A population, period or product the training rows did not
cover can shift both the scores and the best threshold; re-check on fresh labelled data. The intervals above
describe this test split, not future data.
"""
    out = run_dir / "model" / "README.md"
    atomic_write_text(out, card)
    return out


def summary_lines(res: dict) -> list[str]:
    """What the command line prints after a tabular run: the headline with its interval for the model and each
    baseline, the paired comparison, the decision threshold and expected cost."""
    test, metric = res["test"], res["headline"]
    name = {"pr_auc": "PR-AUC", "rmse": "RMSE", "accuracy": "accuracy"}[metric]
    lines = [f"held-out test split (n={test['n']}" + (f", {test['positives']} positives" if "positives" in test else "")
             + f"), {name} with 95% bootstrap interval:"]
    for label, m in [(f"{res['model']} (this run)", test)] + [(k.replace("_", " "), b["test"])
                                                             for k, b in res["baselines"].items()]:
        extra = f"; recall at 1% FPR {m['recall_at_fpr']['0.01']['recall']:.3f}" if metric == "pr_auc" else ""
        if "expected_cost" in m:  # each at its own threshold, chosen on validation
            extra += f"; cost/row {m['expected_cost']:.4f}"
        lines.append(f"  {label:<28} {_ci(m, metric)}{extra}")
    comp = res.get("comparison") or {}
    if comp:
        lines.append(f"vs best baseline ({comp['best_baseline']}): " + _verdict(comp))
    d = res["decision"]
    if metric == "pr_auc":
        lines.append(f"decision threshold {d['threshold']:.4f} ("
                     + (f"chosen on validation for costs fn={d['costs']['fn']:g}, fp={d['costs']['fp']:g}); expected "
                        f"cost on test {_ci(test, 'expected_cost')} per row" if d.get("costs") else "default)")
                     + f"; test recall {test['decision']['recall']:.3f}, precision {test['decision']['precision']:.3f}")
    w = res.get("warm_start")
    if w:
        lines.append(f"warm start: {w['metric']} warm {w['test']['warm_start']:.4f}, this data only "
                     f"{w['test']['target_only']:.4f}, source only {w['test']['source_only']:.4f}")
        f = w["forgetting"]
        if f["checked"]:
            lines.append(f"source test split: {f['source_model']:.4f} before, {f['warm_started']:.4f} after the "
                         "warm start")
    tr = res["training"]
    lines.append(f"trained {tr['rounds_trained']} rounds in {tr['train_seconds']:.2f} s")
    return lines
