"""Combinators over layers.

    serial(("fc1", L.Dense(128)), ("act1", L.Relu()), ...) -> Layer
        params {layer_name: {param_name: array}} for the layers that have params; a bare layer
        instead of a (name, layer) pair is named by its position ("0", "1", ...).
    value_and_grad(model, loss_fn) -> fn(params, x, y, *, key=None) -> (loss, out, grads)
        forward in training mode, the loss, and backward in one call; loss_fn(out, y) returns
        (loss, dout) like the functions in dlkit.losses.

Branching (tuples carry one value per branch, in init, forward and backward):

    fan_out(n)                 x -> (x, ..., x); backward sums the n branch gradients
    parallel(*layers)          (x0, x1, ...) -> (f0(x0), f1(x1), ...); named like serial
    fan_in_sum()               (x0, x1, ...) -> x0 + x1 + ...
    fan_in_concat(axis=-1)     (x0, x1, ...) -> concatenation along a per-example axis
    residual(*layers, shortcut=None)
                               x -> main(x) + shortcut(x); params {layer_name: ...} of the
                               main path directly, plus "shortcut" when it has params

State (layers.base.StatefulLayer, e.g. BatchNorm): serial, parallel and residual accept
stateful children; with at least one the combinator is a StatefulLayer itself: init returns
(out_shape, params, state), state {child_name: child_state} for the stateful children only
(residual: the main path's by name, the shortcut's under "shortcut", as params), and
forward(params, x, *, state, key=None, train=False) returns (y, cache, new_state), the very
state given when train=False.  The state's keys are checked before any kernel runs.  Without
stateful children they are plain Layers, exactly as before.

    summary(model, in_shape) -> Summary
        a Keras-like table of every layer: nested name ("block1/conv_a"), output shape,
        params, state and multiply-adds per example, with totals; print() it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from . import _check, device
from .device import is_device_array
from . import tree
from .layers.base import (Layer, StatefulLayer, _info, _register, _zero_macs, is_layer,
                          is_stateful, no_params)
from .random import fold_in, key as _key

_NO_STATE = object()        # forward's default state=: a clear error instead of Python's


def _named(layers, what="serial"):
    named = []
    for i, item in enumerate(layers):
        name, layer = item if isinstance(item, tuple) and len(item) == 2 \
            and isinstance(item[0], str) else (str(i), item)
        if not is_layer(layer):
            raise TypeError(f"{what}: item {i} ({name!r}) is not a Layer: {type(layer).__name__}"
                            " (nor a StatefulLayer)")
        if "/" in name:
            raise ValueError(f"{what}: layer name {name!r} must not contain '/'")
        named.append((name, layer))
    names = [n for n, _ in named]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"{what}: duplicate layer names {sorted(dup)}")
    return named


def _in_layer(name, fn, *args, **kw):
    """Run a layer function; prefix its validation errors with the layer's name."""
    try:
        return fn(*args, **kw)
    except (ValueError, TypeError) as e:
        raise type(e)(f"layer {name!r}: {e}") from None


def _check_params(params, named, what):
    """params is a dict whose keys all name one of the (name, layer) pairs ``named``."""
    if not isinstance(params, dict):
        raise TypeError(f"{what}: params must be a dict, got {type(params).__name__}")
    extra = sorted(set(params) - {n for n, _ in named})
    if extra:
        raise ValueError(f"{what}: params has entries {extra} that match no layer; "
                         f"layers are {[n for n, _ in named]}")


def _check_state(state, names, what):
    """state is a dict whose keys are exactly ``names`` (the stateful children); raised
    before any kernel runs."""
    if state is _NO_STATE:
        raise TypeError(f"{what}: the layers {names} have state; pass state= (the state the "
                        "model's init returned, or the new state of the last training step)")
    if not isinstance(state, dict):
        raise TypeError(f"{what}: state must be a dict {{layer_name: layer_state}}, got "
                        f"{_check.describe(state)}")
    missing, extra = sorted(set(names) - set(state)), sorted(set(state) - set(names))
    if missing or extra:
        raise ValueError(f"{what}: state has keys {sorted(state)}, expected exactly the "
                         f"stateful layers {sorted(names)}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; extra {extra} (no stateful layer has that name)" if extra
                            else ""))


def _init(name, layer, key, shape, dtype, state):
    """A child's init: (out_shape, params), its state (if any) stored in ``state[name]``."""
    out = _in_layer(name, layer.init, key, shape, dtype)
    if is_stateful(layer):
        shape, p, state[name] = out
        return shape, p
    return out


def _forward(name, layer, params, x, key, train, state, new_state):
    """A child's forward: (y, cache), its new state (if any) stored in ``new_state[name]``."""
    if not is_stateful(layer):
        return _in_layer(name, layer.forward, params, x, key=key, train=train)
    y, c, new_state[name] = _in_layer(name, layer.forward, params, x, state=state[name],
                                      key=key, train=train)
    return y, c


