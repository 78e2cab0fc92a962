"""Combinators over layers.

    serial(("fc1", L.Dense(128)), ("act1", L.Relu()), ...) -> Layer
        params {layer_name: {param_name: array}} for the layers that have params; a bare layer
        instead of a (name, layer) pair is named by its position ("0", "1", ...).
    value_and_grad(model, loss_fn) -> fn(params, x, y, *, key=None) -> (loss, out, grads)
        forward in training mode, the loss, and backward in one call; loss_fn(out, y) returns
        (loss, dout) like the functions in dlkit.losses.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .layers.base import Layer
from .random import fold_in


def _named(layers):
    named = []
    for i, item in enumerate(layers):
        name, layer = item if isinstance(item, tuple) and len(item) == 2 \
            and isinstance(item[0], str) else (str(i), item)
        if not isinstance(layer, Layer):
            raise TypeError(f"serial: item {i} ({name!r}) is not a Layer: {type(layer).__name__}")
        if "/" in name:
            raise ValueError(f"serial: layer name {name!r} must not contain '/'")
        named.append((name, layer))
    names = [n for n, _ in named]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"serial: duplicate layer names {sorted(dup)}")
    return named


def _in_layer(name, fn, *args, **kw):
    """Run a layer function; prefix its validation errors with the layer's name."""
    try:
        return fn(*args, **kw)
    except (ValueError, TypeError) as e:
        raise type(e)(f"layer {name!r}: {e}") from None


def serial(*layers: Layer | tuple[str, Layer]) -> Layer:
    """Compose layers in sequence into one Layer (a model, itself a layer).

    Args:
        *layers: ``(name, layer)`` pairs, or bare layers (named by position: "0", "1", ...).
            Names must be unique and must not contain "/".

    Returns:
        A ``Layer``.  init chains the shapes through every layer and returns params
        ``{layer_name: {param_name: array}}`` for the layers that have params (saved keys read
        ``fc1/W``).  forward passes ``x`` through each layer (each gets its own key folded
        from ``key``) and returns ``(y, caches)``; backward returns ``(dx, grads)`` with grads
        shaped like params.  A layer's validation error is prefixed with its name.

    Raises:
        TypeError: an item is not a Layer.
        ValueError: duplicate names, or a name with "/".

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, random
        >>> model = nn.serial(("fc1", L.Dense(16)), ("act1", L.Relu()), ("fc2", L.Dense(3)))
        >>> out_shape, params = model.init(random.key(0), (8,))
        >>> out_shape, {name: sorted(p) for name, p in params.items()}
        ((3,), {'fc1': ['W', 'b'], 'fc2': ['W', 'b']})
        >>> logits, caches = model.forward(params, np.ones((4, 8), np.float32))
        >>> logits.shape
        (4, 3)
        >>> dx, grads = model.backward(params, caches, np.ones_like(logits))
        >>> dx.shape, grads["fc1"]["W"].shape
        ((4, 8), (8, 16))
    """
    named = _named(layers)
    names = {n for n, _ in named}

    def init(key, in_shape, dtype=np.float32):
        params, shape = {}, tuple(in_shape)
        for i, (name, layer) in enumerate(named):
            shape, p = _in_layer(name, layer.init, fold_in(key, i), shape, dtype)
            if p:
                params[name] = p
        return shape, params

    def check_params(params, what):
        if not isinstance(params, dict):
            raise TypeError(f"{what}: params must be a dict, got {type(params).__name__}")
        extra = sorted(set(params) - names)
        if extra:
            raise ValueError(f"{what}: params has entries {extra} that match no layer; "
                             f"layers are {[n for n, _ in named]}")

    def forward(params, x, *, key=None, train=False):
        check_params(params, "serial")
        caches = []
        for i, (name, layer) in enumerate(named):
            k = None if key is None else fold_in(key, i)
            x, c = _in_layer(name, layer.forward, params.get(name, {}), x, key=k, train=train)
            caches.append(c)
        return x, caches

    def backward(params, caches, dy, *, need_dx=True):
        check_params(params, "serial backward")
        if type(caches) is not list or len(caches) != len(named):
            raise TypeError(f"serial backward: expected the list of {len(named)} caches its "
                            f"forward returned, got {type(caches).__name__}"
                            + (f" of {len(caches)}" if isinstance(caches, (list, tuple)) else ""))
        # without need_dx, backpropagation stops at the first layer with params, which skips
        # its input gradient (the first dense layer after a Flatten skips its dx GEMM)
        first = next((i for i, (name, _) in enumerate(named) if params.get(name)), 0)
        grads = {}
        for i in range(len(named) - 1, -1 if need_dx else first - 1, -1):
            name, layer = named[i]
            dy, g = _in_layer(name, layer.backward, params.get(name, {}), caches[i], dy,
                              need_dx=need_dx or i > first)
            if g:
                grads[name] = g
        return dy, grads

    return Layer(init, forward, backward)


def value_and_grad(model: Layer, loss_fn: Callable[[Any, Any], tuple[float, Any]]
                   ) -> Callable[..., tuple[float, Any, dict]]:
    """Forward (train=True), loss and backward in one call; the input gradient is skipped.

    Args:
        model: a ``Layer`` (usually ``nn.serial(...)``).
        loss_fn: ``loss_fn(out, y) -> (loss, dout)``, like the functions in ``dlkit.losses``.

    Returns:
        ``fn(params, x, y, *, key=None) -> (loss, out, grads)``: the loss (a float), the
        model's output and dloss/dparams shaped like params.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, losses, nn, random
        >>> model = nn.serial(("fc", L.Dense(3)))
        >>> _, params = model.init(random.key(0), (4,))
        >>> step = nn.value_and_grad(model, losses.softmax_cross_entropy)
        >>> loss, logits, grads = step(params, np.ones((2, 4), np.float32), np.array([0, 2]))
        >>> logits.shape, grads["fc"]["W"].shape, isinstance(loss, float)
        ((2, 3), (4, 3), True)
    """
    _, forward, backward = model

    def fn(params, x, y, *, key=None):
        out, cache = forward(params, x, key=key, train=True)
        loss, dout = loss_fn(out, y)
        _, grads = backward(params, cache, dout, need_dx=False)
        return loss, out, grads

    return fn
