"""The federated part of report.html: is federating worth it versus each silo alone, and how far is it
from pooling the data? Rendered from results.json's `federated` section (written by tunesmith.federate)."""
from __future__ import annotations

import html

from tunesmith.evaluate.report import embed_png, html_table


def _ci(test: dict, key: str) -> str:
    ci = test.get("ci", {}).get(key)
    return f"{test[key]:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]" if ci else f"{test[key]:.4f}"


def _diff(d: dict) -> str:
    return f"{d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] p={d['p_value']:.3f}"


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB"


def federated_sections(results: dict) -> list[str]:
    """Verdict, comparison table, per-round curve, traffic and the silos' label distributions."""
    fed, test = results["federated"], results["test"]
    parts = ["<h2 id='federated'>Federated: worth it versus training alone? how far from pooling?</h2>",
             f"<p>{fed['clients']} silos · partition {html.escape(str(fed['partition']))} · strategy "
             f"{html.escape(fed['strategy'])} · transfer {html.escape(fed['transfer'])} · {fed['rounds']} rounds x "
             f"{fed['local_epochs']} local epochs · fraction per round {fed['fraction_fit']} · global model from "
             f"round {fed['best_round']} (best validation)</p>"]
    comp = fed.get("comparison")
    if comp and "federated" in comp:  # SFT: judged on held-out response loss (federate/compare.judge_losses)
        parts.append(f"<p class='verdict'><b>{html.escape(comp['verdict'])}</b>.</p>")
        parts.append(_loss_table(comp))
    elif comp:
        parts.append(f"<p class='verdict'><b>{html.escape(comp['verdict'])}</b>.</p>")
        rows = [["federated (global model)", _ci(test, "accuracy"), _ci(test, "macro_f1"), "", ""]]
        for name, arm in comp["arms"].items():
            rows.append([f"{name} ({comp['epochs']} epochs{' pooled' if name == 'centralized' else ' alone'})",
                         _ci(arm["test"], "accuracy"), _ci(arm["test"], "macro_f1"),
                         _diff(arm["federated_minus"]["accuracy"]), arm["federated_minus"]["accuracy"]["verdict"]])
        local = comp.get("local_only")
        if local:
            rows.append(["mean of silos alone", f"{local['mean_accuracy']:.4f}", f"{local['mean_macro_f1']:.4f}",
                         _diff(local["federated_minus_mean"]), local["federated_minus_mean"]["verdict"]])
            rows.append([f"worst silo alone ({local['worst']})", f"{local['worst_accuracy']:.4f}", "", "", ""])
        parts += [html_table(["model (same test split)", "accuracy [CI]", "macro-F1 [CI]",
                              "federated minus it: accuracy [CI] (paired bootstrap)", "verdict"], rows)]
    parts += ["<h3>Global model on validation, per round</h3>", _round_plot(fed["round_curve"])]
    if fed.get("head_refit"):
        parts.append(_refit_paragraph(fed["head_refit"], fed["traffic"]))
    t = fed["traffic"]
    rows = [[r["round"], r.get("clients_ok", ""), r.get("clients_failed", ""), _mb(r.get("bytes_sent", 0)),
             _mb(r.get("bytes_received", 0)), *[r["validation"].get(k, "") for k in ("accuracy", "macro_f1", "loss")]]
            for r in fed["round_curve"]]
    parts += [html_table(["round", "clients ok", "failed", "sent", "received", "val accuracy", "val macro-F1",
                          "val loss"], rows),
              f"<p>Traffic (serialized Flower messages): {_mb(t['bytes_total'])} in all ({_mb(t['bytes_sent_total'])} "
              f"sent, {_mb(t['bytes_received_total'])} received); {_mb(t['bytes_per_client_per_round'])} per client "
              f"per round each way = {t['share_of_full_weights']:.2%} of the full model's weights "
              f"({_mb(t['full_model_bytes'])}).</p>",
              "<h3>Training rows per silo and label</h3>"]
    labels = results["labels"]
    counts = fed["silo_label_counts"] or [{} for _ in fed["silo_rows"]]  # a language model's rows have no labels
    parts.append(html_table(["silo", "rows", *labels],
                            [[f"silo-{i}", n, *[c.get(lab, 0) for lab in labels]]
                             for i, (n, c) in enumerate(zip(fed["silo_rows"], counts))]))
    return parts


def _refit_paragraph(refit: dict, traffic: dict) -> str:
    """What the head refit from pooled class statistics gave on validation, and whether it was kept."""
    metric = refit["metric"]
    tried = ", ".join(f"{html.escape(c['head'])}: {c['validation'][metric]:.4f}" for c in refit["candidates"])
    kept = (f"kept <b>{html.escape(refit['kept'])}</b>" if refit["kept"]
            else "kept the averaged head (no refit validated better)")
    return (f"<h3>Head refit from pooled class statistics</h3><p>Each silo sent its label counts, feature means "
            f"and within-label scatter once ({_mb(traffic.get('refit_bytes_per_client', 0))} per silo = "
            f"{traffic.get('refit_share_of_full_weights') or 0:.2%} of the full weights); the server solved the LDA "
            f"head on the pooled statistics. Validation {html.escape(metric)}: averaged head "
            f"{refit['averaged_head_validation']:.4f}; {tried}. The run {kept}.</p>")


def _loss_table(comp: dict) -> str:
    """Held-out response loss of the federated model and each arm; arm minus federated (positive: federated
    lower, paired bootstrap over conversations)."""
    rows = [["federated (global model)", f"{comp['federated']['test']['loss']:.4f}", "", ""]]
    for name, arm in comp["arms"].items():
        alone = " pooled" if name == "centralized" else " alone"
        what = "untuned" if name == "base" else f"{comp['epochs']} epochs{alone}"
        d = arm["loss_reduction"]
        rows.append([f"{name} ({what})", f"{arm['test']['loss']:.4f}", _diff(d), d["verdict"]])
    local = comp.get("local_only")
    if local:
        d = local["loss_reduction_vs_mean"]
        rows.append(["mean of silos alone", f"{local['mean_loss']:.4f}", _diff(d), d["verdict"]])
        rows.append([f"worst silo alone ({local['worst']})", f"{local['worst_loss']:.4f}", "", ""])
    return html_table(["model (same test conversations)", "response loss", "it minus federated: loss [CI] "
                       "(paired bootstrap; positive = federated lower)", "verdict for federated"], rows)


def _round_plot(rounds: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    keys = [k for k in ("accuracy", "macro_f1") if k in rounds[0]["validation"]] or ["loss"]
    for key in keys:
        ax.plot([r["round"] for r in rounds], [r["validation"].get(key) for r in rounds], "o-", label=key)
    ax.set_xlabel("round (0: before training)"), ax.set_title("global model, validation"), ax.legend()
    return embed_png(fig)