def _combined(kind, named, stateful, init, forward, forward_state, backward):
    """A combinator's layer, a StatefulLayer if any child has state, recorded with its
    children for ``summary``."""
    layer = StatefulLayer(init, forward_state, backward) if stateful else \
        Layer(init, forward, backward)
    return _register(layer, kind, None, named)


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
    stateful = [name for name, layer in named if is_stateful(layer)]

    def init(key, in_shape, dtype=np.float32):
        params, shape, state = {}, tuple(in_shape), {}
        for i, (name, layer) in enumerate(named):
            shape, p = _init(name, layer, fold_in(key, i), shape, dtype, state)
            if p:
                params[name] = p
        return (shape, params, state) if stateful else (shape, params)

    def check_params(params, what):
        _check_params(params, named, what)

    def forward(params, x, *, key=None, train=False):
        check_params(params, "serial")
        caches = []
        for i, (name, layer) in enumerate(named):
            k = None if key is None else fold_in(key, i)
            x, c = _in_layer(name, layer.forward, params.get(name, {}), x, key=k, train=train)
            caches.append(c)
        return x, caches

    def forward_state(params, x, *, state=_NO_STATE, key=None, train=False):
        check_params(params, "serial")
        _check_state(state, stateful, "serial")
        caches, new_state = [], {}
        for i, (name, layer) in enumerate(named):
            k = None if key is None else fold_in(key, i)
            x, c = _forward(name, layer, params.get(name, {}), x, k, train, state, new_state)
            caches.append(c)
        return x, caches, (new_state if train else state)

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

    return _combined("serial", named, stateful, init, forward, forward_state, backward)


# -- branching: fan_out, parallel, fan_in_sum, fan_in_concat, residual ------------------------
#
# Conventions (DESIGN.md's layer contract, with tuples where a model branches): a branching
# value is a Python tuple with one array per branch, in init (a tuple of shapes), in forward
# (a tuple of arrays) and in backward (a tuple of gradients); lists are refused, so a shape
# tuple and a tuple of shapes cannot be mistaken for each other.  Gradients of a value used
# twice are summed in a fixed order (branch 0 + branch 1, then + branch 2, ...).  Arrays stay
# where they are: host numpy arrays are combined with numpy, numba CUDA device arrays with the
# device kernels behind dlkit.device.add / concat / split.


def _tuple(v, n, what, items):
    """v must be a tuple of n items (n None: one or more)."""
    count = "one or more" if n is None else n
    if type(v) is not tuple:
        raise TypeError(f"{what}: expected a tuple of {count} {items}, got {_check.describe(v)}")
    if len(v) == 0 or (n is not None and len(v) != n):
        raise ValueError(f"{what}: expected a tuple of {count} {items}, got a tuple of {len(v)}")
    return v


def _shapes(in_shapes, n, what, nested=False):
    """init's tuple of per-example input shapes, each a tuple of non-negative ints (or, with
    nested, anything the branch's own init checks: a tuple of shapes for a branching one)."""
    if type(in_shapes) in (tuple, list) and in_shapes and all(
            isinstance(d, (int, np.integer)) for d in in_shapes):
        raise TypeError(f"{what}: expected a tuple of input shapes (one per branch, as fan_out "
                        f"or parallel give), got the single shape {tuple(in_shapes)}")
    _tuple(in_shapes, n, what, "input shapes")
    if nested:
        return in_shapes
    for i, s in enumerate(in_shapes):
        if type(s) not in (tuple, list) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
                for d in s):
            raise TypeError(f"{what}: input shape {i} must be a tuple of non-negative ints, "
                            f"got {s!r}")
    return tuple(tuple(int(d) for d in s) for s in in_shapes)


def _on_device(arrays, what):
    """True if every array is a device array, False if none is; TypeError when mixed."""
    dev = [is_device_array(a) for a in arrays]
    if any(dev) and not all(dev):
        raise TypeError(f"{what}: mixed host (numpy) and device arrays (branches "
                        f"{[i for i, d in enumerate(dev) if not d]} are on the host); move them "
                        "all with dlkit.device.to_device or to_host")
    return all(dev)


def _same(arrays, names, what):
    """Float arrays of one shape and dtype (ValueError/TypeError naming both that differ);
    returns them C-contiguous."""
    arrays = [_check.floating(a, f"{what}: {n}") for a, n in zip(arrays, names)]
    _on_device(arrays, what)
    for a, n in zip(arrays[1:], names[1:]):
        if tuple(a.shape) != tuple(arrays[0].shape):
            raise ValueError(f"{what}: {n} has shape {tuple(a.shape)} but {names[0]} has shape "
                             f"{tuple(arrays[0].shape)}; expected one shape")
        if a.dtype != arrays[0].dtype:
            raise TypeError(f"{what}: {n} has dtype {a.dtype} but {names[0]} has dtype "
                            f"{arrays[0].dtype}; expected one dtype")
    return arrays


def _sum(arrays):
    """The sum in list order ((a0 + a1) + a2 ...), None entries skipped (None if all are)."""
    total = None
    for a in arrays:
        if a is not None:
            total = a if total is None else device.add(total, a)
    return total


def _gradients(dys, n, shape, dtype, what):
    """backward's tuple of n gradients, each None or an array of the forward's shape/dtype."""
    _tuple(dys, n, what, "gradients (one per branch)")
    dys = [None if d is None else _check.array(d, shape, dtype, f"{what}: gradient {i}")
           for i, d in enumerate(dys)]
    _on_device([d for d in dys if d is not None], what)
    return dys


