"""tunesmith: customize pre-trained models to your labelled data, and prove the result.

Importing the package stays light; the heavy entry points load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["fine_tune", "load_run", "predict", "audit", "load_config", "UserError"]

if TYPE_CHECKING:  # pragma: no cover
    from tunesmith.config import load_config
    from tunesmith.errors import UserError
    from tunesmith.run import fine_tune, load_run
    from tunesmith.predict import predict
    from tunesmith.data.audit import audit_files as audit

_LAZY = {
    "fine_tune": "tunesmith.run",
    "load_run": "tunesmith.run",
    "predict": "tunesmith.predict",
    "load_config": "tunesmith.config",
    "UserError": "tunesmith.errors",
    "audit": "tunesmith.data.audit",
}
_RENAMED = {"audit": "audit_files"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
