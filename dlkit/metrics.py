"""Classification metrics over integer labels (host-side numpy; cheap next to training).

    accuracy(y_true, y_pred)                      -> float
    confusion_matrix(y_true, y_pred, n_classes)   -> (n_classes, n_classes) int64, rows = true
    precision_recall_f1(y_true, y_pred, n_classes)-> dict of per-class arrays and macro means
    classification_report(y_true, y_pred, class_names) -> printable table (str)

Classes with no predictions (precision) or no samples (recall) get 0, as scikit-learn's
zero_division=0.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _pair(y_true, y_pred):
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"metrics: y_true and y_pred must be 1-D of the same length, got "
                         f"{t.shape} and {p.shape}")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The fraction of positions where ``y_pred == y_true`` (0.0 for empty inputs).

    Args:
        y_true: (N,) integer labels.
        y_pred: (N,) predicted labels (e.g. ``dlkit.train.predictions(logits)``).

    Raises:
        ValueError: inputs not 1-D of the same length.

    Example:
        >>> from dlkit import metrics
        >>> metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2])
        0.75
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> NDArray[np.int64]:
    """Counts of (true, predicted) label pairs.

    Args:
        y_true: (N,) integer labels in ``[0, n_classes)``.
        y_pred: (N,) integer labels in ``[0, n_classes)``.
        n_classes: the number of classes C.

    Returns:
        (C, C) int64 array; ``cm[i, j]`` counts samples of class i predicted as j (rows are
        the true classes, as scikit-learn's).

    Raises:
        ValueError: inputs not 1-D of the same length, or a label outside ``[0, n_classes)``.

    Example:
        >>> from dlkit import metrics
        >>> metrics.confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
        array([[1, 0, 0],
               [0, 1, 1],
               [0, 0, 1]])
    """
    t, p = _pair(y_true, y_pred)
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"confusion_matrix: {name} has values outside [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (t.astype(np.int64), p.astype(np.int64)), 1)
    return cm


def precision_recall_f1(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> dict[str, Any]:
    """Per-class precision, recall and F1, with their unweighted (macro) means.

    A class with no predictions gets precision 0, one with no samples recall 0 (scikit-learn's
    ``zero_division=0``).

    Args:
        y_true, y_pred: (N,) integer labels in ``[0, n_classes)``.
        n_classes: the number of classes C.

    Returns:
        ``{"precision", "recall", "f1"}``: (C,) float64 arrays; ``"support"``: (C,) int64
        samples per class; ``"macro_precision"``, ``"macro_recall"``, ``"macro_f1"``: floats.

    Raises:
        ValueError: as ``confusion_matrix``.

    Example:
        >>> from dlkit import metrics
        >>> r = metrics.precision_recall_f1([0, 1, 1, 2], [0, 1, 2, 2], 3)
        >>> r["precision"], r["recall"], r["macro_f1"]
        (array([1. , 1. , 0.5]), array([1. , 0.5, 1. ]), 0.7777777777777777)
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    pred, true = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true,
            "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean()),
            "macro_f1": float(f1.mean())}


def classification_report(y_true: ArrayLike, y_pred: ArrayLike,
                          class_names: Sequence[Any]) -> str:
    """A printable table of per-class precision, recall, F1 and support, the macro averages and
    the accuracy (the layout of scikit-learn's report).

    Args:
        y_true, y_pred: (N,) integer labels in ``[0, len(class_names))``.
        class_names: one name per class, in label order.

    Raises:
        ValueError: as ``confusion_matrix``.

    Example:
        >>> from dlkit import metrics
        >>> print(metrics.classification_report([0, 1, 1], [0, 1, 0], ["cat", "dog"]))
        class        precision  recall      f1  support
        cat             0.5000  1.0000  0.6667        1
        dog             1.0000  0.5000  0.6667        2
        macro avg       0.7500  0.7500  0.6667        3
        accuracy                           0.6667
    """
    r = precision_recall_f1(y_true, y_pred, len(class_names))
    w = max(12, max(len(str(c)) for c in class_names))
    lines = [f"{'class':<{w}} precision  recall      f1  support"]
    for i, c in enumerate(class_names):
        lines.append(f"{str(c):<{w}} {r['precision'][i]:9.4f} {r['recall'][i]:7.4f} "
                     f"{r['f1'][i]:7.4f} {r['support'][i]:8d}")
    lines.append(f"{'macro avg':<{w}} {r['macro_precision']:9.4f} {r['macro_recall']:7.4f} "
                 f"{r['macro_f1']:7.4f} {int(r['support'].sum()):8d}")
    lines.append(f"{'accuracy':<{w}} {accuracy(y_true, y_pred):25.4f}")
    return "\n".join(lines)
