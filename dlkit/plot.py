"""PNG figures for the example scripts (matplotlib, the ``plot`` extra; Agg backend, no screen).

    learning_curves(history, path)          loss and accuracy per epoch, train and validation
    confusion_matrix(cm, class_names, path) counts with row-normalised colours
    image_grid(images, path, cols=10)       e.g. RBM filters (k, H, W) or generated samples
"""
import os
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike


def _plt():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'dlkit[plot]' "
                          "(or pass --no-plots)") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    import os
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def learning_curves(history: dict[str, list], path: str | os.PathLike, title: str = "") -> None:
    """Loss and accuracy per epoch, train and (where present) validation, saved as a PNG at
    ``path``.  ``history``: ``train.fit``'s (lists keyed "epoch", "loss", "accuracy",
    optionally "val_loss", "val_accuracy")."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ep = history["epoch"]
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(ep, history[key], "o-", label="train")
        if any(v is not None for v in history.get("val_" + key, [])):
            ax.plot(ep, history["val_" + key], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def confusion_matrix(cm: ArrayLike, class_names: Sequence[Any], path: str | os.PathLike,
                     title: str = "confusion matrix (test)") -> None:
    """``cm[true, predicted]`` counts (C, C) (``metrics.confusion_matrix``), coloured by each
    row's share, saved as a PNG at ``path``; ``class_names``: C labels."""
    plt = _plt()
    cm = np.asarray(cm)
    norm = cm / np.maximum(1, cm.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    n = len(class_names)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def image_grid(images: ArrayLike, path: str | os.PathLike, cols: int = 10, title: str = "",
               cmap: str = "gray") -> None:
    """images (k, H, W); each tile scaled to its own min..max."""
    plt = _plt()
    images = np.asarray(images, dtype=np.float64)
    k = len(images)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            im = images[i]
            lo, hi = im.min(), im.max()
            ax.imshow((im - lo) / (hi - lo + 1e-12), cmap=cmap)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
