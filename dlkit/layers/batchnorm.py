"""Batch normalisation (kernels: kernels.cpu.batchnorm, kernels.cuda.batchnorm).

    BatchNorm(momentum=0.1, eps=1e-5, activation=None)
        x (N, C) or (N, C, H, W) -> (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c, the
        statistics of each channel c taken over the batch (and H, W): PyTorch's BatchNorm1d /
        BatchNorm2d.  activation="relu" fuses a ReLU after it (the ResNet pattern).

A ``StatefulLayer`` (dlkit.layers.base): state {"mean": (C,), "var": (C,)}, the running
statistics.  Training (train=True) normalises with the batch statistics and returns new
running statistics, PyTorch's convention:

    mean' = (1 - momentum) mean + momentum batch_mean
    var'  = (1 - momentum) var  + momentum batch_var_unbiased     (batch_var * M / (M - 1))

Keras's ``BatchNormalization(momentum=0.99)`` weights the *old* value by its momentum, so it
is dlkit's momentum=0.01 (keras momentum = 1 - dlkit momentum); Keras also updates the
variance with the biased batch variance.  Eval (train=False) normalises with the running
statistics and returns the state object it was given.  The given state is never modified.

Each call runs the kernels where its arrays live (``dlkit.device.kernels``): numpy arrays on
the CPU, numba CUDA device arrays on the GPU.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _check as chk
from .. import device
from .base import StatefulLayer, _register

_ACTS = {None: 0, "relu": 1}


def _number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(v)


def BatchNorm(momentum: float = 0.1, eps: float = 1e-5,
              activation: str | None = None) -> StatefulLayer:
    """Batch normalisation over the batch (and spatial) axes of (N, C) or NCHW inputs.

    Args:
        momentum: weight of the batch statistics in the running statistics' update, in
            [0, 1] (PyTorch's convention; Keras's momentum is 1 - this).
        eps: added to the variance, a finite number > 0.
        activation: None, or "relu" to fuse a ReLU after the normalisation.

    Returns:
        A ``StatefulLayer``.  init(key, in_shape, dtype) with in_shape (C,) or (C, H, W) ->
        (in_shape, {"gamma": ones (C,), "beta": zeros (C,)}, {"mean": zeros (C,),
        "var": ones (C,)}); forward(params, x, *, state, key=None, train=False) ->
        (y, cache, new_state); backward(params, cache, dy, *, need_dx=True) -> (dx, grads).
        A training-mode cache differentiates through the batch statistics; an eval-mode
        cache treats the running statistics as constants.

    Raises:
        ValueError: momentum outside [0, 1], eps not > 0, an unknown activation; in
            ``init``, an in_shape not (C,) or (C, H, W); in ``forward``, x not 2-D or 4-D,
            a channel count that does not match the params, params or state of the wrong
            keys or shapes, or training on a batch with one value per channel (N * H * W
            = 1: the variance is undefined, as in PyTorch); in ``backward``, a cache or dy
            that does not match the forward.
        TypeError: an input, param or state array that is not float32/float64, or mixed
            dtypes.

    Example:
        >>> import numpy as np
        >>> from dlkit import random
        >>> from dlkit.layers.batchnorm import BatchNorm
        >>> init, forward, backward = BatchNorm()
        >>> out_shape, params, state = init(random.key(0), (2,))
        >>> x = np.array([[1.0, 0.0], [3.0, 0.0]], np.float32)
        >>> y, cache, new_state = forward(params, x, state=state, train=True)
        >>> np.round(y, 3), new_state["mean"]
        (array([[-1.,  0.],
               [ 1.,  0.]], dtype=float32), array([0.2, 0. ], dtype=float32))
        >>> forward(params, x, state=state)[2] is state
        True
    """
    if not (_number(momentum) and 0 <= momentum <= 1):
        raise ValueError(f"BatchNorm: momentum must be a number in [0, 1] (PyTorch's "
                         f"convention; Keras's 0.99 is 0.01 here), got {momentum!r}")
    if not (_number(eps) and eps > 0):
        raise ValueError(f"BatchNorm: eps must be a finite number > 0, got {eps!r}")
    if activation not in _ACTS:
        raise ValueError(f"BatchNorm: activation must be None or 'relu', got {activation!r}")
    momentum, eps, act = float(momentum), float(eps), _ACTS[activation]
    what = f"BatchNorm(momentum={momentum:g}, eps={eps:g}" + \
        (f", activation={activation!r})" if activation else ")")

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 3) or \
                not all(isinstance(v, (int, np.integer)) and v >= 1 for v in in_shape):
            raise ValueError(f"{what}: expected an input shape (C,) or (C, H, W) of positive "
                             f"ints, got {in_shape}")
        C = int(in_shape[0])
        return (in_shape, {"gamma": np.ones(C, dtype), "beta": np.zeros(C, dtype)},
                {"mean": np.zeros(C, dtype), "var": np.ones(C, dtype)})

    def _pair(d, names, C, dtype, kind, where):
        if kind == "params":
            chk.params(d, names, what + where)
        else:
            if not isinstance(d, dict):
                raise TypeError(f"{what}{where}: state must be a dict {{'mean', 'var'}}, got "
                                f"{type(d).__name__}")
            if sorted(d) != sorted(names):
                raise ValueError(f"{what}{where}: state keys {sorted(d)} do not match the "
                                 f"expected {sorted(names)}")
            for n in names:
                if not chk.is_array(d[n]) or d[n].dtype.type not in chk.FLOATS:
                    raise TypeError(f"{what}{where}: state {n!r} must be a float32/float64 "
                                    f"array, got {chk.describe(d[n])}")
        out = []
        for n in names:
            a = d[n]
            if tuple(a.shape) != (C,):
                raise ValueError(f"{what}{where}: expected {kind} {n!r} of shape ({C},) (the "
                                 f"input's channels), got shape {tuple(a.shape)}")
            if a.dtype != dtype:
                raise TypeError(f"{what}{where}: mixed dtypes (x.dtype={np.dtype(dtype)}, "
                                f"{kind} {n!r} dtype={a.dtype}); cast them to one dtype")
            out.append(chk.kernel_array(a, f"{what} {kind} {n!r}"))
        return out

    def _view(shape):
        N, C = shape[0], shape[1]
        return (N, C, math.prod(shape[2:]))

    def forward(params, x, *, state, key=None, train=False):
        x = chk.floating(x, f"{what} input")
        shape = tuple(int(v) for v in x.shape)
        if len(shape) not in (2, 4) or min(shape) < 1:
            raise ValueError(f"{what}: expected an input of shape (N, C) or (N, C, H, W) with "
                             f"no empty axis, got shape {shape}")
        C = shape[1]
        g, b = _pair(params, ("gamma", "beta"), C, x.dtype, "params", "")
        rm, rv = _pair(state, ("mean", "var"), C, x.dtype, "state", "")
        v = _view(shape)
        M = v[0] * v[2]
        if train and M < 2:
            raise ValueError(f"{what}: training needs more than one value per channel to "
                             f"estimate the variance, expected N * H * W >= 2, got input "
                             f"shape {shape}")
        x3 = chk.kernel_array(x.reshape(v), f"{what} input")
        K = device.kernels("batchnorm", x3, g, b, rm, rv, what=what)
        if train:
            y, mean, invstd = K.batchnorm_forward_train(x3, g, b, eps, act)
            new_mean, new_var = K.batchnorm_running_stats(rm, rv, mean, invstd, eps, momentum,
                                                          M)
            return y.reshape(shape), (x3, y, mean, invstd, shape, True), \
                {"mean": new_mean, "var": new_var}
        y = K.batchnorm_forward_eval(x3, g, b, rm, rv, eps, act)
        return y.reshape(shape), (x3, y, rm, rv, shape, False), state

    def backward(params, cache, dy, *, need_dx=True):
        x3, y, s1, s2, shape, train = chk.cache(cache, 6, what)
        if type(shape) is not tuple or len(shape) not in (2, 4) or \
                not all(type(v) is int and v >= 1 for v in shape) or type(train) is not bool:
            raise ValueError(f"{what} backward: the cache must hold the input shape and the "
                             f"mode its forward returned, got {shape!r}, {train!r}")
        v = _view(shape)
        x3 = chk.floating(x3, f"{what} backward cache x")
        dt = x3.dtype
        x3 = chk.array(x3, v, dt, f"{what} backward cache x")
        y = chk.array(y, v, dt, f"{what} backward cache y")
        s1 = chk.array(s1, (v[1],), dt, f"{what} backward cache mean")
        s2 = chk.array(s2, (v[1],), dt, f"{what} backward cache invstd/var")
        g, _ = _pair(params, ("gamma", "beta"), v[1], dt, "params", " backward")
        dy = chk.floating(dy, f"{what} backward dy")
        if tuple(dy.shape) != shape or dy.dtype != dt:
            raise ValueError(f"{what} backward: dy must match the forward output {shape} "
                             f"{dt}, got {tuple(dy.shape)} {dy.dtype}")
        dy3 = chk.kernel_array(dy.reshape(v), f"{what} backward dy")
        K = device.kernels("batchnorm", x3, y, g, s1, s2, dy3, what=what)
        if train:
            dx, dgamma, dbeta = K.batchnorm_backward(x3, y, g, s1, s2, dy3, act)
        else:
            dx, dgamma, dbeta = K.batchnorm_backward_eval(x3, y, g, s1, s2, eps, dy3, act)
        return (dx.reshape(shape) if need_dx else None), {"gamma": dgamma, "beta": dbeta}

    # 2 multiply-adds per element: (x - mean) * rstd, then * gamma + beta (statistics not counted)
    return _register(StatefulLayer(init, forward, backward), "BatchNorm",
                     lambda i, o, p: 2 * math.prod(i))
