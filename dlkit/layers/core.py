"""Dense, activations, Flatten and Dropout layers (kernels: kernels.cpu.dense, .activations).

Each call runs the kernels where its arrays live (``dlkit.device.kernels``): numpy arrays on
the CPU, numba CUDA device arrays on the GPU."""
from __future__ import annotations

from math import prod

import numpy as np

from kernels.cpu import activations as K
from kernels.cpu import dense as D

from .. import _check as chk
from .. import device
from .. import init as initializers
from ..random import keep_mask, split
from ..init import Initializer
from .base import Layer, _register, _zero_macs, no_params

_DENSE_ACTS = {None: D.ACT_NONE, "linear": D.ACT_NONE, "relu": D.ACT_RELU,
               "sigmoid": D.ACT_SIGMOID, "tanh": D.ACT_TANH}


def Dense(units: int, activation: str | None = None,
          W_init: str | Initializer = "glorot_uniform",
          b_init: str | Initializer = "zeros") -> Layer:
    """Fully connected layer ``y = act(x @ W + b)``: x (N, in) -> y (N, units).

    Args:
        units: output features, a positive int.
        activation: None (or "linear"), "relu", "sigmoid" or "tanh", fused into the kernel.
        W_init, b_init: an initialiser name from ``dlkit.init`` or a function
            ``fn(key, shape, dtype)``.

    Returns:
        A ``Layer``.  params: ``W`` (in, units), ``b`` (units,), of init's dtype (float32 by
        default; float64 for gradient checks); x must have the params' dtype.  Input shape
        (without the batch axis) ``(in,)``; output ``(units,)``.

    Raises:
        ValueError: a bad ``units`` or ``activation`` here; an input shape that is not 1-D in
            ``init``; mismatched shapes or dtypes in ``forward``/``backward``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> init, forward, backward = L.Dense(4, activation="relu")
        >>> out_shape, params = init(random.key(0), (3,))
        >>> out_shape, params["W"].shape, params["b"].shape
        ((4,), (3, 4), (4,))
        >>> y, cache = forward(params, np.ones((2, 3), np.float32))
        >>> y.shape, y.dtype
        ((2, 4), dtype('float32'))
        >>> dx, grads = backward(params, cache, np.ones_like(y))
        >>> dx.shape, grads["W"].shape
        ((2, 3), (3, 4))
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

    return _register(Layer(init, forward, backward), "Dense", lambda i, o, p: p["W"].size)


def _grad_like(dy, y, what):
    """dy checked against the forward output y: same shape and dtype, C-contiguous."""
    dy = chk.floating(dy, f"{what} backward dy")
    if dy.shape != y.shape or dy.dtype != y.dtype:
        raise ValueError(f"{what} backward: dy must match the forward output "
                         f"{y.shape} {y.dtype}, got {dy.shape} {dy.dtype}")
    return dy


_GELU = "gelu"          # GELU has its own kernel pair (activations.gelu_*), not an act code


def _elementwise(name, act, alpha=0.0):
    what = name

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        x = chk.floating(x, f"{what} input")
        A = device.kernels("activations", x, what=what)
        flat = x.reshape(-1)
        y = A.gelu_forward(flat) if act == _GELU else A.activation_forward(flat, act, alpha)
        return y.reshape(x.shape), (x, y.reshape(x.shape))

    def backward(params, cache, dy, *, need_dx=True):
        x, y = chk.cache(cache, 2, what)
        chk.params(params, (), what)
        x = chk.floating(x, f"{what} backward cache x")
        y = chk.array(y, x.shape, x.dtype, f"{what} backward cache y")
        dy = _grad_like(dy, y, what)
        A = device.kernels("activations", x, y, dy, what=what)
        if act == _GELU:
            dx = A.gelu_backward(x.reshape(-1), dy.reshape(-1))
        else:
            dx = A.activation_backward(x.reshape(-1), y.reshape(-1), dy.reshape(-1), act, alpha)
        return dx.reshape(x.shape), {}

    return _register(Layer(no_params, forward, backward), name.partition("(")[0], _zero_macs)


def Relu() -> Layer:
    """Rectified linear unit ``y = max(x, 0)``, elementwise, any shape, no params.

    Returns:
        A ``Layer`` whose forward keeps the input's shape and dtype (float32 or float64,
        numpy or CUDA device).

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> y, _ = L.Relu().forward({}, np.array([[-1.0, 0.0, 2.0]]))
        >>> np.round(y, 4)
        array([[0., 0., 2.]])
    """
    return _elementwise("Relu", K.RELU)


def LeakyRelu(alpha: float = 0.01) -> Layer:
    """Leaky ReLU ``y = x if x > 0 else alpha * x``, elementwise, any shape, no params.

    Args:
        alpha: the slope for negative inputs.

    Returns:
        A ``Layer`` like ``Relu``'s: same shape and dtype out as in.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> np.round(L.LeakyRelu(0.1).forward({}, np.array([[-1.0, 0.0, 2.0]]))[0], 4)
        array([[-0.1,  0. ,  2. ]])
    """
    return _elementwise(f"LeakyRelu({alpha})", K.LEAKY_RELU, float(alpha))


def Sigmoid() -> Layer:
    """Logistic sigmoid ``y = 1 / (1 + exp(-x))``, elementwise, any shape, no params.

    Returns:
        A ``Layer`` like ``Relu``'s: same shape and dtype out as in.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> np.round(L.Sigmoid().forward({}, np.array([[-1.0, 0.0, 2.0]]))[0], 4)
        array([[0.2689, 0.5   , 0.8808]])
    """
    return _elementwise("Sigmoid", K.SIGMOID)


def Tanh() -> Layer:
    """Hyperbolic tangent ``y = tanh(x)``, elementwise, any shape, no params.

    Returns:
        A ``Layer`` like ``Relu``'s: same shape and dtype out as in.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> np.round(L.Tanh().forward({}, np.array([[-1.0, 0.0, 2.0]]))[0], 4)
        array([[-0.7616,  0.    ,  0.964 ]])
    """
    return _elementwise("Tanh", K.TANH)


def Gelu() -> Layer:
    """Gaussian error linear unit ``y = x Phi(x)`` (exact, with erf, as PyTorch's
    ``nn.GELU()``), elementwise, any shape, no params; the transformer MLP's activation.

    Returns:
        A ``Layer`` like ``Relu``'s: same shape and dtype out as in.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> np.round(L.Gelu().forward({}, np.array([[-1.0, 0.0, 2.0]]))[0], 4)
        array([[-0.1587,  0.    ,  1.9545]])
    """
    return _elementwise("Gelu", _GELU)


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

    return _register(Layer(no_params, forward, backward), name, _zero_macs)


def Softmax() -> Layer:
    """Row-wise softmax ``y[n] = exp(x[n]) / sum(exp(x[n]))`` of x (N, C), no params.

    For training a classifier, feed the logits to ``losses.softmax_cross_entropy`` instead
    (fused and stable); Softmax is for models that output probabilities.

    Returns:
        A ``Layer``: x (N, C) float32/float64 -> y (N, C) of the same dtype.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> y, _ = L.Softmax().forward({}, np.zeros((1, 4)))
        >>> y
        array([[0.25, 0.25, 0.25, 0.25]])
    """
    return _softmax("Softmax", False)


def LogSoftmax() -> Layer:
    """Row-wise log-softmax ``y[n] = x[n] - logsumexp(x[n])`` of x (N, C) (stable), no params.

    Returns:
        A ``Layer``: x (N, C) float32/float64 -> y (N, C) of the same dtype.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> y, _ = L.LogSoftmax().forward({}, np.zeros((1, 2)))
        >>> np.round(y, 4)
        array([[-0.6931, -0.6931]])
    """
    return _softmax("LogSoftmax", True)


def Flatten() -> Layer:
    """Reshape x (N, d1, d2, ...) -> (N, d1*d2*...), no params; NCHW images flatten
    channel-major, as in PyTorch.  Forward returns a view, no copy.

    Returns:
        A ``Layer``; its init maps ``in_shape`` to ``(prod(in_shape),)``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> L.Flatten().init(random.key(0), (1, 28, 28))[0]
        (784,)
        >>> L.Flatten().forward({}, np.zeros((2, 1, 28, 28)))[0].shape
        (2, 784)
    """

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

    return _register(Layer(init, forward, backward), "Flatten", _zero_macs)


def Dropout(rate: float) -> Layer:
    """Inverted dropout: in training, zero each element with probability ``rate`` and scale the
    rest by 1 / (1 - rate); identity otherwise.  The mask comes from the forward's ``key``.

    Args:
        rate: the drop probability, in ``[0, 1)``.

    Returns:
        A ``Layer`` with no params; any input shape, float32/float64, output of the same
        shape and dtype.  ``forward(params, x, key=k, train=True)`` needs a key.

    Raises:
        ValueError: ``rate`` outside ``[0, 1)``; ``train=True`` without a key.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> drop = L.Dropout(0.5)
        >>> x = np.ones((1, 6), np.float32)
        >>> drop.forward({}, x)[0] is x                   # inference: identity
        True
        >>> y, _ = drop.forward({}, x, key=random.key(0), train=True)
        >>> sorted(set(y.ravel().tolist()))               # dropped, or kept and scaled by 2
        [0.0, 2.0]
    """
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

    return _register(Layer(no_params, forward, backward), "Dropout", _zero_macs)
