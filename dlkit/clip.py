"""Gradient clipping over parameter trees (for recurrent nets above all, whose gradients can
explode through time).

    global_norm(grads) -> float                 sqrt of the sum of squares of every leaf
    clip_by_global_norm(grads, max_norm) -> grads
        every leaf scaled by min(1, max_norm / global_norm), as torch.nn.utils.clip_grad_norm_
        and optax.clip_by_global_norm: the direction of the update is kept.  Returns new
        arrays; the tree's structure and dtypes are kept.
    clip_by_value(grads, limit) -> grads        each element clipped to [-limit, limit]
    by_global_norm(max_norm) -> fn(grads) -> grads
        the transform to pass as ``dlkit.train.fit(..., grad_transform=...)``.

Each leaf's sum of squares is one BLAS dot in the leaf's dtype (BLAS runs on one thread under
dlkit, so it is the same run to run); the leaves are added in float64 in sorted-key order.
Device grads (numba CUDA arrays): the sums of squares are float64 reductions on the device and
clip_by_global_norm computes the scale there too, so clipping reads nothing back (global_norm
reads the per-leaf sums back to return a float).  It then always returns new arrays (scaled by
exactly 1 when the norm is within max_norm).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import device, tree
from .tree import Tree


def _device_sums(leaves, what):
    """(kernels.cuda._array, per-leaf float64 sums of squares on the device), or None when
    the leaves are host arrays."""
    if not any(device.is_device_array(g) for g in leaves):
        return None
    K = device.kernels("_array", *leaves, what=what)
    return K, K.sum_squares(leaves)


def global_norm(grads: Tree) -> float:
    """The L2 norm of all the leaves together: ``sqrt(sum over leaves of sum(g**2))``.

    Args:
        grads: nested dict of float arrays (numpy, or CUDA device arrays).

    Returns:
        The norm as a Python float (accumulated in float64 across leaves).

    Example:
        >>> import numpy as np
        >>> from dlkit import clip
        >>> clip.global_norm({"a": np.array([3.0]), "b": {"c": np.array([4.0])}})
        5.0
    """
    leaves = tree.leaves(grads)
    dev = _device_sums(leaves, "global_norm")
    if dev is not None:
        return math.sqrt(float(np.sum(dev[1].copy_to_host())))
    total = 0.0
    for g in leaves:
        g = np.ascontiguousarray(g).reshape(-1)
        total += float(np.dot(g, g))        # BLAS dot (one thread: deterministic), in float64
    return math.sqrt(total)                 # across leaves


def _positive(v, what):
    if not isinstance(v, (int, float, np.floating, np.integer)) or not v > 0 \
            or not math.isfinite(v):
        raise ValueError(f"{what} must be a positive finite number, got {v!r}")
    return float(v)


def clip_by_global_norm(grads: Tree, max_norm: float) -> Tree:
    """Scale every leaf by ``min(1, max_norm / global_norm(grads))``, keeping the direction.

    As ``torch.nn.utils.clip_grad_norm_`` and ``optax.clip_by_global_norm``.  Host grads
    within the bound (or with a non-finite norm) are returned as they are; otherwise new
    arrays of the same dtypes.  Device grads always get new arrays, scaled on the device.

    Args:
        grads: nested dict of float arrays (numpy or CUDA device).
        max_norm: the largest global norm allowed, a positive finite number.

    Returns:
        A tree of the same structure, shapes and dtypes.

    Raises:
        ValueError: ``max_norm`` not a positive finite number.

    Example:
        >>> import numpy as np
        >>> from dlkit import clip
        >>> g = {"W": np.array([3.0, 4.0], np.float32)}          # norm 5
        >>> clip.clip_by_global_norm(g, 1.0)["W"]
        array([0.6, 0.8], dtype=float32)
    """
    max_norm = _positive(max_norm, "clip_by_global_norm: max_norm")
    flat = tree.flatten(grads)
    dev = _device_sums(list(flat.values()), "clip_by_global_norm")
    if dev is not None:
        K, sums = dev
        return tree.unflatten(dict(zip(flat, K.scale_to_norm(list(flat.values()), sums,
                                                             max_norm))))
    norm = global_norm(grads)
    if not math.isfinite(norm) or norm <= max_norm:
        return grads
    scale = max_norm / norm
    return tree.map(lambda g: g * g.dtype.type(scale), grads)


def clip_by_value(grads: Tree, limit: float) -> Tree:
    """Clip each element of each leaf to ``[-limit, limit]`` (new host arrays, same dtypes).

    Args:
        grads: nested dict of numpy float arrays.
        limit: a positive finite number.

    Raises:
        ValueError: ``limit`` not a positive finite number.

    Example:
        >>> import numpy as np
        >>> from dlkit import clip
        >>> clip.clip_by_value({"W": np.array([-3.0, 0.5, 2.0])}, 1.0)["W"]
        array([-1. ,  0.5,  1. ])
    """
    limit = _positive(limit, "clip_by_value: limit")
    return tree.map(lambda g: np.clip(g, -limit, limit).astype(g.dtype, copy=False), grads)


def by_global_norm(max_norm: float) -> Callable[[Tree], Tree]:
    """The ``grad_transform`` for ``dlkit.train.fit`` that clips by global norm ``max_norm``.

    Raises:
        ValueError: ``max_norm`` not a positive finite number (raised here, not mid-training).

    Example:
        >>> import numpy as np
        >>> from dlkit import clip
        >>> transform = clip.by_global_norm(1.0)     # fit(..., grad_transform=transform)
        >>> transform({"W": np.array([0.0, 2.0])})["W"]
        array([0., 1.])
    """
    max_norm = _positive(max_norm, "by_global_norm: max_norm")
    return lambda grads: clip_by_global_norm(grads, max_norm)
