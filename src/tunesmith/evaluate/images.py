"""Pictures for image runs: a grid of the misclassified test images, most confident mistakes first."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def misclassified_grid(test: pd.DataFrame, logits: np.ndarray, y: np.ndarray, labels: list[str], path: Path,
                       top: int = 24, columns: int = 6) -> int:
    """Write the grid to `path` (PNG, written under a temporary name, then renamed); returns the images shown."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tunesmith.evaluate.metrics import softmax

    probs = softmax(logits)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:top]
    if len(wrong) == 0:
        return 0
    rows = -(-len(wrong) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        img = test["image"].iloc[i]
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                  vmin=0, vmax=255)
        ax.set_title(f"{labels[y[i]]} -> {labels[pred[i]]}\np={probs[i, pred[i]]:.2f} {test['text'].iloc[i]}"[:60],
                     fontsize=7)
    fig.suptitle("misclassified test images (true -> predicted, confidence)", fontsize=9)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return len(wrong)
