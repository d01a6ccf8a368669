"""Atomic, resumable checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG, state.

A checkpoint folder is written under a temporary name and renamed into place, so a run killed
at any instant leaves either the previous checkpoint or the new one, never half of one.
Everything is read back with safetensors or torch.load(weights_only=True).
"""
from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tunesmith.io import replace_dir


def rng_state() -> dict:
    """This process's random state (every process has its own: dropout differs per rank), with the
    CUDA generators' where CUDA is present (dropout on a GPU draws from those)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(folder: Path, weights: dict[str, torch.Tensor], state: dict,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None,
                    rng_states: list[dict] | None = None) -> None:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp"))
    save_file({k: v.contiguous() for k, v in weights.items()}, tmp / "model.safetensors")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_states or [rng_state()], tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    replace_dir(tmp, folder)


def find_checkpoint(folder: Path) -> Path | None:
    """The checkpoint folder, or the previous one if a crash came between the two renames."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(f".{folder.name}.old")):
        if (candidate / "trainer_state.json").is_file():
            return candidate
    return None


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "model.safetensors")


def load_state(folder: Path) -> dict:
    return json.loads((Path(folder) / "trainer_state.json").read_text())


def restore_training(folder: Path, optimizer: torch.optim.Optimizer, scheduler, rank: int = 0) -> None:
    folder = Path(folder)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    states = torch.load(folder / "rng.pt", weights_only=True)
    rng = states[rank] if rank < len(states) else states[0]
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _as_tuple(obj):
    return tuple(_as_tuple(x) for x in obj) if isinstance(obj, (list, tuple)) else obj