def fan_out(n: int) -> Layer:
    """Send one input down ``n`` branches: ``x -> (x, x, ..., x)`` (references, not copies).

    Args:
        n: the number of branches (a positive int).

    Returns:
        A ``Layer``.  init maps ``in_shape`` to the tuple of ``n`` copies of it; forward
        returns the tuple of ``n`` references to ``x`` (any array, host or device); backward
        takes the tuple of ``n`` gradients (each of ``x``'s shape and dtype, or None for a
        branch that gives none) and returns their sum, added in branch order, as ``dx``
        (None with ``need_dx=False``).  No params.

    Raises:
        ValueError: ``n`` is not a positive int; backward's tuple has another length or a
            gradient another shape than ``x``.
        TypeError: backward gets something other than a tuple, or mixed host/device arrays.

    Example:
        >>> import numpy as np
        >>> from dlkit import nn, random
        >>> init, forward, backward = nn.fan_out(2)
        >>> init(random.key(0), (3,))
        (((3,), (3,)), {})
        >>> ys, cache = forward({}, np.ones((1, 3)))
        >>> len(ys), ys[0] is ys[1]
        (2, True)
        >>> backward({}, cache, (np.ones((1, 3)), np.full((1, 3), 2.0)))[0]
        array([[3., 3., 3.]])
    """
    n = _check.positive_int(n, "fan_out: n")

    def init(key, in_shape, dtype=np.float32):
        return (tuple(in_shape),) * n, {}

    def forward(params, x, *, key=None, train=False):
        _check.params(params, (), "fan_out")
        if not _check.is_array(x):
            raise TypeError(f"fan_out: expected a numpy or device array, got {_check.describe(x)}")
        return (x,) * n, (tuple(x.shape), x.dtype)

    def backward(params, cache, dys, *, need_dx=True):
        _check.params(params, (), "fan_out backward")
        shape, dtype = _check.cache(cache, 2, "fan_out")
        dys = _gradients(dys, n, shape, dtype, "fan_out backward")
        return (_sum(dys) if need_dx else None), {}

    return _register(Layer(init, forward, backward), "fan_out", _zero_macs)


def parallel(*layers: Layer | tuple[str, Layer]) -> Layer:
    """Apply one layer to each element of a tuple: ``(x0, x1, ...) -> (f0(x0), f1(x1), ...)``.

    Args:
        *layers: ``(name, layer)`` pairs or bare layers, named as in ``serial`` (by position
            when bare; unique, no "/").

    Returns:
        A ``Layer`` taking and giving tuples of ``len(layers)``: init maps the tuple of input
        shapes to the tuple of output shapes; params are ``{name: params}`` for the layers that
        have params; forward gives each layer its own key folded from ``key`` (as ``serial``)
        and returns the tuple of outputs and the tuple of caches; backward takes the tuple of
        gradients and returns the tuple of input gradients (None with ``need_dx=False``).
        A layer's validation error is prefixed with its name.  With a ``StatefulLayer``
        among the layers it is a ``StatefulLayer``, its state named as in ``serial``.

    Raises:
        TypeError: an item is not a Layer or StatefulLayer; an input, input shapes or
            gradients that are not a tuple.
        ValueError: no layers, duplicate names, a name with "/", or a tuple of another length.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, random
        >>> model = nn.parallel(("fc", L.Dense(4)), ("act", L.Relu()))
        >>> model.init(random.key(0), ((3,), (2,)))[0]
        ((4,), (2,))
        >>> _, params = model.init(random.key(0), ((3,), (2,)))
        >>> (a, b), caches = model.forward(params, (np.ones((5, 3), np.float32),
        ...                                          -np.ones((5, 2), np.float32)))
        >>> a.shape, float(b.max())
        ((5, 4), 0.0)
        >>> (dx0, dx1), grads = model.backward(params, caches, (np.ones_like(a), np.ones_like(b)))
        >>> dx0.shape, dx1.shape, sorted(grads)
        ((5, 3), (5, 2), ['fc'])
    """
    named = _named(layers, "parallel")
    n = len(named)
    if not n:
        raise ValueError("parallel: expected at least one layer, got none")
    stateful = [name for name, layer in named if is_stateful(layer)]

    def init(key, in_shapes, dtype=np.float32):
        shapes, params, out = _shapes(in_shapes, n, "parallel", nested=True), {}, []
        state = {}
        for i, (name, layer) in enumerate(named):
            s, p = _init(name, layer, fold_in(key, i), shapes[i], dtype, state)
            out.append(tuple(s))
            if p:
                params[name] = p
        return (tuple(out), params, state) if stateful else (tuple(out), params)

    def forward(params, xs, *, key=None, train=False):
        _check_params(params, named, "parallel")
        _tuple(xs, n, "parallel", "inputs (one per layer)")
        ys, caches = [], []
        for i, (name, layer) in enumerate(named):
            k = None if key is None else fold_in(key, i)
            y, c = _in_layer(name, layer.forward, params.get(name, {}), xs[i], key=k, train=train)
            ys.append(y)
            caches.append(c)
        return tuple(ys), tuple(caches)

    def forward_state(params, xs, *, state=_NO_STATE, key=None, train=False):
        _check_params(params, named, "parallel")
        _check_state(state, stateful, "parallel")
        _tuple(xs, n, "parallel", "inputs (one per layer)")
        ys, caches, new_state = [], [], {}
        for i, (name, layer) in enumerate(named):
            k = None if key is None else fold_in(key, i)
            y, c = _forward(name, layer, params.get(name, {}), xs[i], k, train, state,
                            new_state)
            ys.append(y)
            caches.append(c)
        return tuple(ys), tuple(caches), (new_state if train else state)

    def backward(params, caches, dys, *, need_dx=True):
        _check_params(params, named, "parallel backward")
        if type(caches) is not tuple or len(caches) != n:
            raise TypeError(f"parallel backward: expected the tuple of {n} caches its forward "
                            f"returned, got {_check.describe(caches)}")
        _tuple(dys, n, "parallel backward", "gradients (one per layer)")
        dxs, grads = [], {}
        for i, (name, layer) in enumerate(named):
            dx, g = _in_layer(name, layer.backward, params.get(name, {}), caches[i], dys[i],
                              need_dx=need_dx)
            dxs.append(dx)
            if g:
                grads[name] = g
        return (tuple(dxs) if need_dx else None), grads

    return _combined("parallel", named, stateful, init, forward, forward_state, backward)


