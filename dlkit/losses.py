"""Losses: ``fn(output, target) -> (loss, doutput)``; loss a Python float (the batch mean),
doutput = dloss/doutput with the output's shape and dtype.  Inputs are checked on the host
(shapes, dtypes, label range) before the fused kernels of kernels.cpu.losses run.

    softmax_cross_entropy(logits (N, C), labels (N,) ints in [0, C))
    sigmoid_binary_cross_entropy(logits (N,) or (N, 1), targets of the same size in [0, 1])
    mean_squared_error(pred, target)   any shape, same shape
"""
import numpy as np

from kernels.cpu import losses as K

from . import _check as chk


def softmax_cross_entropy(logits, labels):
    logits = chk.floating(logits, "softmax_cross_entropy logits")
    chk.ndim(logits, 2, "softmax_cross_entropy logits", "batch, classes")
    labels = chk.labels(labels, logits.shape[1], logits.shape[0], "softmax_cross_entropy")
    loss, d = K.softmax_cross_entropy(logits, labels)
    return float(loss), d


def _targets(target, out, what):
    target = np.asarray(target)
    if target.size != out.size or target.shape[0] != out.shape[0]:
        raise ValueError(f"{what}: targets of shape {target.shape} do not match the output "
                         f"shape {out.shape}")
    return np.ascontiguousarray(target, dtype=out.dtype).reshape(-1)


def sigmoid_binary_cross_entropy(logits, targets):
    what = "sigmoid_binary_cross_entropy"
    logits = chk.floating(logits, f"{what} logits")
    if logits.ndim not in (1, 2) or (logits.ndim == 2 and logits.shape[1] != 1):
        raise ValueError(f"{what}: expected logits of shape (N,) or (N, 1), got {logits.shape}")
    t = _targets(targets, logits, what)
    if t.size and (t.min() < 0 or t.max() > 1 or not np.isfinite(t).all()):
        raise ValueError(f"{what}: targets must lie in [0, 1], got range "
                         f"[{t.min()}, {t.max()}]")
    loss, d = K.sigmoid_binary_cross_entropy(logits.reshape(-1), t)
    return float(loss), d.reshape(logits.shape)


def mean_squared_error(pred, target):
    what = "mean_squared_error"
    pred = chk.floating(pred, f"{what} pred")
    if np.shape(target) != pred.shape:
        raise ValueError(f"{what}: target shape {np.shape(target)} != pred shape {pred.shape}")
    loss, d = K.mean_squared_error(pred.reshape(-1), _targets(target, pred, what))
    return float(loss), d.reshape(pred.shape)
