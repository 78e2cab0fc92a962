"""Normalisation layers (kernels: kernels.cpu.norm, kernels.cuda.norm).

    LayerNorm(eps=1e-5)
        x (..., D) -> (x - mean) / sqrt(var + eps) * gamma + beta, the statistics taken over
        the last axis of each sample (PyTorch's ``layer_norm`` over ``normalized_shape=(D,)``);
        params gamma (D,) ones, beta (D,) zeros.

Each call runs the kernels where its arrays live (``dlkit.device.kernels``): numpy arrays on
the CPU, numba CUDA device arrays on the GPU.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _check as chk
from .. import device
from .base import Layer, _register


def LayerNorm(eps: float = 1e-5) -> Layer:
    """Layer normalisation over the last axis: each vector x[..., :] of D features becomes
    ``(x - mean) / sqrt(var + eps) * gamma + beta`` (biased variance, as in PyTorch).

    Args:
        eps: added to the variance, a finite number > 0.

    Returns:
        A ``Layer``.  init(key, in_shape, dtype) -> (in_shape, {"gamma": ones (D,),
        "beta": zeros (D,)}) with D = in_shape[-1]; forward takes x (N, ..., D) of the params'
        dtype (float32, or float64 for gradient checks) and returns y of x's shape and dtype.

    Raises:
        ValueError: ``eps`` not a finite number > 0; an empty in_shape or D = 0 in ``init``;
            in ``forward``/``backward``, params or an input of the wrong shape (last axis not
            D), or a cache or dy that does not match the forward.
        TypeError: an input that is not a float32/float64 array, or mixed dtypes.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> init, forward, backward = L.LayerNorm()
        >>> out_shape, params = init(random.key(0), (5, 4))
        >>> out_shape, params["gamma"], params["beta"]
        ((5, 4), array([1., 1., 1., 1.], dtype=float32), array([0., 0., 0., 0.], dtype=float32))
        >>> y, cache = forward(params, np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32))
        >>> np.round(y, 4)
        array([[[-1.3416, -0.4472,  0.4472,  1.3416]]], dtype=float32)
        >>> dx, grads = backward(params, cache, np.ones_like(y))
        >>> grads["beta"], bool(np.abs(dx).max() < 1e-6)
        (array([1., 1., 1., 1.], dtype=float32), True)
    """
    if not (isinstance(eps, (int, float, np.floating)) and not isinstance(eps, bool)
            and math.isfinite(eps) and eps > 0):
        raise ValueError(f"LayerNorm: eps must be a finite number > 0, got {eps!r}")
    eps = float(eps)
    what = f"LayerNorm(eps={eps:g})"

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if not in_shape or not isinstance(in_shape[-1], (int, np.integer)) or in_shape[-1] < 1:
            raise ValueError(f"{what}: expected an input shape (..., D) with D >= 1 features, "
                             f"got {in_shape}")
        D = int(in_shape[-1])
        return in_shape, {"gamma": np.ones(D, dtype), "beta": np.zeros(D, dtype)}

    def _params(params, D, dtype, where):
        chk.params(params, ("gamma", "beta"), what)
        g, b = params["gamma"], params["beta"]
        if tuple(g.shape) != (D,) or tuple(b.shape) != (D,):
            raise ValueError(f"{what}{where}: expected gamma and beta of shape ({D},) (the "
                             f"input's last axis), got gamma{tuple(g.shape)} and "
                             f"beta{tuple(b.shape)}")
        if g.dtype != dtype or b.dtype != dtype:
            raise TypeError(f"{what}{where}: mixed dtypes (x.dtype={np.dtype(dtype)}, "
                            f"gamma.dtype={g.dtype}, beta.dtype={b.dtype}); cast them to one "
                            "dtype")
        return chk.kernel_array(g, what), chk.kernel_array(b, what)

    def forward(params, x, *, key=None, train=False):
        x = chk.floating(x, f"{what} input")
        shape = tuple(int(v) for v in x.shape)      # (a device array's shape: no [-1])
        if len(shape) < 2 or shape[-1] < 1:
            raise ValueError(f"{what}: expected an input of shape (batch, ..., D) with D >= 1, "
                             f"got shape {shape}")
        D = shape[-1]
        g, b = _params(params, D, x.dtype, "")
        x2 = chk.kernel_array(x.reshape(math.prod(shape[:-1]), D), f"{what} input")
        K = device.kernels("norm", x2, g, b, what=what)
        y, mean, rstd = K.layernorm_forward(x2, g, b, eps)
        return y.reshape(shape), (x2, mean, rstd, shape)

    def backward(params, cache, dy, *, need_dx=True):
        x2, mean, rstd, shape = chk.cache(cache, 4, what)
        if type(shape) is not tuple or len(shape) < 2 or \
                not all(type(v) is int and v >= 0 for v in shape) or shape[-1] < 1:
            raise ValueError(f"{what} backward: the cache must hold the input shape, got "
                             f"{shape!r}")
        D = shape[-1]
        rows = math.prod(shape[:-1])
        x2 = chk.floating(x2, f"{what} backward cache x")
        dt = x2.dtype
        x2 = chk.array(x2, (rows, D), dt, f"{what} backward cache x")
        mean = chk.array(mean, (rows,), dt, f"{what} backward cache mean")
        rstd = chk.array(rstd, (rows,), dt, f"{what} backward cache rstd")
        g, _ = _params(params, D, dt, " backward")
        dy = chk.floating(dy, f"{what} backward dy")
        if tuple(dy.shape) != shape or dy.dtype != dt:
            raise ValueError(f"{what} backward: dy must match the forward output {shape} "
                             f"{dt}, got {tuple(dy.shape)} {dy.dtype}")
        dy2 = chk.kernel_array(dy.reshape(rows, D), f"{what} backward dy")
        K = device.kernels("norm", x2, g, mean, rstd, dy2, what=what)
        dx, dgamma, dbeta = K.layernorm_backward(x2, g, mean, rstd, dy2)
        return (dx.reshape(shape) if need_dx else None), {"gamma": dgamma, "beta": dbeta}

    # 2 multiply-adds per element: (x - mean) * rstd, then * gamma + beta (statistics not counted)
    return _register(Layer(init, forward, backward), "LayerNorm",
                     lambda i, o, p: 2 * math.prod(i))