def fan_in_sum() -> Layer:
    """Merge branches by adding them: ``(x0, x1, ...) -> x0 + x1 + ...`` (in that order).

    Returns:
        A ``Layer``: init maps a tuple of equal shapes to that shape; forward takes a tuple of
        float arrays of one shape and dtype (all on the host or all on the device) and returns
        their sum; backward returns the tuple giving each input ``dy`` itself (references).
        No params.

    Raises:
        TypeError: the input is not a tuple, holds a non-float array, or mixes dtypes or
            host and device arrays.
        ValueError: an empty tuple, or shapes that differ (both are named).

    Example:
        >>> import numpy as np
        >>> from dlkit import nn, random
        >>> init, forward, backward = nn.fan_in_sum()
        >>> init(random.key(0), ((3,), (3,)))
        ((3,), {})
        >>> y, cache = forward({}, (np.ones((1, 3)), np.arange(3.0)[None]))
        >>> y
        array([[1., 2., 3.]])
        >>> backward({}, cache, np.ones((1, 3)))[0]
        (array([[1., 1., 1.]]), array([[1., 1., 1.]]))
    """
    what = "fan_in_sum"

    def init(key, in_shapes, dtype=np.float32):
        shapes = _shapes(in_shapes, None, what)
        for i, s in enumerate(shapes[1:], 1):
            if s != shapes[0]:
                raise ValueError(f"{what}: input {i} has shape {s} but input 0 has shape "
                                 f"{shapes[0]}; expected one shape")
        return shapes[0], {}

    def forward(params, xs, *, key=None, train=False):
        _check.params(params, (), what)
        _tuple(xs, None, what, "inputs")
        xs = _same(list(xs), [f"input {i}" for i in range(len(xs))], what)
        return _sum(xs), (len(xs), tuple(xs[0].shape), xs[0].dtype)

    def backward(params, cache, dy, *, need_dx=True):
        _check.params(params, (), f"{what} backward")
        k, shape, dtype = _check.cache(cache, 3, what)
        dy = _check.array(dy, shape, dtype, f"{what} backward: dy")
        return ((dy,) * _check.size(k, f"{what} backward: cache") if need_dx else None), {}

    return _register(Layer(init, forward, backward), "fan_in_sum", _zero_macs)


def _concat_shape(shapes, axis, what):
    """The concatenation of per-example shapes along axis (batch not counted)."""
    nd = len(shapes[0])
    for i, s in enumerate(shapes[1:], 1):
        if len(s) != nd:
            raise ValueError(f"{what}: input {i} has per-example shape {s} but input 0 has "
                             f"{shapes[0]}; expected the same number of axes")
    if not -nd <= axis < nd:
        raise ValueError(f"{what}: axis {axis} is out of range for per-example shapes of {nd} "
                         f"axes such as {shapes[0]} (the batch axis is not counted; expected "
                         f"{-nd} <= axis < {nd})")
    a = axis % nd
    for i, s in enumerate(shapes[1:], 1):
        if s[:a] + s[a + 1:] != shapes[0][:a] + shapes[0][a + 1:]:
            raise ValueError(f"{what}: input {i} has per-example shape {s} but input 0 has "
                             f"{shapes[0]}; expected them to agree on every axis but axis "
                             f"{axis}")
    return shapes[0][:a] + (sum(s[a] for s in shapes),) + shapes[0][a + 1:], a


def _device_2d(shape, a):
    """(rows, columns per unit along axis a + 1): concatenating along axis a + 1 of a C-order
    array of ``shape`` is concatenating the columns of it reshaped to (rows, ...)."""
    rows = int(np.prod(shape[:a + 1], dtype=np.int64))
    return rows, int(np.prod(shape[a + 2:], dtype=np.int64))


