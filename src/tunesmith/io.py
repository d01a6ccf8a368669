"""Atomic file writes: write to a temporary name in the same folder, then rename."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def cache_dir() -> Path:
    """Where tunesmith keeps converted models and demo data: $TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    root = os.environ.get("TUNESMITH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "tunesmith")
    return Path(root).expanduser()


def atomic_write_text(path: Path, text: str) -> None:
    """Write TEXT to PATH through a temporary sibling: an interrupted write (a kill, a full disk)
    leaves PATH as it was. An OSError names PATH, the file the user knows."""
    from tunesmith.errors import UserError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written folder into place; the old one is removed only after the new one exists."""
    final_dir = Path(final_dir)
    old = final_dir.with_name(f".{final_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def staged_dir(final_dir: Path) -> Iterator[Path]:
    """An empty temporary sibling of FINAL_DIR to write into; when the block ends without error it
    replaces FINAL_DIR, otherwise it is removed. A killed writer leaves only a hidden `.NAME.*.tmp`."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp"))
    try:
        yield tmp
        replace_dir(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
