"""The federation spec: everything a client or server process needs, in one JSON file.

federate() writes RUN_DIR/federation/spec.json before Flower starts; a ClientApp or ServerApp in any
process (a Ray actor, a SuperNode) rebuilds its state from that file alone.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesmith.config import RunConfig, build_config
from tunesmith.io import atomic_write_text

TRANSFER_METHOD = {"adapter": "lora", "head": "linear-probe", "full": "full"}


@dataclass
class FedSpec:
    """config: the resolved run config (max_length, method, epochs fixed); labels: the global label list
    (a silo may lack some classes, its head must not); silo_files: one data file per silo; folder: where
    the server writes rounds.jsonl and the global weights; validation_file: the rows the server scores the
    global model on each round (the run's validation split, as loaded and audited)."""
    config: dict
    labels: list[str]
    silo_files: list[str]
    folder: str
    validation_file: str | None = None

    @property
    def run_config(self) -> RunConfig:
        return build_config(self.config, source="federation spec")

    def save(self, path: Path) -> Path:
        atomic_write_text(Path(path), json.dumps(asdict(self), indent=1))
        return Path(path)


def load_spec(path: str | Path) -> FedSpec:
    """Read a spec written by FedSpec.save."""
    return FedSpec(**json.loads(Path(path).read_text(encoding="utf-8")))
