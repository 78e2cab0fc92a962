"""Figures of a training run (matplotlib, the ``plot`` extra).

    learning_curves(history, path=None)           loss and accuracy (and learning rate) per epoch
    confusion_matrix(cm, class_names, path=None)  counts, coloured by share of the true class
    image_grid(images, path=None, cols=10)        e.g. RBM filters (k, H, W) or generated samples

Each function returns a ``matplotlib.figure.Figure`` and, given a path, also saves it as a PNG
(written to a temporary name, then renamed).  The figures are built with matplotlib's
object-oriented API (``Figure`` objects, never ``pyplot``), so dlkit neither picks nor changes
matplotlib's backend: the functions work on a headless server, and in a notebook a returned
Figure displays inline like any other.
"""
from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:                       # matplotlib is imported only when a figure is made
    from matplotlib.figure import Figure


def _figure(**kw):
    """A Figure with a constrained layout, not registered with pyplot (so nothing to close)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'dlkit[plot]' "
                          "(or pass --no-plots to the scripts)") from e
    return Figure(layout="constrained", **kw)


def _save(fig, path):
    if path is not None:
        tmp = f"{path}.tmp.png"
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    return fig


def _wrap(title, fig):
    """``title`` wrapped to the figure's width (about 13 characters an inch at 10 pt)."""
    width = max(20, int(fig.get_figwidth() * 13))
    return "\n".join(textwrap.wrap(title, width, break_on_hyphens=False))


def _integer_epochs(ax, epochs):
    from matplotlib.ticker import MaxNLocator
    if len(epochs) <= 12:
        ax.set_xticks(epochs)                   # one tick an epoch: never 0.96 ... 1.04
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs):
        lo, hi = min(epochs), max(epochs)
        pad = 0.5 if hi - lo < 4 else 0.03 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)


def learning_curves(history: dict[str, list], path: str | os.PathLike | None = None,
                    title: str = "") -> "Figure":
    """Loss and accuracy per epoch, train and (where present) validation, and the learning rate
    where the history has one; integer epoch ticks.  ``history``: ``train.fit``'s (lists
    keyed "epoch", "loss", "accuracy", optionally "val_loss", "val_accuracy", "lr").

    Example:
        >>> from dlkit import plot
        >>> fig = plot.learning_curves({"epoch": [1, 2], "loss": [0.6, 0.4],
        ...                             "accuracy": [0.8, 0.9]})
        >>> type(fig).__name__              # display it in a notebook, or pass a path to save
        'Figure'
    """
    ep = list(history["epoch"])
    keys = ["loss", "accuracy"]
    if any(v is not None for v in history.get("lr", [])):
        keys.append("lr")
    fig = _figure(figsize=(4.2 * len(keys), 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    marker = dict(marker="o", markersize=4) if len(ep) <= 40 else {}
    for ax, key in zip(axes, keys):
        if key == "lr":
            ax.plot(ep, [np.nan if v is None else v for v in history["lr"]], color="tab:gray",
                    **marker)
            ax.set_ylabel("learning rate (last step of the epoch)")
            top = max([v for v in history["lr"] if v is not None] + [0.0]) or 1.0
            ax.set_ylim(-0.04 * top, 1.06 * top)    # 0 shown, a marker at 0 not cut in half
        else:
            ax.plot(ep, history[key], label="train", **marker)
            val = history.get("val_" + key, [])
            if any(v is not None for v in val):
                ax.plot(ep, [np.nan if v is None else v for v in val], label="validation",
                        **dict(marker, marker="s") if marker else {})
            ax.set_ylabel(key)
            ax.legend()
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        _integer_epochs(ax, ep)
    if title:
        fig.suptitle(_wrap(title, fig))
    return _save(fig, path)


def confusion_matrix(cm: ArrayLike, class_names: Sequence[Any],
                     path: str | os.PathLike | None = None,
                     title: str = "confusion matrix (test)") -> "Figure":
    """``cm[true, predicted]`` counts, each cell coloured by its share of the true class (the
    row), with a colour bar; the diagonal is the per-class recall.  ``cm``: (C, C) integer
    counts (``metrics.confusion_matrix``); ``class_names``: C labels.

    Example:
        >>> from dlkit import metrics, plot
        >>> cm = metrics.confusion_matrix([0, 1, 1], [0, 1, 0], 2)
        >>> fig = plot.confusion_matrix(cm, ["cat", "dog"])
        >>> type(fig).__name__
        'Figure'
    """
    cm = np.asarray(cm)
    norm = cm / np.maximum(1, cm.sum(axis=1, keepdims=True))
    n = len(class_names)
    side = max(4.5, 0.55 * n + 2.5)
    fig = _figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), class_names)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(_wrap(title, fig))
    return _save(fig, path)


def image_grid(images: ArrayLike, path: str | os.PathLike | None = None, cols: int = 10,
               title: str = "", cmap: str = "gray",
               value_range: tuple[float, float] | None = None) -> "Figure":
    """``images`` (k, H, W) as one mosaic, ``cols`` tiles a row, framed by one-pixel white
    gaps; the title sits right above it.  Each tile is scaled to its own min..max (filters),
    or all to ``value_range`` when given (e.g. (0, 1) for probabilities)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"image_grid: expected images of shape (k, H, W) with k >= 1, got "
                         f"{images.shape}")
    k, h, w = images.shape
    cols = max(1, min(cols, k))
    rows = -(-k // cols)
    mosaic = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1))
    if value_range is None:
        lo = images.min(axis=(1, 2), keepdims=True)
        hi = images.max(axis=(1, 2), keepdims=True)
    else:
        lo, hi = value_range
    tiles = np.clip((images - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    for i in range(k):
        r, c = divmod(i, cols)
        mosaic[1 + r * (h + 1):(r + 1) * (h + 1), 1 + c * (w + 1):(c + 1) * (w + 1)] = tiles[i]
    scale = 0.6 * max(1.0, max(h, w) / 28)          # inches a tile: 0.6 up to 28 px
    fig = _figure(figsize=(max(3.0, cols * scale), rows * scale * h / max(h, w) + 0.6))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(_wrap(title, fig), fontsize=10)
    return _save(fig, path)