def fan_in_concat(axis: int = -1) -> Layer:
    """Merge branches by concatenating them along one axis of the per-example shape.

    Args:
        axis: an axis of the per-example shape: the batch axis is NOT counted, so for images
            (N, C, H, W) ``axis=0`` is the channel axis; ``-1`` (the default) is the last axis.

    Returns:
        A ``Layer``: init maps a tuple of per-example shapes that agree on every axis but
        ``axis`` to their concatenation; forward takes a tuple of float arrays of one dtype and
        batch size (all on the host or all on the device) and returns the concatenation (a
        new C-contiguous array); backward splits ``dy`` into the tuple of input gradients
        (C-contiguous copies).  No params.

    Raises:
        TypeError: ``axis`` is not an int; the input is not a tuple, holds a non-float array,
            or mixes dtypes or host and device arrays.
        ValueError: an empty tuple, shapes that differ off ``axis`` or in the batch size, or
            ``axis`` out of range for the shapes.

    Example:
        >>> import numpy as np
        >>> from dlkit import nn, random
        >>> init, forward, backward = nn.fan_in_concat(axis=0)   # channels of (C, H, W)
        >>> init(random.key(0), ((2, 4, 4), (3, 4, 4)))
        ((5, 4, 4), {})
        >>> y, cache = forward({}, (np.zeros((1, 2, 4, 4)), np.ones((1, 3, 4, 4))))
        >>> y.shape, y[0, :, 0, 0]
        ((1, 5, 4, 4), array([0., 0., 1., 1., 1.]))
        >>> [d.shape for d in backward({}, cache, y)[0]]
        [(1, 2, 4, 4), (1, 3, 4, 4)]
    """
    what = "fan_in_concat"
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{what}: axis must be an int (an axis of the per-example shape), got "
                        f"{axis!r}")
    axis = int(axis)

    def init(key, in_shapes, dtype=np.float32):
        return _concat_shape(_shapes(in_shapes, None, what), axis, what)[0], {}

    def forward(params, xs, *, key=None, train=False):
        _check.params(params, (), what)
        _tuple(xs, None, what, "inputs")
        xs = [_check.floating(x, f"{what}: input {i}") for i, x in enumerate(xs)]
        dev = _on_device(xs, what)
        for i, x in enumerate(xs):
            if x.ndim < 2 or x.shape[0] != xs[0].shape[0]:
                raise ValueError(f"{what}: input {i} has shape {tuple(x.shape)}; expected a "
                                 f"batch of {xs[0].shape[0]} (input 0 has shape "
                                 f"{tuple(xs[0].shape)}) with at least one per-example axis")
            if x.dtype != xs[0].dtype:
                raise TypeError(f"{what}: input {i} has dtype {x.dtype} but input 0 has dtype "
                                f"{xs[0].dtype}; expected one dtype")
        out, a = _concat_shape([tuple(x.shape[1:]) for x in xs], axis, what)
        sizes = tuple(int(x.shape[a + 1]) for x in xs)
        shape = (int(xs[0].shape[0]),) + out
        if not dev:
            y = np.concatenate(xs, axis=a + 1)
        else:
            rows, unit = _device_2d(shape, a)
            y = xs[0].reshape(rows, sizes[0] * unit)
            for x, m in zip(xs[1:], sizes[1:]):
                y = device.concat(y, x.reshape(rows, m * unit))
            y = y.reshape(*shape)
        return y, (sizes, shape, a, xs[0].dtype)

    def backward(params, cache, dy, *, need_dx=True):
        _check.params(params, (), f"{what} backward")
        sizes, shape, a, dtype = _check.cache(cache, 4, what)
        dy = _check.array(dy, shape, dtype, f"{what} backward: dy")
        if type(a) is not int or not 0 <= a < len(shape) - 1:
            raise ValueError(f"{what} backward: the cache's axis {a!r} is not an axis of the "
                             f"per-example shape {tuple(shape[1:])}")
        if type(sizes) is not tuple or sum(_check.size(m, f"{what} backward: cache")
                                           for m in sizes) != shape[a + 1]:
            raise ValueError(f"{what} backward: the cache's sizes {sizes!r} do not add up to "
                             f"dy's axis {a + 1} of {shape}")
        if not need_dx:
            return None, {}
        if not is_device_array(dy):
            cuts = np.cumsum(sizes)[:-1]
            return tuple(np.ascontiguousarray(d) for d in np.split(dy, cuts, axis=a + 1)), {}
        rows, unit = _device_2d(shape, a)
        rest, dxs = dy.reshape(rows, shape[a + 1] * unit), []
        for m in sizes[:-1]:
            piece, rest = device.split(rest, m * unit)
            dxs.append(piece)
        dxs.append(rest)
        return tuple(d.reshape(*(shape[:a + 1] + (m,) + shape[a + 2:]))
                     for d, m in zip(dxs, sizes)), {}

    return _register(Layer(init, forward, backward), "fan_in_concat", _zero_macs)


def _identity() -> Layer:
    """x -> x, no params (residual's default shortcut)."""
    def forward(params, x, *, key=None, train=False):
        _check.params(params, (), "identity")
        return x, None

    def backward(params, cache, dy, *, need_dx=True):
        _check.params(params, (), "identity backward")
        return (dy if need_dx else None), {}

    return _register(Layer(no_params, forward, backward), "Identity", _zero_macs)


