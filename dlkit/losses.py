"""Losses: ``fn(output, target) -> (loss, doutput)``; loss a Python float (the batch mean),
doutput = dloss/doutput with the output's shape and dtype.  Inputs are checked on the host
(shapes, dtypes, label range) before the fused kernels of kernels.cpu.losses run.

    softmax_cross_entropy(logits (N, C), labels (N,) ints in [0, C))
    sigmoid_binary_cross_entropy(logits (N,) or (N, 1), targets of the same size in [0, 1])
    mean_squared_error(pred, target)   any shape, same shape

Device outputs (numba CUDA arrays) run kernels.cuda.losses: labels/targets given as numpy are
checked on the host and copied to the device; device labels/targets are checked by the kernel
itself, which reports the first bad one with the loss.  Reading the loss back is the one
device-to-host copy of a training step (16 bytes).
"""
import numpy as np

from . import _check as chk
from . import device


def _device_loss(stats, what, bad):
    """The loss from the CUDA kernels' (loss, first bad index) device array; raises on a bad
    label or target, described by ``bad(i)``."""
    loss, first = stats.copy_to_host()
    if first >= 0:
        raise ValueError(f"{what}: {bad(int(first))}")
    return float(loss)


def softmax_cross_entropy(logits, labels):
    what = "softmax_cross_entropy"
    logits = chk.floating(logits, f"{what} logits")
    chk.ndim(logits, 2, f"{what} logits", "batch, classes")
    N, C = logits.shape
    if device.on_device(logits):
        labels = device.upload(chk.labels(labels, C, N, what))
        stats, d = device.kernels("losses", logits, labels, what=what).softmax_cross_entropy(
            logits, labels)
        return _device_loss(stats, what, lambda i: (
            f"label {int(labels[i:i + 1].copy_to_host()[0])} at position {i} is outside "
            f"[0, {C}) for {C} classes")), d
    if device.is_device_array(labels):
        raise TypeError(f"{what}: labels are on the device but the logits are a numpy array; "
                        f"move both with dlkit.device.to_device")
    labels = chk.labels(labels, C, N, what)
    loss, d = device.kernels("losses").softmax_cross_entropy(logits, labels)
    return float(loss), d


def _targets(target, out, what):
    """Targets matching ``out`` in size and leading axis, flat, C-contiguous, out's dtype, and
    where out lives (host targets for a device output are copied to the device)."""
    if device.is_device_array(target):
        if not device.on_device(out):
            raise TypeError(f"{what}: targets are on the device but the output is a numpy "
                            f"array; move both with dlkit.device.to_device")
        if target.size != out.size or target.shape[0] != out.shape[0]:
            raise ValueError(f"{what}: targets of shape {tuple(target.shape)} do not match the "
                             f"output shape {tuple(out.shape)}")
        if target.dtype.kind not in "iufb":
            raise TypeError(f"{what}: targets must be numbers, got dtype {target.dtype}")
        target = chk.contiguous(target, what)
        if target.dtype != out.dtype:   # e.g. 0/1 integer labels: converted on the device
            target = device.kernels("_array", target, what=what).astype(target, out.dtype)
        return target.reshape(-1)
    target = np.asarray(target)
    if target.size != out.size or target.shape[0] != out.shape[0]:
        raise ValueError(f"{what}: targets of shape {target.shape} do not match the output "
                         f"shape {tuple(out.shape)}")
    return np.ascontiguousarray(target, dtype=out.dtype).reshape(-1)


def sigmoid_binary_cross_entropy(logits, targets):
    what = "sigmoid_binary_cross_entropy"
    logits = chk.floating(logits, f"{what} logits")
    if logits.ndim not in (1, 2) or (logits.ndim == 2 and logits.shape[1] != 1):
        raise ValueError(f"{what}: expected logits of shape (N,) or (N, 1), got "
                         f"{tuple(logits.shape)}")
    t = _targets(targets, logits, what)
    if device.on_device(logits):
        if not device.is_device_array(t):
            _check_unit_interval(t, what)
            t = device.upload(t)
        stats, d = device.kernels("losses", logits, t, what=what).sigmoid_binary_cross_entropy(
            logits.reshape(-1), t)
        return _device_loss(stats, what, lambda i: (
            f"target {t[i:i + 1].copy_to_host()[0]} at position {i} is outside [0, 1]")), \
            d.reshape(logits.shape)
    _check_unit_interval(t, what)
    loss, d = device.kernels("losses").sigmoid_binary_cross_entropy(logits.reshape(-1), t)
    return float(loss), d.reshape(logits.shape)


def _check_unit_interval(t, what):
    if t.size and (t.min() < 0 or t.max() > 1 or not np.isfinite(t).all()):
        raise ValueError(f"{what}: targets must lie in [0, 1], got range "
                         f"[{t.min()}, {t.max()}]")


def mean_squared_error(pred, target):
    what = "mean_squared_error"
    pred = chk.floating(pred, f"{what} pred")
    if tuple(getattr(target, "shape", np.shape(target))) != tuple(pred.shape):
        raise ValueError(f"{what}: target shape {tuple(getattr(target, 'shape', np.shape(target)))}"
                         f" != pred shape {tuple(pred.shape)}")
    t = _targets(target, pred, what)
    if device.on_device(pred):
        t = device.upload(t)
        stats, d = device.kernels("losses", pred, t, what=what).mean_squared_error(
            pred.reshape(-1), t)
        return _device_loss(stats, what, lambda i: f"bad target at position {i}"), \
            d.reshape(pred.shape)
    loss, d = device.kernels("losses").mean_squared_error(pred.reshape(-1), t)
    return float(loss), d.reshape(pred.shape)
