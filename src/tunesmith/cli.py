"""Command line: a thin layer over the Python entry points (`fine_tune`, `predict`, ...)."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tunesmith.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tunesmith: fine-tune pre-trained models on your labelled data, and prove the result.")


def _config_epilog() -> str:
    from tunesmith.config import describe_fields

    lines = ["Config keys (YAML sections, or key.sub=value overrides):", ""]
    lines += [f"{key} (default {default}): {desc}" for key, default, desc in describe_fields()]
    return "\n\n".join(lines)


def _summary(run) -> None:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.evaluate.training_summary import training_lines

    res = run.results
    if res.get("task") == "sft":
        return _sft_summary(run)
    if res.get("task", "").startswith("tabular"):
        from tunesmith.evaluate.tabular_report import summary_lines

        for line in [*summary_lines(res), f"run folder: {run.path}", f"report: {run.path / 'report.html'}"]:
            typer.echo(line)
        return

    def cell(m: dict, key: str) -> str:
        ci = m.get("ci", {}).get(key)
        return f"{m[key]:.4f} [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else f"{m[key]:.4f}"

    table = Table(title="held-out test split (95% bootstrap intervals)")
    for col in ("model", "accuracy", "macro-F1", "n"):
        table.add_column(col)
    table.add_row(f"fine-tuned ({res['method']})", cell(res["test"], "accuracy"), cell(res["test"], "macro_f1"),
                  str(res["test"]["n"]))
    for name, b in res["baselines"].items():
        table.add_row(name.replace("_", " "), cell(b["test"], "accuracy"), cell(b["test"], "macro_f1"),
                      str(b["test"]["n"]))
    Console().print(table)
    comp = res.get("comparison")
    if comp:
        a = comp["accuracy"]
        typer.echo(f"vs best baseline ({comp['best_baseline']}): accuracy {a['difference']:+.4f} "
                   f"[{a['low']:+.4f}, {a['high']:+.4f}], p = {a['p_value']:.3f}: {a['verdict']}")
    for line in training_lines(res["training"]):
        typer.echo(line)
    typer.echo(f"run folder: {run.path}")
    typer.echo(f"report: {run.path / 'report.html'}")


def _sft_summary(run) -> None:
    res = run.results
    test, red = res["test"], res["test"]["loss_reduction"]
    typer.echo(f"held-out test response loss: base {test['base']['loss']:.4f} -> tuned {test['loss']:.4f} "
               f"(perplexity {test['base']['perplexity']:.1f} -> {test['perplexity']:.1f}); reduction "
               f"{red['difference']:+.4f} [{red['low']:+.4f}, {red['high']:+.4f}]: {red['verdict']}")
    gen = res.get("generation")
    if gen:
        typer.echo(f"generated answers (n={gen['tuned']['n']}): ROUGE-L base {gen['base']['rouge_l']:.3f} -> tuned "
                   f"{gen['tuned']['rouge_l']:.3f}, token F1 {gen['base']['token_f1']:.3f} -> "
                   f"{gen['tuned']['token_f1']:.3f}")
    tr = res["training"]
    typer.echo(f"trained {tr['global_step']} steps in {tr['train_seconds']:.0f} s; chat: tunesmith chat {run.path}")
    typer.echo(f"report: {run.path / 'report.html'}")


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


@app.command(epilog=_config_epilog())
def train(config: Optional[Path] = typer.Argument(None, help="YAML config file."),
          overrides: Optional[List[str]] = typer.Argument(None, help="key.sub=value overrides."),
          resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run folder."),
          force: bool = typer.Option(False, "--force", help="Train even when the data audit finds blocking "
                                     "issues (same as audit.on_issue=warn).")) -> None:
    """The main job: load and check the data, split, fine-tune, evaluate against baselines, report."""
    from tunesmith.run import fine_tune

    if config is None and resume is None:
        raise UserError("train: give a config file, or --resume RUN_DIR")
    if resume is not None and config is not None and "=" in str(config):
        overrides = [str(config), *(overrides or [])]
        config = None
    overrides = [*(overrides or []), *(["audit.on_issue=warn"] if force else [])]
    run = fine_tune(config, overrides, resume=resume)
    if _is_main():
        _summary(run)


@app.command()
def federate(config: Path = typer.Argument(..., help="YAML config file with a federated: section."),
             overrides: Optional[List[str]] = typer.Argument(None, help="key.sub=value overrides."),
             deployment: str = typer.Option("simulation", "--deployment", help="simulation: Flower's simulation "
                                            "runtime on this machine (Ray). local: a SuperLink and one SuperNode "
                                            "per silo as processes on 127.0.0.1, each given only its silo's "
                                            "file."),
             force: bool = typer.Option(False, "--force", help="Train even when the data audit finds blocking "
                                        "issues (same as audit.on_issue=warn).")) -> None:
    """Federated fine-tuning on Flower: silos that never share rows train one model; the report compares it
    with pooling the data (centralized) and with each silo alone. Exits 1 when a round fails."""
    from tunesmith.federate import federate as run_federation

    overrides = [*(overrides or []), *(["audit.on_issue=warn"] if force else [])]
    try:
        run = run_federation(config, overrides, deployment=deployment)
    except Exception as err:  # a failed round or a crashed client/server: one line, exit 1, never 0
        if isinstance(err, (UserError, OSError)):
            raise
        print(f"error: federated run failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
        raise typer.Exit(1) from None
    _summary(run)
    _federated_summary(run.results.get("federated", {}))


def _federated_summary(fed: dict) -> None:
    t = fed.get("traffic")
    if t:
        typer.echo(f"traffic: {t['bytes_total'] / 1e6:.2f} MB in {fed['rounds']} rounds; "
                   f"{t['bytes_per_client_per_round'] / 1e6:.3f} MB per client per round "
                   f"({t['share_of_full_weights']:.2%} of the full weights)")
    comp = fed.get("comparison")
    if comp:
        typer.echo(f"federated: {comp['verdict']}")


@app.command()
def audit(data: Path = typer.Argument(..., help="Training data: CSV, TSV, JSONL or Parquet."),
          test: Optional[Path] = typer.Option(None, "--test", help="Test file, checked for leakage from training."),
          validation: Optional[Path] = typer.Option(None, "--validation", help="Validation file."),
          text_column: str = typer.Option("text", "--text-column"),
          label_column: str = typer.Option("label", "--label-column"),
          output: Path = typer.Option(Path("audit.json"), "--output", help="Where to write the full report."),
          near_threshold: float = typer.Option(0.8, "--near-threshold", help="Jaccard threshold for near-duplicates."),
          label_errors: bool = typer.Option(True, "--label-errors/--no-label-errors",
                                            help="Look for likely label errors (cleanlab)."),
          model: Optional[str] = typer.Option(None, "--model", help="Tokenizer to measure truncation with "
                                              "(registry name, folder or hub id)."),
          max_length: int = typer.Option(128, "--max-length", help="Token limit for the truncation share.")) -> None:
    """Data-quality report: duplicates, leakage, label errors, imbalance, lengths, personal data.
    Exits with 1 when a blocking issue is found."""
    from pydantic import ValidationError

    from tunesmith.config import AuditConfig, format_validation_error
    from tunesmith.data.audit import audit_files
    from tunesmith.io import atomic_write_json

    tokenizer = None
    if model:
        from transformers import AutoTokenizer

        from tunesmith.models.registry import hub_error, resolve_model

        resolved = resolve_model(model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.source)
        except (OSError, ValueError) as err:  # offline, a typo in the hub id, a gated model
            raise hub_error(model, err) from None
    try:
        cfg = AuditConfig(near_duplicate_threshold=near_threshold, label_errors=label_errors)
    except ValidationError as err:
        raise UserError(format_validation_error(err, "audit --near-threshold").replace(
            "near_duplicate_threshold = ", "")) from None
    report = audit_files(str(data), str(test) if test else None, str(validation) if validation else None,
                         text_column, label_column, cfg, tokenizer=tokenizer, max_length=max_length)
    atomic_write_json(output, report)
    _audit_table(report)
    typer.echo(f"full report: {output}")
    if report["blocking"]:
        raise typer.Exit(1)


def _audit_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from tunesmith.data.audit import flagged_pairs

    table = Table(title="data audit")
    for col in ("check", "severity", "count", "finding", "first rows"):
        table.add_column(col, overflow="fold")
    colour = {"blocking": "red", "warning": "yellow", "ok": "green", "info": "blue"}
    for f in report["findings"]:
        first = ", ".join(f"{r['split']}:{r['row']}" for r in f["rows"][:5] if "row" in r)
        table.add_row(f["check"].replace("_", " "), f"[{colour[f['severity']]}]{f['severity']}[/]", str(f["count"]),
                      f["message"], first)
    Console().print(table)
    pairs = flagged_pairs(report)
    if pairs:
        table = Table(title="flagged pairs (first 5 of each check)")
        for col in ("check", "row", "text", "matches", "its text", "similarity"):
            table.add_column(col, overflow="fold")
        for p in pairs:
            table.add_row(p["check"].replace("_", " "), p["row"], p["text"], p["matches"], p["text_of_match"],
                          f"{p['similarity']:.3f}")
        Console().print(table)


@app.command()
def tune(config: Path = typer.Argument(..., help="YAML config with a tune: section."),
         overrides: Optional[List[str]] = typer.Argument(None, help="key.sub=value overrides."),
         trials: Optional[int] = typer.Option(None, "--trials", help="Finished trials in the study (all workers)."),
         timeout: Optional[str] = typer.Option(None, "--timeout", help="This worker's budget: 90s, 20m, 2h."),
         storage: Optional[str] = typer.Option(None, "--storage", help="SQLAlchemy URL shared by all workers."),
         study: Optional[str] = typer.Option(None, "--study", help="Study name (and folder)."),
         final: bool = typer.Option(True, "--final/--no-final", help="Train the best configuration once more "
                                    "and score it on test (the only use of the test split).")) -> None:
    """Hyperparameter search (grid, random, TPE; median, ASHA, Hyperband pruning) on Optuna.
    Start the same command on several machines with one --storage to share the trials."""
    from tunesmith.tune.search import tune as run_study

    result = run_study(config, overrides or [], n_trials=trials, timeout=timeout, storage=storage,
                       study_name=study, final_run=final)
    _study_summary(result)


def _study_summary(result) -> None:
    s = result.summary
    typer.echo(f"study {s['study']}: " + ", ".join(f"{n} {state}" for state, n in s["trials"].items() if n))
    typer.echo(f"best trial {s['best']['number']}: validation {s['metric']} {s['best']['value']:.4f} "
               f"with {s['best']['params']}")
    gain = s.get("gain_over_defaults") or {}
    # the best trial was picked on the validation split it is compared on: say so beside the numbers
    typer.echo("vs the configuration as written: " + (
        f"validation {gain['metric']} {gain['difference']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}] "
        f"(selection-biased: best of {gain['trials_compared']} trials on this split): {gain['verdict']}"
        if "low" in gain else gain.get("verdict") or gain.get("why", "not compared")))
    if result.final_run:
        typer.echo(f"final run (scored on test): {result.final_run}")
    typer.echo(f"report: {result.path / 'report.html'}")


@app.command()
def auto(data: Path = typer.Argument(..., help="Labelled training data: CSV, TSV, JSONL or Parquet."),
         label_column: str = typer.Option(..., "--label-column"),
         text_column: str = typer.Option("text", "--text-column"),
         time_budget: str = typer.Option("15m", "--time-budget", help="Wall-clock budget for everything: 30m, 2h."),
         test: Optional[Path] = typer.Option(None, "--test", help="Test file (default: a split of DATA)."),
         model: str = typer.Option("minilm-l6", "--model"),
         output_dir: Path = typer.Option(Path("runs"), "--output-dir"),
         max_trials: int = typer.Option(100, "--max-trials", help="Stop the search after this many trials."),
         task: str = typer.Option("text-classification", "--task", help="text-classification, or for a table "
                                  "tabular-classification (also: tabular) or tabular-regression: a LightGBM "
                                  "search.")) -> None:
    """AutoML: choose the method and search space from the data and the budget, search, train the winner."""
    from tunesmith.tune.auto import auto as run_auto

    if task.startswith("tabular"):
        from tunesmith.tune.auto_tabular import auto_tabular

        result = auto_tabular(str(data), label_column, time_budget, str(output_dir), str(test) if test else None,
                              max_trials, "tabular-classification" if task == "tabular" else task)
        for reason in result.summary["auto"]["reasons"]:
            typer.echo(f"- {reason}")
        return _study_summary(result)
    result = run_auto(str(data), label_column, text_column, time_budget, model, str(output_dir),
                      str(test) if test else None, max_trials)
    for reason in result.summary["auto"]["reasons"]:
        typer.echo(f"- {reason}")
    _study_summary(result)


@app.command()
def predict(run_dir: Path = typer.Argument(..., help="A finished run folder."),
            input: Optional[Path] = typer.Option(None, "--input", help="CSV, TSV, JSONL or Parquet with texts; "
                                                 "for an image run, a folder of images (or one image)."),
            output: Optional[Path] = typer.Option(None, "--output", help="Where to write predictions (CSV)."),
            text: Optional[List[str]] = typer.Option(None, "--text", help="A text to classify (repeatable)."),
            text_column: Optional[str] = typer.Option(None, "--text-column", help="Default: the run's text column."),
            backend: str = typer.Option("torch", "--backend", help="torch (RUN_DIR/model) or onnx (RUN_DIR/export, "
                                        "written by tunesmith export --format onnx; ONNX Runtime, no torch).")
            ) -> None:
    """Predict a label and its probability for each input text (or image)."""
    from tunesmith.predict import predict as predict_texts
    from tunesmith.predict import predict_file

    if text:
        for t, row in zip(text, predict_texts(run_dir, text, backend=backend).itertuples()):
            typer.echo(f"{row.label}\t{row.probability:.4f}\t{t}")
        return
    if input is None or output is None:
        raise UserError("predict: give --input FILE --output preds.csv, or --text \"...\"")
    n = predict_file(run_dir, input, output, text_column, backend)
    typer.echo(f"wrote {n} predictions to {output}")


@app.command("eval")
def eval_(run_dir: Path = typer.Argument(..., help="A finished run folder."),
          data: Path = typer.Option(..., "--data", help="Labelled CSV, TSV, JSONL or Parquet."),
          text_column: Optional[str] = typer.Option(None, "--text-column", help="Default: the run's."),
          label_column: Optional[str] = typer.Option(None, "--label-column", help="Default: the run's.")) -> None:
    """Evaluate a saved run on new labelled data: metrics with intervals, calibration, drift warnings."""
    from rich.console import Console

    from tunesmith.predict import eval_run

    rep = eval_run(run_dir, data, text_column, label_column)
    m = rep["metrics"]
    console = Console()
    for key in ("accuracy", "macro_f1"):
        ci = m["ci"][key]
        typer.echo(f"{key}: {m[key]:.4f} [{ci['low']:.4f}, {ci['high']:.4f}] "
                   f"({int(ci['level'] * 100)}% bootstrap, n={m['n']})")
    typer.echo(f"expected calibration error: {rep['calibration']['ece_scaled']:.4f} "
               f"(temperature {rep['calibration']['temperature']:.3f})")
    for w in rep["drift"]["warnings"]:
        console.print(f"[yellow]drift warning:[/] {w}")
    typer.echo(f"report: {rep['path']}")


runs_app = typer.Typer(no_args_is_help=True, help="List and compare run folders.")
app.add_typer(runs_app, name="runs")


def _runs_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ("run", "status", "model", "method", "train_sha", "accuracy", "macro_f1", "train_seconds")
    for col in cols:
        table.add_column(col.replace("_", " "), overflow="fold")
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    Console().print(table)


@runs_app.command("list")
def runs_list(root: Path = typer.Argument(Path("runs"), help="Folder holding run folders.")) -> None:
    """One line per run: model, method, data fingerprint, test metrics with intervals, wall time."""
    from tunesmith.runs import list_runs

    _runs_table(list_runs(root), f"runs in {root}")


@runs_app.command("compare")
def runs_compare(run_dirs: List[Path] = typer.Argument(..., help="Two or more run folders; the first is the "
                                                     "reference.")) -> None:
    """Side by side, with a paired bootstrap of test accuracy when the runs share a test split."""
    from tunesmith.runs import compare_runs

    if len(run_dirs) < 2:
        raise UserError("runs compare: give at least two run folders")
    out = compare_runs(run_dirs)
    _runs_table(out["runs"], "runs")
    for p in out["paired_accuracy"]:
        if "difference" in p:
            typer.echo(f"{p['b']} vs {p['a']}: accuracy {p['difference']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}], "
                       f"p = {p['p_value']:.3f}: {p['verdict']}")
        else:
            typer.echo(f"{p['b']} vs {p['a']}: {p['verdict']}")


@app.command()
def demo(output_dir: Path = typer.Option(Path("runs"), help="Folder that receives the run folder."),
         task: str = typer.Option("text-classification", "--task", help="text-classification: MiniLM-L6 on BBC "
                                  "News topics; image-classification: EfficientNet-Lite0 on handwritten digits; "
                                  "sft: SmolLM2-135M with LoRA on chatterbot-corpus conversations; "
                                  "tabular: LightGBM on ISLP's Default credit table.")
         ) -> None:
    """Fine-tune a shipped model on real public data (a few minutes on a laptop CPU)."""
    from tunesmith.demo import demo_config, image_demo_config, sft_demo_config, tabular_demo_config
    from tunesmith.run import fine_tune

    configs = {"text-classification": demo_config, "image-classification": image_demo_config, "sft": sft_demo_config,
               "tabular": tabular_demo_config}
    if task not in configs:
        raise UserError(f"demo --task {task!r}: expected one of {', '.join(configs)}")
    run = fine_tune(configs[task](output_dir))
    _summary(run)


@app.command()
def chat(run_dir: Path = typer.Argument(..., help="A finished sft run folder."),
         prompt: Optional[str] = typer.Option(None, "--prompt", help="Answer this one prompt and exit."),
         max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Longest answer, in tokens.")) -> None:
    """Chat with a tuned language model in the terminal (an empty line or Ctrl-D ends)."""
    from tunesmith.generate import ChatModel

    model = ChatModel(run_dir, max_new_tokens)
    if prompt is not None:
        typer.echo(model.reply([{"role": "user", "content": prompt}]))
        return
    interactive = sys.stdin.isatty()

    def lines():
        while True:
            try:
                line = input("you> " if interactive else "")
            except EOFError:
                return
            if not line.strip():
                return
            yield line

    for answer in model.conversation(lines()):
        typer.echo(f"model> {answer}" if interactive else answer)


@app.command()
def export(run_dir: Path = typer.Argument(..., help="A finished run folder."),
           format: Optional[str] = typer.Option(None, "--format", help="onnx (text- and image-classification runs) "
                                                "or gguf (sft runs)."),
           int8: bool = typer.Option(False, "--int8", help="ONNX: also search int8 quantization settings and keep "
                                     "the fastest within 0.5 accuracy points and 99% agreement."),
           merge: bool = typer.Option(False, "--merge", help="Merge a LoRA run's adapter into the base weights."),
           output: Optional[Path] = typer.Option(None, "--output", help="Folder to write. Default: RUN_DIR/export "
                                                 "(RUN_DIR/merged with --merge)."),
           overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty --output folder.")
           ) -> None:
    """Ship a run: ONNX (fp32, --int8) with a parity gate, GGUF for sft runs, or a merged LoRA folder (--merge)."""
    from tunesmith.export import export_run

    if not merge and format is None:
        raise UserError("export: say what to export: --format onnx|gguf, or --merge (base model + LoRA adapter)")
    result = export_run(run_dir, format, int8=int8, output=output, overwrite=overwrite, merge=merge)
    if result.record is not None:
        from tunesmith.export.summary import summary_lines

        for line in summary_lines(result.record):
            typer.echo(line)
    typer.echo(f"wrote {result.path}")
    if result.refusal:
        raise UserError(result.refusal)


@app.command()
def serve(run_dir: Path = typer.Argument(..., help="A finished run folder (text, image or sft)."),
          host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
          port: int = typer.Option(8000, "--port"),
          api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File with bearer API keys, one "
                                                      "per line; then every route but health and the API docs "
                                                      "needs 'Authorization: Bearer KEY'."),
          max_batch: int = typer.Option(32, "--max-batch", help="Most inputs per forward pass (and per request)."),
          max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a queued input waits for others "
                                            "to join its batch."),
          backend: str = typer.Option("torch", "--backend", help="torch, or onnx (an exported run)."),
          workers: int = typer.Option(1, "--workers", help="Processes, each with its own model copy."),
          max_queue: Optional[int] = typer.Option(None, "--max-queue", help="Inputs waiting before requests get "
                                                  "429 (default 8 x --max-batch)."),
          timeout_s: float = typer.Option(30.0, "--timeout-s", help="Requests still waiting after this get 504."),
          max_body_bytes: Optional[int] = typer.Option(None, "--max-body-bytes", help="Larger request bodies get 413 "
                                                       "(default 1 MiB; 16 MiB for image runs)."),
          max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="sft runs: default and upper bound of "
                                             "max_tokens.")) -> None:
    """Serve a run over HTTP: /predict and Open Inference Protocol v2 (classification) or OpenAI
    /v1/chat/completions (sft), with health, Prometheus /metrics, batching, auth and limits."""
    from tunesmith.serve.server import serve as run_server

    run_server(run_dir, host, port, api_key_file, workers, max_batch=max_batch, max_wait_ms=max_wait_ms,
               backend=backend, max_queue=max_queue, timeout_s=timeout_s, max_body_bytes=max_body_bytes,
               max_new_tokens=max_new_tokens)


@app.command()
def models() -> None:
    """List the registered pre-trained models."""
    from tunesmith.models.registry import list_models

    for m in list_models():
        typer.echo(f"{m.name}\t{m.family}\t{m.package}\t{m.description}")


def _click_kinds(name: str) -> tuple[type, ...]:
    """The exception class NAME from click and from typer's vendored copy (typer >= 0.21 raises its own)."""
    import click

    kinds = [getattr(click.exceptions, name)]
    try:
        from typer._click import exceptions as vendored
    except ImportError:  # typer < 0.21 uses click itself
        vendored = None
    kinds += [getattr(vendored, name)] if vendored is not None and hasattr(vendored, name) else []
    kinds += [getattr(typer, name)] if name in ("Exit", "Abort") else []
    return tuple(dict.fromkeys(kinds))


