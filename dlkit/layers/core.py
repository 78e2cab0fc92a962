"""Dense, activations, Flatten and Dropout layers (kernels: kernels.cpu.dense, .activations).

Each call runs the kernels where its arrays live (``dlkit.device.kernels``): numpy arrays on
the CPU, numba CUDA device arrays on the GPU."""
from math import prod

import numpy as np

from kernels.cpu import activations as K
from kernels.cpu import dense as D

from .. import _check as chk
from .. import device
from .. import init as initializers
from ..random import keep_mask, split
from .base import Layer, no_params

_DENSE_ACTS = {None: D.ACT_NONE, "linear": D.ACT_NONE, "relu": D.ACT_RELU,
               "sigmoid": D.ACT_SIGMOID, "tanh": D.ACT_TANH}


def Dense(units, activation=None, W_init="glorot_uniform", b_init="zeros"):
    """Fully connected layer y = act(x @ W + b), x (N, in) -> y (N, units).

    params: W (in, units), b (units,).  activation: None, "relu", "sigmoid" or "tanh", fused
    into the kernel.  W_init / b_init: an initialiser name from dlkit.init or a function.
    """
    units = chk.positive_int(units, "Dense units")
    if activation not in _DENSE_ACTS:
        raise ValueError(f"Dense: activation must be one of {list(_DENSE_ACTS)}, "
                         f"got {activation!r}")
    act = _DENSE_ACTS[activation]
    w_init, b_init_ = initializers.get(W_init), initializers.get(b_init)
    what = f"Dense({units})"

    def init(key, in_shape, dtype=np.float32):
        if len(in_shape) != 1:
            raise ValueError(f"{what}: expected a 1-D input shape (features,), got "
                             f"{tuple(in_shape)}; put a Flatten() before it")
        kw, kb = split(key)
        return (units,), {"W": w_init(kw, (in_shape[0], units), dtype),
                          "b": b_init_(kb, (units,), dtype)}

    def forward(params, x, *, key=None, train=False):
        chk.params(params, ("W", "b"), what)
        W, b = params["W"], params["b"]
        x = chk.floating(x, f"{what} input")
        chk.ndim(x, 2, f"{what} input", "batch, features")
        if W.ndim != 2 or W.shape[1] != units or b.shape != (units,):
            raise ValueError(f"{what}: expected W of shape (in, {units}) and b of shape "
                             f"({units},), got W{W.shape} and b{b.shape}")
        if x.shape[1] != W.shape[0]:
            raise ValueError(f"{what}: input has {x.shape[1]} features, expected {W.shape[0]} "
                             f"(x.shape={x.shape}, W.shape={W.shape})")
        chk.same_dtype(what, x=x, W=W, b=b)
        chk.elements((x.shape[0], units), f"{what} output")
        K = device.kernels("dense", x, W, b, what=what)
        x = chk.contiguous(x, what)
        y = K.dense_forward(x, chk.contiguous(W, what), chk.contiguous(b, what), act)
        return y, (x, y)

    def backward(params, cache, dy, *, need_dx=True):
        x, y = chk.cache(cache, 2, what)
        chk.params(params, ("W", "b"), what)
        x = chk.floating(x, f"{what} backward cache x")
        chk.ndim(x, 2, f"{what} backward cache x", "batch, features")
        dt = x.dtype
        W = chk.array(params["W"], (x.shape[1], units), dt, f"{what} backward W")
        chk.array(params["b"], (units,), dt, f"{what} backward b")
        y = chk.array(y, (x.shape[0], units), dt, f"{what} backward cache y")
        dy = _grad_like(dy, y, what)
        K = device.kernels("dense", x, W, y, dy, what=what)
        dx, dW, db = K.dense_backward(x, W, y, chk.contiguous(dy, what), act, bool(need_dx))
        return (dx if need_dx else None), {"W": dW, "b": db}

    return Layer(init, forward, backward)


def _grad_like(dy, y, what):
    """dy checked against the forward output y: same shape and dtype, C-contiguous."""
    dy = chk.floating(dy, f"{what} backward dy")
    if dy.shape != y.shape or dy.dtype != y.dtype:
        raise ValueError(f"{what} backward: dy must match the forward output "
                         f"{y.shape} {y.dtype}, got {dy.shape} {dy.dtype}")
    return dy


def _elementwise(name, act, alpha=0.0):
    what = name

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        x = chk.floating(x, f"{what} input")
        A = device.kernels("activations", x, what=what)
        y = A.activation_forward(x.reshape(-1), act, alpha).reshape(x.shape)
        return y, (x, y)

    def backward(params, cache, dy, *, need_dx=True):
        x, y = chk.cache(cache, 2, what)
        chk.params(params, (), what)
        x = chk.floating(x, f"{what} backward cache x")
        y = chk.array(y, x.shape, x.dtype, f"{what} backward cache y")
        dy = _grad_like(dy, y, what)
        A = device.kernels("activations", x, y, dy, what=what)
        dx = A.activation_backward(x.reshape(-1), y.reshape(-1), dy.reshape(-1), act, alpha)
        return dx.reshape(x.shape), {}

    return Layer(no_params, forward, backward)


