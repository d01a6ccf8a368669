"""report.html: one self-contained page (plots embedded as PNG) written from the run folder's files."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from tunesmith.evaluate.training_summary import training_lines
from tunesmith.io import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
.good{color:#070}.muted{color:#777}"""


def embed_png(fig) -> str:
    """A matplotlib figure as an <img> tag with the PNG inline (the page stays one file); closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _curves(records: list[dict]) -> str:
    import matplotlib.pyplot as plt

    if not records:  # e.g. the few-shot head alone, fitted in closed form
        return "<p>No learning curves: the run took no optimizer steps (its head was fitted in closed form).</p>"
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    axes[0].plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="validation loss")
    axes[0].set_xlabel("optimizer step"), axes[0].set_title("loss"), axes[0].legend()
    for key in [k for k in ("accuracy", "macro_f1", "perplexity") if any(k in r for r in evals)]:
        axes[1].plot([r["step"] for r in evals], [r.get(key) for r in evals], "o-", label=f"validation {key}")
    axes[1].set_xlabel("optimizer step"), axes[1].set_title("validation scores"), axes[1].legend()
    return embed_png(fig)


def _confusion(matrix: list[list[int]], labels: list[str], title: str) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix)
    size = min(14, 3 + 0.25 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    if len(labels) <= 30:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        if len(labels) <= 12:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(j, i, m[i, j], ha="center", va="center",
                            color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    return embed_png(fig)


def html_table(header: list[str], rows: list[list]) -> str:
    """An escaped HTML table; numbers right-aligned, floats to 4 decimals."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{_num(c)}>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(value) -> str:
    return " class='num'" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _per_class(split: dict) -> str:
    rows = sorted(([name, s["precision"], s["recall"], s["f1"], s["support"]]
                   for name, s in split["per_class"].items()),
                  key=lambda r: r[3])
    return html_table(["class (sorted by F1)", "precision", "recall", "F1", "support"], rows)


def _with_ci(m: dict, key: str) -> str:
    ci = m.get("ci", {}).get(key)
    return f"{m[key]:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]" if ci else f"{m[key]:.4f}"


def _verdict(comp: dict) -> list[str]:
    if not comp:
        return []
    a = comp["accuracy"]
    return [f"<p class='verdict'>Against the best baseline (<b>{html.escape(comp['best_baseline'])}</b>), accuracy "
            f"differs by {a['difference']:+.4f} [{a['low']:+.4f}, {a['high']:+.4f}], paired bootstrap p = "
            f"{a['p_value']:.3f}: <b>{html.escape(a['verdict'])}</b>.</p>"]


def _calibration(cal: dict | None) -> list[str]:
    if not cal:
        return []
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for key, name in (("bins", "raw"), ("bins_scaled", f"T = {cal['temperature']:.2f}")):
        bins = cal["test"][key]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=name)
    ax.set_xlabel("confidence"), ax.set_ylabel("accuracy"), ax.set_title("reliability (test)"), ax.legend()
    t = cal["test"]
    return ["<h2>Calibration</h2>",
            f"<p>Temperature {cal['temperature']:.3f} fitted on validation. Test expected calibration error "
            f"{t['ece']:.4f} before, {t['ece_scaled']:.4f} after scaling.</p>", embed_png(fig)]


def _errors(err: dict | None) -> list[str]:
    if not err:
        return []
    return ["<h2>Error analysis (test)</h2><h3>Most confused label pairs</h3>",
            html_table(["true", "predicted", "count"],
                       [[p["true"], p["predicted"], p["count"]] for p in err["confused_pairs"]]),
            "<h3>Highest-loss examples</h3>",
            html_table(["text", "true", "predicted", "confidence"],
                   [[e["text"], e["true"], e["predicted"], e["confidence"]] for e in err["highest_loss"]])]


