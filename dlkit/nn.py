"""Combinators over layers.

    serial(("fc1", L.Dense(128)), ("act1", L.Relu()), ...) -> Layer
        params {layer_name: {param_name: array}} for the layers that have params; a bare layer
        instead of a (name, layer) pair is named by its position ("0", "1", ...).
    value_and_grad(model, loss_fn) -> fn(params, x, y, *, key=None) -> (loss, out, grads)
        forward in training mode, the loss, and backward in one call; loss_fn(out, y) returns
        (loss, dout) like the functions in dlkit.losses.
"""
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


def serial(*layers):
    """Compose layers in sequence into one Layer."""
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


def value_and_grad(model, loss_fn):
    """Forward (train=True), loss and backward in one call; the input gradient is skipped."""
    _, forward, backward = model

    def fn(params, x, y, *, key=None):
        out, cache = forward(params, x, key=key, train=True)
        loss, dout = loss_fn(out, y)
        _, grads = backward(params, cache, dout, need_dx=False)
        return loss, out, grads

    return fn