def Relu():
    """y = max(x, 0), any shape."""
    return _elementwise("Relu", K.RELU)


def LeakyRelu(alpha=0.01):
    """y = x if x > 0 else alpha * x, any shape."""
    return _elementwise(f"LeakyRelu({alpha})", K.LEAKY_RELU, float(alpha))


def Sigmoid():
    """y = 1 / (1 + exp(-x)), any shape."""
    return _elementwise("Sigmoid", K.SIGMOID)


def Tanh():
    """y = tanh(x), any shape."""
    return _elementwise("Tanh", K.TANH)


def _softmax(name, log):
    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), name)
        x = chk.floating(x, f"{name} input")
        chk.ndim(x, 2, f"{name} input", "batch, classes")
        y = device.kernels("activations", x, what=name).softmax_forward(x, log)
        return y, (y,)

    def backward(params, cache, dy, *, need_dx=True):
        (y,) = chk.cache(cache, 1, name)
        chk.params(params, (), name)
        y = chk.floating(y, f"{name} backward cache y")
        chk.ndim(y, 2, f"{name} backward cache y", "batch, classes")
        dy = _grad_like(dy, y, name)
        return device.kernels("activations", y, dy, what=name).softmax_backward(y, dy, log), {}

    return Layer(no_params, forward, backward)


def Softmax():
    """Row-wise softmax of x (N, C)."""
    return _softmax("Softmax", False)


def LogSoftmax():
    """Row-wise log-softmax of x (N, C)."""
    return _softmax("LogSoftmax", True)


def Flatten():
    """x (N, d1, d2, ...) -> (N, d1*d2*...); NCHW images flatten channel-major, as in PyTorch."""

    def init(key, in_shape, dtype=np.float32):
        return (int(np.prod(in_shape)),), {}

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), "Flatten")
        x = chk.floating(x, "Flatten input")
        if x.ndim < 1:
            raise ValueError(f"Flatten: expected a batch of arrays, got shape {x.shape}")
        return x.reshape(x.shape[0], -1), (tuple(int(v) for v in x.shape), x.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        shape, dtype = chk.cache(cache, 2, "Flatten")
        chk.params(params, (), "Flatten")
        if type(shape) is not tuple or not shape or \
                not all(type(v) is int and v >= 0 for v in shape):
            raise ValueError(f"Flatten backward: the cache must hold the input shape, got "
                             f"{shape!r}")
        dy = chk.floating(dy, "Flatten backward dy")
        flat = (shape[0], prod(shape[1:]))
        if tuple(dy.shape) != flat or dy.dtype != dtype:
            raise ValueError(f"Flatten backward: dy must match the forward output {flat} "
                             f"{dtype}, got {tuple(dy.shape)} {dy.dtype}")
        return dy.reshape(shape), {}

    return Layer(init, forward, backward)


def Dropout(rate):
    """Inverted dropout: in training, zero each element with probability ``rate`` and scale the
    rest by 1 / (1 - rate); identity otherwise.  The mask comes from the forward's ``key``."""
    rate = chk.rate(rate, "Dropout")
    what = f"Dropout({rate})"

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        x = chk.floating(x, f"{what} input")
        if not train or rate == 0.0:
            return x, (None, x.shape, x.dtype)
        if key is None:
            raise ValueError(f"{what}: training mode needs a key (forward(..., key=k, "
                             "train=True)) to draw the mask")
        keep = keep_mask(key, (x.size,), rate)
        if device.on_device(x):     # the mask is drawn on the host: one copy to the device
            keep = device.upload(keep)
        A = device.kernels("activations", x, keep, what=what)
        y = A.dropout_forward(x.reshape(-1), keep, 1.0 / (1.0 - rate))
        return y.reshape(x.shape), (keep, x.shape, x.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        keep, shape, dtype = chk.cache(cache, 3, what)
        chk.params(params, (), what)
        dy = chk.floating(dy, f"{what} backward dy")
        if dy.shape != shape or dy.dtype != dtype:
            raise ValueError(f"{what} backward: dy must match the forward output {shape} "
                             f"{dtype}, got {dy.shape} {dy.dtype}")
        if keep is None:
            return dy, {}
        keep = chk.array(keep, (dy.size,), np.uint8, f"{what} backward cache mask")
        chk.index_range(keep, 0, 2, f"{what} backward cache mask")
        A = device.kernels("activations", dy, keep, what=what)
        dx = A.dropout_backward(dy.reshape(-1), keep, 1.0 / (1.0 - rate))
        return dx.reshape(dy.shape), {}

    return Layer(no_params, forward, backward)