# OSErrors the user causes (a path, a permission, a full disk), shown as one line; others are bugs
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.EFBIG, errno.EACCES,
                errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
_HINTS = {errno.ENOSPC: "free some space or choose another output folder",
          errno.EDQUOT: "free some space or choose another output folder",
          errno.EROFS: "choose a folder you can write to", errno.EACCES: "choose a folder you can write to",
          errno.EPERM: "choose a folder you can write to",
          errno.ENOTDIR: "a file is in the way where a folder is expected",
          errno.EISDIR: "a folder is in the way where a file is expected"}


def _os_error_line(err: OSError) -> str | None:
    """One line naming the path for an OSError the user caused; None for anything else."""
    if err.errno not in _USER_ERRNOS:
        return None
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    reason = err.strerror or os.strerror(err.errno)
    hint = _HINTS.get(err.errno)
    return f"{where + ': ' if where else ''}{reason}{'; ' + hint if hint else ''}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input ends with one line on stderr and exit code 2; a mistyped option
    with click's usage line, the error and exit code 2."""
    try:
        code = app(args=argv, prog_name="tunesmith", standalone_mode=False)  # typer.Exit's code returns here
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except _click_kinds("Exit") as err:
        return err.exit_code
    except _click_kinds("ClickException") as err:
        err.show()
        return err.exit_code
    except _click_kinds("Abort"):
        return 130
    except OSError as err:
        line = _os_error_line(err)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
