"""gradcheck: compare a layer's backward with float64 central differences.

    gradcheck(layer, params, x, *, key=None, train=True, eps=1e-6, tol=1e-6, max_elems=64)
        -> {"dx": err, "fc1/W": err, ...}   (max relative error per tensor)

The scalar checked is L = sum(forward(params, x) * R) with a fixed random R, so dL/dy = R goes
into ``backward``.  Each tensor's error is max |analytic - numeric| / max(1, max |numeric|)
over up to ``max_elems`` sampled elements.  Raises AssertionError naming the worst tensor when
an error exceeds ``tol``.  Pass float64 params and inputs (``tree.map(lambda a:
a.astype(np.float64), params)``); the same ``key`` is used for every forward, so layers with
randomness (dropout) are checked with a fixed mask.  A ``StatefulLayer`` (BatchNorm) is
checked with ``state=``: every forward gets that same state (forward never modifies it), so
the gradient checked is that of the training-mode function of params and x at that state.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import tree
from .layers.base import Layer, StatefulLayer, is_stateful


def gradcheck(layer: Layer | StatefulLayer, params: dict[str, Any], x: NDArray, *,
              key: Any = None, train: bool = True, eps: float = 1e-6, tol: float = 1e-6,
              max_elems: int = 64, check_dx: bool = True, seed: int = 0,
              state: dict | None = None) -> dict[str, float]:
    """Check a layer's backward against float64 central differences of its forward.

    The scalar checked is ``L = sum(forward(params, x) * R)`` with a fixed random R (drawn
    from ``seed``).  Neither ``params`` nor ``x`` is modified (copies are perturbed).

    Args:
        layer: any ``Layer`` (a single layer or a model).
        params: the layer's params, float64.
        x: a float64 input batch (or integer ids, for which no dx is checked).
        key: the key for every forward (so dropout is checked with one fixed mask).
        train: forward's ``train``.
        eps: the finite-difference step.
        tol: the largest relative error accepted.
        max_elems: elements sampled per tensor (all of them when it has fewer).
        check_dx: also check the input gradient.
        seed: for R and the sampled elements.
        state: the state of a ``StatefulLayer`` (required for one, refused for a Layer),
            given unchanged to every forward; it is not differentiated.

    Returns:
        ``{"dx": err, "fc1/W": err, ...}``: per tensor, max |analytic - numeric| /
        max(1, max |numeric|) over the sampled elements.

    Raises:
        TypeError: a floating param or input that is not float64.
        ValueError: state= missing for a StatefulLayer, or given for a Layer.
        AssertionError: an error above ``tol`` (naming the worst tensor), or a gradient
            missing or of the wrong shape.

    Example:
        >>> import numpy as np
        >>> from dlkit import gradcheck, layers as L, random, tree
        >>> layer = L.Dense(3, activation="tanh")
        >>> _, params = layer.init(random.key(0), (4,), np.float64)
        >>> x = np.random.default_rng(0).standard_normal((2, 4))
        >>> errors = gradcheck(layer, params, x)
        >>> sorted(errors), max(errors.values()) < 1e-6
        (['W', 'b', 'dx'], True)
    """
    _, layer_forward, backward = layer
    if is_stateful(layer) and state is None:
        raise ValueError("gradcheck: the layer has state (a StatefulLayer); pass state=, e.g. "
                         "the state its init returned")
    if not is_stateful(layer) and state is not None:
        raise ValueError("gradcheck: state= was given but the layer has no state (a Layer, "
                         "not a StatefulLayer); leave state out")

    def forward(params, x, *, key, train):
        if state is None:
            return layer_forward(params, x, key=key, train=train)
        return layer_forward(params, x, state=state, key=key, train=train)[:2]

    for name, a in [("x", x), *tree.flatten(params).items()]:
        if np.asarray(a).dtype.kind == "f" and np.asarray(a).dtype != np.float64:
            raise TypeError(f"gradcheck: {name} is {np.asarray(a).dtype}; use float64 so "
                            "finite differences are meaningful")
    rng = np.random.default_rng(seed)
    params = tree.copy(params)
    x = np.array(x, copy=True)
    y, cache = forward(params, x, key=key, train=train)
    R = rng.standard_normal(y.shape)
    dx, grads = backward(params, cache, R.astype(y.dtype), need_dx=check_dx)

    def loss():
        return float(np.sum(forward(params, x, key=key, train=train)[0] * R))

    def numeric(arr, idx):
        old = arr[idx]
        arr[idx] = old + eps
        lp = loss()
        arr[idx] = old - eps
        lm = loss()
        arr[idx] = old
        return (lp - lm) / (2 * eps)

    targets = tree.flatten(params)
    analytic = tree.flatten(grads)
    if check_dx and x.dtype.kind == "f":
        targets = {"dx": x, **targets}
        analytic = {"dx": dx, **analytic}
    errors = {}
    for name, arr in targets.items():
        g = analytic.get(name)
        if g is None or g.shape != arr.shape:
            raise AssertionError(f"gradcheck: gradient for {name!r} missing or of shape "
                                 f"{None if g is None else g.shape}, expected {arr.shape}")
        flat_idx = np.arange(arr.size)
        if arr.size > max_elems:
            flat_idx = rng.choice(arr.size, max_elems, replace=False)
        num, ana = [], []
        for f in flat_idx:
            idx = np.unravel_index(f, arr.shape)
            num.append(numeric(arr, idx))
            ana.append(g[idx])
        num, ana = np.array(num), np.array(ana)
        errors[name] = float(np.max(np.abs(num - ana)) / max(1.0, np.max(np.abs(num)))) \
            if len(num) else 0.0
    worst = max(errors, key=errors.get) if errors else None
    if worst is not None and errors[worst] > tol:
        raise AssertionError(f"gradcheck: {worst!r} relative error {errors[worst]:.3g} > {tol:g}; "
                             f"all errors: {errors}")
    return errors