def _picture(path: Path, title: str) -> list[str]:
    if not path.is_file():
        return []
    return [f"<h3>{html.escape(title)}</h3>",
            f'<img alt="{html.escape(title)}" '
            f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">']


def audit_section(run_dir: Path) -> list[str]:
    from tunesmith.data.audit import flagged_pairs

    path = run_dir / "audit.json"
    if not path.is_file():
        return ["<h2>Data audit</h2><p class='muted'>not run (audit.enabled=false)</p>"]
    audit = json.loads(path.read_text())
    rows = [[f["check"].replace("_", " "), f["severity"], f["count"], f["message"]] for f in audit["findings"]]
    parts = ["<h2>Data audit</h2>", html_table(["check", "severity", "count", "finding"], rows)]
    pairs = flagged_pairs(audit)
    if pairs:
        parts += ["<h3>Flagged pairs (first 5 of each check)</h3>",
                  html_table(["check", "row", "text", "matches", "its text", "similarity"],
                             [[p["check"].replace("_", " "), p["row"], p["text"], p["matches"], p["text_of_match"],
                               p["similarity"]] for p in pairs])]
    if audit.get("fixes"):
        parts.append(html_table(["fix applied", "rows", "what"],
                                [[x["fix"], x["rows"], x["detail"]] for x in audit["fixes"]]))
    return parts


def write_report(run_dir: str | Path) -> Path:
    """Render RUN_DIR/report.html from results.json, metrics.jsonl and config.yaml."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    tr = results["training"]
    # a run whose warm-up stage finished the model has no main stage: its curves are the stage's (none when
    # the stage trained no steps, e.g. a head fitted in closed form)
    warmup = tr.get("warmup", {})
    log = run_dir / warmup["phase"] / "metrics.jsonl" if warmup.get("final") and warmup.get("global_step") else \
        run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    config = (run_dir / "config.yaml").read_text()
    training = ["<h2>Training</h2>",
                html_table(["optimizer steps", "epochs", "best step", "stopped early", "train seconds", "samples/s"],
                       [[tr["global_step"], f"{tr['epochs_completed']}/{tr['epochs_planned']}", tr["best_step"],
                         tr["stopped_early"], tr["train_seconds"], tr["train_samples_per_second"]]]),
                *(f"<p>{html.escape(line)}</p>" for line in training_lines(tr))]
    if results["task"].startswith("tabular"):
        from tunesmith.evaluate.tabular_report import tabular_sections

        parts = tabular_sections(results, run_dir, records, training)
    elif results["task"] == "sft":
        parts = [f"<h1>tunesmith run: {html.escape(run_dir.name)}</h1>", *_sft_sections(results, run_dir),
                 *audit_section(run_dir), *training, "<h3>Learning curves</h3>", _curves(records)]
    else:
        parts = _classification_sections(results, run_dir, records, training)
    if results.get("federated"):  # a federated run: its question comes first, after the title
        from tunesmith.evaluate.federated_report import federated_sections

        parts[1:1] = federated_sections(results)
    parts += ["<h2>Resolved configuration</h2>", f"<pre>{html.escape(config)}</pre>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tunesmith report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def _sft_sections(results: dict, run_dir: Path) -> list[str]:
    """Base vs tuned: response loss with the paired bootstrap, generation metrics, answers side by side."""
    import pandas as pd

    test = results["test"]
    red = test["loss_reduction"]
    rows = [["base model", f"{test['base']['loss']:.4f}", f"{test['base']['perplexity']:.2f}"],
            [f"tuned ({results['method']})", f"{test['loss']:.4f}", f"{test['perplexity']:.2f}"]]
    parts = [f"<p>sft · model <b>{html.escape(results['model'])}</b> · method <b>{html.escape(results['method'])}"
             f"</b> · chat template {html.escape(results['chat_template'])} · stop token "
             f"<code>{html.escape(results['stop_token'])}</code></p>",
             "<h2 id='comparison'>Did fine-tuning help? (held-out test conversations)</h2>",
             html_table(["model", "response loss", "perplexity"], rows),
             f"<p>Loss reduction (base - tuned) {red['difference']:+.4f} [{red['low']:+.4f}, {red['high']:+.4f}], "
             f"paired bootstrap over {test['n']} conversations, p = {red['p_value']:.3f}: "
             f"<b>{html.escape(red['verdict'])}</b>.</p>"]
    gen = results.get("generation")
    if gen:
        parts += ["<h2>Generated answers</h2>",
                  html_table(["model", "exact match", "token F1", "ROUGE-L", "n"],
                         [[name, f"{g['exact_match']:.3f}", f"{g['token_f1']:.3f}", f"{g['rouge_l']:.3f}", g["n"]]
                          for name, g in (("base model", gen["base"]), ("tuned", gen["tuned"]))]),
                  f"<p class='muted'>greedy decoding, at most {gen['max_new_tokens']} new tokens.</p>"]
    if (run_dir / "generations.csv").is_file():
        table = pd.read_csv(run_dir / "generations.csv", keep_default_na=False)
        parts += ["<h3>Base vs tuned, side by side</h3>",
                  html_table(["prompt", "reference", "base model", "tuned"], table.values.tolist())]
    return parts


def _classification_sections(results: dict, run_dir: Path, records: list[dict], training: list[str]) -> list[str]:
    labels, test, val = results["labels"], results["test"], results["validation"]
    compare = [[f"fine-tuned ({results['method']})", _with_ci(test, "accuracy"), _with_ci(test, "macro_f1"),
                test["loss"], test["n"]]]
    for name, b in results["baselines"].items():
        compare.append([name.replace("_", " "), _with_ci(b["test"], "accuracy"), _with_ci(b["test"], "macro_f1"),
                        b["test"]["loss"], b["test"]["n"]])
    parts = [
        f"<h1>tunesmith run: {html.escape(run_dir.name)}</h1>",
        f"<p>{html.escape(results['task'])} · model <b>{html.escape(results['model'])}</b> · method "
        f"<b>{html.escape(results['method'])}</b> · {len(labels)} classes</p>",
        *([f"<p>method chosen automatically: {html.escape(results['method_choice']['reason'])}</p>"]
          if results.get("method_choice") else []),
        "<h2 id='comparison'>Did fine-tuning help? (held-out test split)</h2>",
        html_table(["model", "accuracy [95% CI]", "macro-F1 [95% CI]", "log loss", "n"], compare),
        *_verdict(results.get("comparison") or {}),
        *audit_section(run_dir),
        *training,
        f"<p>{html.escape(results.get('overfitting', {}).get('summary', ''))}</p>",
        "<h3>Learning curves</h3>", _curves(records),
        *_calibration(results.get("calibration")),
        "<h2>Confusion matrices</h2>", _confusion(test["confusion"], labels, "test"),
        _confusion(val["confusion"], labels, "validation"),
        *_errors(results.get("error_analysis")),
        *_picture(run_dir / "misclassified.png", "Misclassified test images"),
        "<h2>Per-class scores: test</h2>", _per_class(test),
        "<h2>Per-class scores: validation</h2>", _per_class(val),
    ]
    return parts
