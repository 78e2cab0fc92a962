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
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _check as chk
from . import device


def _device_loss(stats, what, bad):
    """The loss from the CUDA kernels' (loss, first bad index) device array; raises on a bad
    label or target, described by ``bad(i)``."""
    loss, first = stats.copy_to_host()
    if first >= 0:
        raise ValueError(f"{what}: {bad(int(first))}")
    return float(loss)


def softmax_cross_entropy(logits: NDArray[np.floating],
                          labels: ArrayLike) -> tuple[float, NDArray[np.floating]]:
    """Softmax cross-entropy of integer class labels, averaged over the batch, and its gradient.

    ``loss = mean_n [logsumexp(logits[n]) - logits[n, labels[n]]]`` (a stable log-sum-exp) and
    ``dlogits = (softmax(logits) - onehot(labels)) / N``, computed together in one fused kernel.

    Args:
        logits: (N, C) float32 or float64 array, unnormalised class scores (a numpy array, or a
            numba CUDA device array to run the CUDA kernel).
        labels: (N,) integer class ids in ``[0, C)`` (any integer dtype; numpy or device).

    Returns:
        ``(loss, dlogits)``: the mean loss as a Python float, and dloss/dlogits with the shape
        (N, C) and dtype of ``logits`` (on the device for device logits).

    Raises:
        TypeError: logits not float32/float64, labels not integers, or device labels with
            host logits.
        ValueError: logits not 2-D, labels not of shape (N,), or a label outside ``[0, C)``
            (the message names the first bad label and its position).

    Example:
        >>> import numpy as np
        >>> from dlkit import losses
        >>> logits = np.zeros((2, 3), np.float32)          # uniform over 3 classes
        >>> loss, dlogits = losses.softmax_cross_entropy(logits, np.array([0, 2]))
        >>> round(loss, 4)                                 # log(3)
        1.0986
        >>> dlogits.shape, dlogits.dtype
        ((2, 3), dtype('float32'))
        >>> np.round(dlogits[0], 4)                        # (1/3 - [1, 0, 0]) / 2
        array([-0.3333,  0.1667,  0.1667], dtype=float32)
    """
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


def sigmoid_binary_cross_entropy(logits: NDArray[np.floating],
                                 targets: ArrayLike) -> tuple[float, NDArray[np.floating]]:
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], averaged, with its
    gradient.

    ``loss = mean [max(z, 0) - z t + log(1 + exp(-|z|))]`` (stable for any z) and
    ``dlogits = (sigmoid(z) - t) / N``.  Soft targets (label smoothing) are allowed.

    Args:
        logits: (N,) or (N, 1) float32 or float64 array of scores (numpy or CUDA device).
        targets: N numbers in ``[0, 1]`` of shape (N,) or (N, 1), any numeric dtype (0/1
            integer labels are converted to the logits' dtype).

    Returns:
        ``(loss, dlogits)``: the mean loss as a Python float, and dloss/dlogits with the shape
        and dtype of ``logits``.

    Raises:
        TypeError: logits not float32/float64, or targets on the device with host logits.
        ValueError: logits of another shape, targets of another size, or a target outside
            ``[0, 1]`` (or not finite).

    Example:
        >>> import numpy as np
        >>> from dlkit import losses
        >>> z = np.array([0.0, 0.0], np.float32)           # sigmoid(0) = 0.5
        >>> loss, dz = losses.sigmoid_binary_cross_entropy(z, np.array([1, 0]))
        >>> round(loss, 4)                                 # log(2)
        0.6931
        >>> dz                                             # (0.5 - t) / 2
        array([-0.25,  0.25], dtype=float32)
    """
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


def mean_squared_error(pred: NDArray[np.floating],
                       target: ArrayLike) -> tuple[float, NDArray[np.floating]]:
    """Mean squared error over every element, and its gradient.

    ``loss = mean (pred - target)**2`` and ``dpred = 2 (pred - target) / pred.size``.

    Args:
        pred: float32 or float64 array of any shape (numpy or CUDA device).
        target: numbers of the same shape as ``pred``, converted to its dtype.

    Returns:
        ``(loss, dpred)``: the mean as a Python float, and dloss/dpred with the shape and dtype
        of ``pred``.

    Raises:
        TypeError: pred not float32/float64.
        ValueError: target of another shape.

    Example:
        >>> import numpy as np
        >>> from dlkit import losses
        >>> loss, d = losses.mean_squared_error(np.array([1.0, 3.0]), np.array([0.0, 1.0]))
        >>> loss                                           # (1 + 4) / 2
        2.5
        >>> d                                              # 2 * [1, 2] / 2
        array([1., 2.])
    """
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
