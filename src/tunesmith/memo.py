"""A per-process memo that lets the runs of one study share what does not change between trials.

`fine_tune` consults it for the loaded data, the audit, the tokenized splits and a frozen body's
features, each keyed by exactly the settings it depends on; a trial whose keys differ computes
its own. A memo is in-process: each worker of a shared study fills its own.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable


def key(*parts: Any) -> str:
    """A stable key from JSON-able parts (configs dumped with model_dump(mode='json'))."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def data_key(cfg: Any, task: Any) -> str:
    """Every setting loading reads: the data section, the seed (splits, sampling) and the task's own
    loading settings (`task.data_settings(cfg)`, e.g. image.max_side or sft.system_prompt)."""
    own = task.data_settings(cfg) if hasattr(task, "data_settings") else {}
    return key(cfg.task, cfg.data.model_dump(mode="json"), cfg.train.seed, own)


def audit_key(cfg: Any, task: Any) -> str:
    """The audited (and fixed) splits: the loaded data and the audit settings. Steps that encode
    the splits build their keys on this one."""
    return key(data_key(cfg, task), cfg.audit.model_dump(mode="json"))


class Memo:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._store: dict[str, Any] = {}
        self.hits: dict[str, int] = {}

    def get(self, kind: str, k: str, make: Callable[[], Any]) -> Any:
        if not self.enabled:
            return make()
        full = f"{kind}:{k}"
        if full in self._store:
            self.hits[kind] = self.hits.get(kind, 0) + 1
        else:
            self._store[full] = make()
        return self._store[full]
