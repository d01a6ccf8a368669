"""Task registry: one file per task family says how rows become tensors, its loss, its metrics."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tunesmith.tasks.base import Task

_TASKS: dict[str, type] = {}
# The built-in tasks' names, known without importing their modules (which import torch): validating a
# config, or predicting with the onnx backend, must not load torch.
BUILTIN = ("image-classification", "sft", "text-classification")


def register_task(name: str):
    """Class decorator: register a task under `name`; duplicate names are rejected."""

    def wrap(cls: type) -> type:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def _load_builtin() -> None:
    import tunesmith.tasks.image_classification  # noqa: F401  (registers itself)
    import tunesmith.tasks.sft  # noqa: F401
    import tunesmith.tasks.text_classification  # noqa: F401


def task_names() -> list[str]:
    return sorted(set(BUILTIN) | set(_TASKS))


def get_task(name: str) -> "Task":
    _load_builtin()
    return _TASKS[name]()