def residual(*layers: Layer | tuple[str, Layer], shortcut: Layer | None = None) -> Layer:
    """A residual block: ``y = main(x) + shortcut(x)``, main being the layers in series.

    Args:
        *layers: the main path, ``(name, layer)`` pairs or bare layers named as in
            ``serial``; the name "shortcut" is reserved.
        shortcut: a ``Layer`` mapping the input to the main path's output shape (e.g. a 1x1
            ``Conv2D`` projection when the channels change); None (the default) is the
            identity.

    Returns:
        A ``Layer`` from ``x`` ``(N, *in_shape)`` to ``y`` ``(N, *out_shape)``, out_shape the main
        path's.  Its params hold the main path's layers directly, ``{layer_name: {...}}``, as
        ``serial`` would, plus ``"shortcut": {...}`` when the shortcut has params: inside a
        serial as "block1" the keys read ``block1/conv_a/W`` and ``block1/shortcut/W``.  The
        main path's layers get the keys ``serial`` would give them, the shortcut the next one.
        backward returns ``dx`` = main's dx + shortcut's dx (None with ``need_dx=False``).
        With a ``StatefulLayer`` in the main path or as the shortcut it is a ``StatefulLayer``
        whose state mirrors params: the main path's stateful layers by name, the shortcut's
        state under ``"shortcut"``.

    Raises:
        TypeError: an item or ``shortcut`` is not a Layer or StatefulLayer.
        ValueError: no layers, duplicate names, a name with "/", a layer named "shortcut",
            or (init, forward) main and shortcut outputs of different shapes (both named).

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, random, tree
        >>> block = nn.residual(("fc_a", L.Dense(8)), ("act_a", L.Relu()), ("fc_b", L.Dense(8)))
        >>> model = nn.serial(("fc0", L.Dense(8)), ("block1", block), ("out", L.Dense(2)))
        >>> out_shape, params = model.init(random.key(0), (4,))
        >>> out_shape, list(tree.flatten(params))[:4]
        ((2,), ['block1/fc_a/W', 'block1/fc_a/b', 'block1/fc_b/W', 'block1/fc_b/b'])
        >>> y, cache = model.forward(params, np.ones((3, 4), np.float32))
        >>> dx, grads = model.backward(params, cache, np.ones_like(y))
        >>> y.shape, dx.shape, grads["block1"]["fc_b"]["W"].shape
        ((3, 2), (3, 4), (8, 8))
    """
    named = _named(layers, "residual")
    if not named:
        raise ValueError("residual: expected at least one layer in the main path, got none")
    if "shortcut" in {n for n, _ in named}:
        raise ValueError("residual: the main path has a layer named 'shortcut', a name "
                         "reserved for the shortcut's params; rename that layer")
    if shortcut is not None and not is_layer(shortcut):
        raise TypeError(f"residual: shortcut must be a Layer or None, got "
                        f"{type(shortcut).__name__} (a StatefulLayer is accepted too)")
    main, sc, k_sc = serial(*named), shortcut or _identity(), len(named)
    main_state = [name for name, layer in named if is_stateful(layer)]
    stateful = main_state + (["shortcut"] if is_stateful(sc) else [])

    def split(params, what):
        if not isinstance(params, dict):
            raise TypeError(f"{what}: params must be a dict, got {type(params).__name__}")
        return ({k: v for k, v in params.items() if k != "shortcut"},
                params.get("shortcut", {}))

    def init(key, in_shape, dtype=np.float32):
        out = main.init(key, in_shape, dtype)
        (shape, params), state = out[:2], (out[2] if main_state else {})
        s_shape, s_params = _init("shortcut", sc, fold_in(key, k_sc), in_shape, dtype, state)
        if tuple(s_shape) != tuple(shape):
            raise ValueError(f"residual: the main path's output shape {tuple(shape)} differs "
                             f"from the shortcut's {tuple(s_shape)} (input shape "
                             f"{tuple(in_shape)}); expected one shape: give a shortcut that "
                             f"maps the input to {tuple(shape)}, e.g. a 1x1 Conv2D")
        if s_params:
            params["shortcut"] = s_params
        return (tuple(shape), params, state) if stateful else (tuple(shape), params)

    def run(params, x, key, train, state):
        mp, sp = split(params, "residual")
        new_state = {}
        if state is not None:
            _check_state(state, stateful, "residual")
            if main_state:
                y, c, new_state = main.forward(mp, x, state={k: state[k] for k in main_state},
                                               key=key, train=train)
            else:
                y, c = main.forward(mp, x, key=key, train=train)
            s, c_sc = _forward("shortcut", sc, sp, x,
                               None if key is None else fold_in(key, k_sc), train, state,
                               new_state)
        else:
            y, c = main.forward(mp, x, key=key, train=train)
            s, c_sc = _in_layer("shortcut", sc.forward, sp, x,
                                key=None if key is None else fold_in(key, k_sc), train=train)
        y, s = _same([y, s], ["the main path's output", "the shortcut's output"], "residual")
        return device.add(y, s), (c, c_sc, tuple(y.shape), y.dtype), new_state

    def forward(params, x, *, key=None, train=False):
        return run(params, x, key, train, None)[:2]

    def forward_state(params, x, *, state=_NO_STATE, key=None, train=False):
        if state is _NO_STATE or not isinstance(state, dict):
            _check_state(state, stateful, "residual")
        y, cache, new_state = run(params, x, key, train, state)
        return y, cache, (new_state if train else state)

    def backward(params, cache, dy, *, need_dx=True):
        mp, sp = split(params, "residual backward")
        c, c_sc, shape, dtype = _check.cache(cache, 4, "residual")
        dy = _check.array(dy, shape, dtype, "residual backward: dy")
        dx, grads = main.backward(mp, c, dy, need_dx=need_dx)
        dx_sc, g = _in_layer("shortcut", sc.backward, sp, c_sc, dy, need_dx=need_dx)
        if g:
            grads["shortcut"] = g
        return (_sum([dx, dx_sc]) if need_dx else None), grads

    return _combined("residual", named + [("shortcut", sc)], stateful, init, forward,
                     forward_state, backward)


