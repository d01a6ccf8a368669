"""The parity gate: does the exported graph predict what the PyTorch model predicts, on the run's rows?

Per split: argmax agreement and max |Δ logit|; on test, the accuracy of both and a paired bootstrap
of the difference (exported − PyTorch). fp32 must agree on ≥ 99.9 % of rows; an int8 candidate must
agree on ≥ 99 % and lose at most 0.5 accuracy points on test.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

FP32_AGREEMENT = 0.999
INT8_AGREEMENT = 0.99
INT8_MAX_LOSS = 0.005  # accuracy, as a fraction: 0.5 points


def compare(reference: dict[str, np.ndarray], exported: dict[str, np.ndarray], ys: dict[str, np.ndarray],
            seed: int = 0, resamples: int = 1000) -> dict:
    """Agreement and logit differences per split and overall; test accuracies and their paired bootstrap."""
    from tunesmith.evaluate.stats import accuracy, bootstrap_ci, paired_bootstrap

    out: dict = {"splits": {}}
    agree_n, n = 0, 0
    for split in reference:
        ref, exp = reference[split], exported[split]
        same = ref.argmax(1) == exp.argmax(1)
        agree_n, n = agree_n + int(same.sum()), n + len(same)
        out["splits"][split] = {"n": len(same), "agreement": round(float(same.mean()), 6),
                                "max_abs_logit_diff": float(np.abs(ref - exp).max()) if len(same) else 0.0}
    out["agreement"] = round(agree_n / n, 6) if n else 1.0
    out["max_abs_logit_diff"] = max(s["max_abs_logit_diff"] for s in out["splits"].values())
    if "test" in reference:
        y, a, b = ys["test"], exported["test"].argmax(1), reference["test"].argmax(1)
        out["test_accuracy"] = {"pytorch": bootstrap_ci(y, b, accuracy, resamples, seed=seed),
                                "exported": bootstrap_ci(y, a, accuracy, resamples, seed=seed),
                                "difference": paired_bootstrap(y, a, b, accuracy, resamples, seed=seed)}
    return out


def passes(result: dict, min_agreement: float, max_loss: float | None = None) -> tuple[bool, str]:
    """Whether a comparison clears the bar, and a one-clause reason."""
    if result["agreement"] < min_agreement:
        return False, f"argmax agreement {result['agreement']:.2%} < {min_agreement:.1%}"
    if max_loss is not None:
        diff = result["test_accuracy"]["difference"]
        if -diff["difference"] > max_loss:
            return False, (f"test accuracy {diff['difference'] * 100:+.2f} points "
                           f"[{diff['low'] * 100:+.2f}, {diff['high'] * 100:+.2f}] loses more than "
                           f"{max_loss * 100:.1f}")
    return True, "passes"


def latency_ms(logits_fn, inputs: Sequence, batch_size: int = 1, repeats: int = 40, warmup: int = 3) -> float:
    """Median wall milliseconds of `logits_fn` on batches of `batch_size` inputs (preprocessing included)."""
    batches = [inputs[(i * batch_size) % max(1, len(inputs) - batch_size + 1):][:batch_size] for i in range(repeats)]
    for b in batches[:warmup]:
        logits_fn(b)
    times = []
    for b in batches:
        tic = time.perf_counter()
        logits_fn(b)
        times.append(time.perf_counter() - tic)
    return round(float(np.median(times)) * 1000, 3)
