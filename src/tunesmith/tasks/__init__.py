"""Task registry: one file per task family says how rows become tensors, its loss, its metrics.

The built-in tasks are named in a plain table and imported on first use, so validating a config
(`task` must be a known name) imports neither torch nor any task module.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tunesmith.config import RunConfig
    from tunesmith.tasks.base import Task

# name -> module that defines (and registers) it
_BUILTIN: dict[str, str] = {
    "text-classification": "tunesmith.tasks.text_classification",
    "image-classification": "tunesmith.tasks.image_classification",
    "sft": "tunesmith.tasks.sft",
    "tabular-classification": "tunesmith.tasks.tabular",
    "tabular-regression": "tunesmith.tasks.tabular",
}
_TASKS: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: register a task under `name`; duplicate names (a built-in name included,
    outside its own module) are rejected."""

    def wrap(cls: type) -> type:
        if name in _TASKS or _BUILTIN.get(name, cls.__module__) != cls.__module__:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def task_names() -> list[str]:
    """Every task name: the built-in ones and the registered ones, without importing any task module."""
    return sorted(set(_BUILTIN) | set(_TASKS))


def get_task(name: str) -> "Task":
    """A fresh task object; a built-in task's module is imported here, on first use."""
    if name not in _TASKS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; expected one of {', '.join(task_names())}")
    return _TASKS[name]()


def configure(cfg: "RunConfig") -> "RunConfig":
    """The config with its task's own defaults applied and its task's rules checked (a UserError
    names the field); call it before any data loads."""
    return get_task(cfg.task).configure(cfg)