def value_and_grad(model: Layer | StatefulLayer, loss_fn: Callable[[Any, Any], tuple[float, Any]]
                   ) -> Callable[..., tuple[float, Any, dict]]:
    """Forward (train=True), loss and backward in one call; the input gradient is skipped.

    Args:
        model: a ``Layer`` (usually ``nn.serial(...)``).
        loss_fn: ``loss_fn(out, y) -> (loss, dout)``, like the functions in ``dlkit.losses``.

    Returns:
        ``fn(params, x, y, *, key=None) -> (loss, out, grads)``: the loss (a float), the
        model's output and dloss/dparams shaped like params.  For a ``StatefulLayer``:
        ``fn(params, x, y, *, state, key=None) -> (loss, out, grads, new_state)``, grads with
        params' keys only (state is never differentiated).

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

    def fn_state(params, x, y, *, state=_NO_STATE, key=None):
        out, cache, new_state = forward(params, x, state=state, key=key, train=True)
        loss, dout = loss_fn(out, y)
        _, grads = backward(params, cache, dout, need_dx=False)
        return loss, out, grads, new_state

    return fn_state if is_stateful(model) else fn


# -- summary ------------------------------------------------------------------------------------

class SummaryRow(NamedTuple):
    """One layer of a ``Summary`` (``row._asdict()`` gives it as a dict).

    Fields: ``name`` (the nested name, "block1/conv_a"), ``kind`` (the constructor: "Conv2D",
    or the class name, "Layer", for a layer dlkit did not build), ``out_shape`` (per example,
    without the batch axis; a tuple of shapes after ``fan_out``/``parallel``), ``params`` and
    ``state`` (element counts) and ``macs`` (multiply-adds per example; None when unknown).
    """

    name: str
    kind: str
    out_shape: tuple
    params: int
    state: int
    macs: int | None


class Summary(NamedTuple):
    """What ``summary`` returns: ``in_shape`` and ``out_shape`` (per example), ``rows`` (a list
    of ``SummaryRow``, one per layer in forward order, combinators unrolled) and ``totals``
    (``{"params", "state", "macs"}``: the sums over ``rows``, layers with unknown
    multiply-adds counted as 0).  ``str(summary)`` and ``print(summary)`` give the table.
    """

    in_shape: tuple
    out_shape: tuple
    rows: list
    totals: dict

    def __str__(self) -> str:
        head = ("Layer (type)", "Output shape", "Params", "State", "Mult-adds")
        cells = [(r.name if r.name == r.kind else f"{r.name} ({r.kind})", str(r.out_shape),
                  f"{r.params:,}", f"{r.state:,}", "?" if r.macs is None else f"{r.macs:,}")
                 for r in self.rows]
        widths = [max(len(c[i]) for c in [head] + cells) for i in range(len(head))]

        def line(c):
            return "  ".join(v.ljust(w) if i < 2 else v.rjust(w)
                             for i, (v, w) in enumerate(zip(c, widths))).rstrip()
        rule = "=" * len(line(tuple("x" * w for w in widths)))
        t = self.totals
        unknown = [r.name for r in self.rows if r.macs is None]
        out = [line(head), rule] + [line(c) for c in cells] + [rule,
               f"Input shape: {str(self.in_shape)}, output shape: "
               f"{str(self.out_shape)} (per example)",
               f"Params: {t['params']:,}   State: {t['state']:,} (not trained)",
               f"Multiply-adds per example: {t['macs']:,}"]
        if unknown:
            out[-1] += (f" (+ unknown for {len(unknown)} layer{'s' * (len(unknown) > 1)} "
                        f"not built by dlkit, '?': {', '.join(unknown)})")
        return "\n".join(out)


def _as_shape(shape):
    """An init's out_shape as tuples of ints (a tuple of shapes stays nested)."""
    if isinstance(shape, (tuple, list)):
        return tuple(_as_shape(d) for d in shape)
    return int(shape) if isinstance(shape, (int, np.integer)) else shape


def _check_in_shape(s, top):
    ok = isinstance(s, (tuple, list)) and (
        all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in s)
        or (s and all(isinstance(d, (tuple, list)) and _check_in_shape(d, top) for d in s)))
    if not ok:
        hint = f"; for one axis write ({top},)" if isinstance(top, (int, np.integer)) else ""
        raise TypeError(f"summary: in_shape must be the per-example input shape without the "
                        f"batch axis, a tuple of positive ints such as (1, 28, 28) (or a tuple "
                        f"of such shapes for a model that takes a tuple), got {top!r}{hint}")
    if any(isinstance(d, (int, np.integer)) and d < 1 for d in s):
        raise ValueError(f"summary: in_shape {top!r} has an axis of size < 1; expected the "
                         f"per-example shape without the batch axis, e.g. (1, 28, 28)")
    return True


