"""Ship a finished run: ONNX (fp32, int8) for classifiers, GGUF for tuned chat models, a merged LoRA folder.

`export_run(run_dir, format, ...)` is the one entry point the CLI calls. Every output is written to a
temporary sibling folder and renamed into place only when complete; an existing, non-empty --output
folder is replaced only with overwrite=True.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import UserError

FORMATS = {"onnx": ("text-classification", "image-classification"), "gguf": ("sft",)}


@dataclass
class Exported:
    """Where the export went and what export.json records (None for --merge)."""
    path: Path
    record: dict | None
    refusal: str | None = None  # set when part of the export was refused (the int8 search)


def check_destination(path: Path, overwrite: bool, chosen_by_user: bool) -> None:
    """An existing non-empty folder the user named is replaced only with --overwrite (never a file)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--output {path}: a file is in the way; expected a folder path")
    if chosen_by_user and path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"--output {path}: folder exists and is not empty; pass --overwrite to replace it, "
                        "or choose another folder")


def fresh_sibling(path: Path) -> Path:
    """An empty temporary folder beside `path`, so the final rename stays on one file system."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _finished(run_dir: str | Path, fmt: str):
    from tunesmith.run import load_run

    run = load_run(run_dir)
    if run.status != "completed":
        raise UserError(f"{run.path}: run status is {run.status!r}; export needs a completed run "
                        "(finish it with tunesmith train --resume)")
    if run.config.task not in FORMATS[fmt]:
        other = next(f for f, tasks in FORMATS.items() if run.config.task in tasks)
        raise UserError(f"{run.path}: a {run.config.task} run cannot be exported as {fmt}; --format {fmt} takes "
                        f"{' and '.join(FORMATS[fmt])} runs ({run.config.task}: --format {other})")
    return run


def export_run(run_dir: str | Path, format: str | None = "onnx", int8: bool = False, output: str | Path | None = None,
               overwrite: bool = False, merge: bool = False) -> Exported:
    """Export a finished run. format: onnx (classification runs; int8 adds the quantization search) or
    gguf (sft runs); merge=True writes base + LoRA adapter merged instead. Default output: RUN_DIR/export
    (RUN_DIR/merged for merge)."""
    from tunesmith.io import atomic_write_json, replace_dir

    if merge:
        from tunesmith.generate import export_merged

        dest = Path(output) if output else Path(run_dir) / "merged"
        check_destination(dest, overwrite, output is not None)
        return Exported(export_merged(run_dir, dest), None)
    if format not in FORMATS:
        raise UserError(f"--format {format!r}: expected one of {', '.join(FORMATS)} (or --merge)")
    if int8 and format != "onnx":
        raise UserError("--int8 applies to --format onnx")
    run = _finished(run_dir, format)
    dest = Path(output) if output else run.path / "export"
    check_destination(dest, overwrite, output is not None)
    tmp = fresh_sibling(dest)
    try:
        if format == "onnx":
            from tunesmith.export.onnx import export_onnx

            record, refusal = export_onnx(run, tmp, int8)
        else:
            from tunesmith.export.gguf import export_gguf

            record, refusal = export_gguf(run, tmp), None
        record["files"] = sorted(p.name for p in tmp.iterdir())
        atomic_write_json(tmp / "export.json", record)
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(dest, json.loads((dest / "export.json").read_text()), refusal)
