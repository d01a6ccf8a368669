"""train.precision auto: bf16 autocast where the hardware multiplies bf16 natively, else fp32.

Measured on a 2-core AMD EPYC (AVX512-BF16), MiniLM-L6 on Banking77 batches of 32, CPU time per
optimizer step (bench/RESULTS.md, issue 13): a bf16 GEMM runs 2.3x the fp32 rate, and a training
step 1.5-1.8x faster once attention runs eagerly (see `cpu_attention`).
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

# tasks whose models are transformer encoders measured to gain from bf16 autocast; the others
# (CNNs, causal LMs, gradient boosting) keep fp32 under auto until measured
_AUTO_BF16_TASKS = ("text-classification",)
# Smaller runs train in seconds to a few minutes: they keep fp32, whose validation and test scores
# (computed under the training precision) agree exactly with the saved fp32 model's and its exports'.
AUTO_BF16_MIN_ROWS = 2000


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when a CUDA GPU supports bf16, or the CPU has bf16 dot-product instructions (AVX512-BF16, AMX)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    if platform.system() != "Linux":
        return False
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def resolve_precision(precision: str, task: str, train_rows: int) -> str:
    """The precision a run uses: `precision` itself, or for auto bf16 on native-bf16 hardware for the
    tasks measured to gain from it and runs of at least AUTO_BF16_MIN_ROWS training rows, else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if task in _AUTO_BF16_TASKS and train_rows >= AUTO_BF16_MIN_ROWS and native_bf16() else "fp32"


def cpu_attention(precision: str) -> str | None:
    """attn_implementation for a transformers model trained at `precision` on this machine: eager for bf16
    on the CPU, whose SDPA flash-attention backward in bf16 took 32% of a MiniLM step (10x its fp32 time);
    None (the library's default) otherwise."""
    import torch

    return "eager" if precision == "bf16" and not torch.cuda.is_available() else None