def _walk(layer, path, shape, dtype, key, rows):
    """Append the rows of ``layer`` (a combinator's children, recursively) given its input
    shape; returns its output shape."""
    kind, macs, children = _info(layer) or (type(layer).__name__, None, None)
    where = f"{kind} {path!r}" if path else kind
    if children is None:
        try:
            out = layer.init(key, shape, dtype)
            out_shape = _as_shape(out[0])
            m = None if macs is None else int(macs(shape, out_shape, out[1]))
        except (ValueError, TypeError, IndexError) as e:
            raise type(e)(f"summary: layer {where} rejects the input shape {shape} "
                          f"(shapes exclude the batch axis): {e}") from None
        state = out[2] if is_stateful(layer) else {}
        rows.append(SummaryRow(path or kind, kind, out_shape, tree.size(out[1]),
                               tree.size(state), m))
        return out_shape
    if kind == "parallel":
        shapes = _shapes(shape, len(children), f"summary: {where}", nested=True)
        return tuple(_walk(child, f"{path}/{name}".lstrip("/"), s, dtype, fold_in(key, i), rows)
                     for i, ((name, child), s) in enumerate(zip(children, shapes)))
    main = children[:-1] if kind == "residual" else children
    out = shape
    for i, (name, child) in enumerate(main):
        out = _walk(child, f"{path}/{name}".lstrip("/"), out, dtype, fold_in(key, i), rows)
    if kind == "residual":
        s_out = _walk(children[-1][1], f"{path}/shortcut".lstrip("/"), shape, dtype,
                      fold_in(key, len(main)), rows)
        if s_out != out:
            raise ValueError(f"summary: {where}: the main path's output shape {out} differs "
                             f"from the shortcut's {s_out} (input shape {shape})")
    return out


def summary(model: Layer | StatefulLayer, in_shape: tuple,
            dtype: Any = np.float32) -> Summary:
    """A table of a model's layers: nested names, output shapes, parameter and state counts
    and multiply-adds per example, with totals (like Keras's ``model.summary()``).

    The model is walked through the combinators (``serial``, ``parallel``, ``residual`` with
    its main path and shortcut, at any depth) down to the layers that compute, one row each,
    named by their params' nested keys joined by "/" ("block1/conv_a"); ``fan_out``,
    ``fan_in_sum``, ``fan_in_concat`` and residual's identity shortcut get rows of their own.
    Each layer's init is called with the shape that reaches it (with a fixed key, on the
    host), so counts are the sizes of the arrays the model's init makes.  Nothing runs forward.

    Multiply-adds per example (a multiply and its add count once; biases, activations and
    the bare additions of ``fan_in_sum``/``residual`` count 0):
    Dense ``in * out``; Conv2D ``Cout * Cin/groups * KH * KW * OH * OW``; SimpleRNN, LSTM,
    GRU ``T * gates * H * (F + H)`` (gates 1, 4, 3); Bidirectional twice its layer;
    TimeDistributed T times its layer's (unknown when that layer is a combinator);
    BatchNorm and LayerNorm 2 per element (``(x - mean) * rstd``, then ``* gamma + beta``; the
    statistics not counted); pooling 0 (its compares and adds are not multiply-adds);
    Embedding, Dropout, Flatten, Softmax and elementwise activations 0.  A layer dlkit did not
    build (``Layer(init, forward, backward)`` written by hand) still shows its output shape,
    params and state, but its multiply-adds are unknown: ``macs`` None, "?" in the table,
    counted as 0 in the total (the table says so).

    Args:
        model: a ``Layer`` or ``StatefulLayer``.
        in_shape: the per-example input shape without the batch axis, e.g. ``(1, 28, 28)``
            (a tuple of shapes for a model that takes a tuple).
        dtype: the params' dtype passed to init (counts do not depend on it).

    Returns:
        A ``Summary``: ``rows`` (a list of ``SummaryRow(name, kind, out_shape, params,
        state, macs)``), ``totals`` ``{"params", "state", "macs"}`` (the sums over the rows),
        ``in_shape`` and ``out_shape``; ``print(summary)`` renders the aligned table.

    Raises:
        TypeError: ``model`` is not a layer; ``in_shape`` is not a tuple of ints (or of such
            tuples).
        ValueError: an axis < 1 in ``in_shape``; a layer that rejects the shape reaching it
            (the message names the layer, e.g. ``'fc1'``, and the shape).

    Example:
        >>> from dlkit import layers as L, nn
        >>> model = nn.serial(("conv", L.Conv2D(4, 3, padding="same")), ("pool", L.MaxPool2D(2)),
        ...                   ("flat", L.Flatten()), ("fc", L.Dense(10)))
        >>> s = nn.summary(model, (1, 8, 8))
        >>> print(s)
        Layer (type)      Output shape  Params  State  Mult-adds
        ========================================================
        conv (Conv2D)     (4, 8, 8)         40      0      2,304
        pool (MaxPool2D)  (4, 4, 4)          0      0          0
        flat (Flatten)    (64,)              0      0          0
        fc (Dense)        (10,)            650      0        640
        ========================================================
        Input shape: (1, 8, 8), output shape: (10,) (per example)
        Params: 690   State: 0 (not trained)
        Multiply-adds per example: 2,944
        >>> s.totals, s.rows[0].name, s.rows[0].macs
        ({'params': 690, 'state': 0, 'macs': 2944}, 'conv', 2304)
    """
    if not is_layer(model):
        raise TypeError(f"summary: model must be a Layer or StatefulLayer, got "
                        f"{type(model).__name__}")
    _check_in_shape(in_shape, in_shape)
    in_shape = _as_shape(in_shape)
    rows: list[SummaryRow] = []
    out_shape = _walk(model, "", in_shape, dtype, _key(0), rows)
    totals = {"params": sum(r.params for r in rows), "state": sum(r.state for r in rows),
              "macs": sum(r.macs or 0 for r in rows)}
    return Summary(in_shape, out_shape, rows, totals)
