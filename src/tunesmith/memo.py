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
