"""How the server runs an ONNX export (`--backend onnx`): the file `tunesmith export` chose (its
onnx_config.json names model.onnx, or model.int8.onnx when the int8 search kept one), in one ONNX
Runtime session for the process's life, set up for a server rather than for export's latency figure.

Export's session has 2 intra-op threads that spin while idle. A server shares its cores with its
event loop (HTTP parsing) and, in a benchmark, the load generator: measured on the shared 2-core
machine (contended; MiniLM-L6, Banking77, batches of 32 grouped by length), spinning doubled the CPU
per text (8.8 ms against 4.5 ms) for no gain in wall time. So the session is rebuilt once at load with spinning off
and one thread per usable core (what torch's default gives the PyTorch backend), keeping every
other option export set (graph optimisation level and any others).
"""
from __future__ import annotations

import os
from typing import Any


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def for_serving(predictor: Any, threads: int | None = None) -> Any:
    """`predictor` (tunesmith.export.runtime's ONNX classifier) with its session rebuilt: `threads`
    intra-op threads (default: usable_cores()), no spinning, export's other session options."""
    import onnxruntime as ort

    options = predictor.session.get_session_options()
    options.intra_op_num_threads = threads or usable_cores()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = predictor.session.get_providers()
    predictor.session = ort.InferenceSession(str(predictor.folder / predictor.model_file), options,
                                             providers=providers)
    return predictor


def served_file(predictor: Any, backend: str) -> str:
    """What answers requests, relative to the run folder: model/ (PyTorch) or export/<file> (ONNX)."""
    if backend == "onnx":
        return f"{predictor.folder.name}/{predictor.model_file}"
    return "model/"
