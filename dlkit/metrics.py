"""Classification metrics over integer labels (host-side numpy; cheap next to training).

    accuracy(y_true, y_pred)                      -> float
    confusion_matrix(y_true, y_pred, n_classes)   -> (n_classes, n_classes) int64, rows = true
    precision_recall_f1(y_true, y_pred, n_classes)-> dict of per-class arrays and macro means
    classification_report(y_true, y_pred, class_names) -> printable table (str)

Classes with no predictions (precision) or no samples (recall) get 0, as scikit-learn's
zero_division=0.
"""
import numpy as np


def _pair(y_true, y_pred):
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"metrics: y_true and y_pred must be 1-D of the same length, got "
                         f"{t.shape} and {p.shape}")
    return t, p


def accuracy(y_true, y_pred):
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def confusion_matrix(y_true, y_pred, n_classes):
    t, p = _pair(y_true, y_pred)
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"confusion_matrix: {name} has values outside [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (t.astype(np.int64), p.astype(np.int64)), 1)
    return cm


def precision_recall_f1(y_true, y_pred, n_classes):
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


def classification_report(y_true, y_pred, class_names):
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
