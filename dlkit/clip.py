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
"""
import math

import numpy as np

from . import tree


def global_norm(grads):
    total = 0.0
    for g in tree.leaves(grads):
        g = np.ascontiguousarray(g).reshape(-1)
        total += float(np.dot(g, g))        # BLAS dot (one thread: deterministic), in float64
    return math.sqrt(total)                 # across leaves


def _positive(v, what):
    if not isinstance(v, (int, float, np.floating, np.integer)) or not v > 0 \
            or not math.isfinite(v):
        raise ValueError(f"{what} must be a positive finite number, got {v!r}")
    return float(v)


def clip_by_global_norm(grads, max_norm):
    max_norm = _positive(max_norm, "clip_by_global_norm: max_norm")
    norm = global_norm(grads)
    if not math.isfinite(norm) or norm <= max_norm:
        return grads
    scale = max_norm / norm
    return tree.map(lambda g: g * g.dtype.type(scale), grads)


def clip_by_value(grads, limit):
    limit = _positive(limit, "clip_by_value: limit")
    return tree.map(lambda g: np.clip(g, -limit, limit).astype(g.dtype, copy=False), grads)


def by_global_norm(max_norm):
    """``grad_transform`` for dlkit.train.fit: clip by global norm ``max_norm``."""
    max_norm = _positive(max_norm, "by_global_norm: max_norm")
    return lambda grads: clip_by_global_norm(grads, max_norm)
