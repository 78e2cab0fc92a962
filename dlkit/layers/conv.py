"""Convolution and pooling layers over NCHW images (kernels: kernels.cpu.conv, kernels.cpu.pool).

    Conv2D(filters, kernel_size, stride=1, padding=0, dilation=1, groups=1, activation=None,
           use_bias=True, W_init="he_uniform", b_init="zeros", algorithm="auto")
        x (N, C, H, W) -> y (N, filters, OH, OW)
        params W (filters, C/groups, KH, KW), b (filters,)
    MaxPool2D(pool_size=2, stride=None, padding=0)
    AvgPool2D(pool_size=2, stride=None, padding=0, count_include_pad=True)
        x (N, C, H, W) -> y (N, C, OH, OW);  no params
    GlobalAvgPool2D()
        x (N, C, H, W) -> y (N, C), the mean over H and W;  no params

Sizes (kernel_size, stride, dilation, pool_size, padding) are an int or an (h, w) pair.
Conv2D padding may also be "valid" (none), "same" or explicit ((top, bottom), (left, right)).
"same" pads so that OH = ceil(H / stride) (TensorFlow's rule; at stride 1, OH = H and the same
padding as PyTorch's padding="same"): the total padding along an axis is
max((OH-1)*stride + dilation*(K-1) + 1 - H, 0), half of it on the top/left and the rest (one
more when odd) on the bottom/right.  Output size along an axis:
OH = (H + pad_top + pad_bottom - dilation*(K-1) - 1) // stride + 1, as in PyTorch.

Conv2D's ``activation`` (None, "relu", "sigmoid", "tanh") is fused into the kernel; its default
initialiser is He (uniform), suited to ReLU networks, with fan_in = C/groups*KH*KW.
``algorithm`` is "auto" (the kernels' per-shape choice, see kernels.cpu.conv), "direct" (stride
1 only), "winograd" (3x3, stride 1, dilation 1, groups=1) or "im2col".

Pooling padding is at most half the window (as in PyTorch), so every window holds an input
element.  Max pooling keeps the argmax for its backward; ties go to the first maximum in
row-major order within the window, and NaNs propagate.  Average pooling divides by KH*KW when
``count_include_pad`` (PyTorch's default) and by the number of input elements in the window
otherwise.

Inputs may be non-contiguous (they are made C-contiguous) or read-only (copied, so the
kernels are not compiled a second time for read-only arrays).  Each call runs the kernels
where its arrays live (``dlkit.device.kernels``): numpy arrays run kernels.cpu.conv / .pool,
numba CUDA device arrays (C-contiguous) kernels.cuda.conv / .pool, with no host copy.  Every forward checks its input
and params on the host and raises ValueError/TypeError saying what was expected and what was
received before any kernel runs.
"""
from __future__ import annotations

from typing import TypeAlias

import numpy as np

from kernels.cpu import conv as KC

from .. import _check as chk
from .. import device
from .. import init as initializers
from ..random import split
from ..init import Initializer
from .base import Layer, _register, _zero_macs

Size: TypeAlias = int | tuple[int, int]
"""An int, or an ``(h, w)`` pair."""

_ACTS = {None: KC.ACT_NONE, "linear": KC.ACT_NONE, "relu": KC.ACT_RELU,
         "sigmoid": KC.ACT_SIGMOID, "tanh": KC.ACT_TANH}
_ALGOS = {"auto": -1, **KC.ALGORITHMS}


# ------------------------------------------------------------------------- argument parsing

def _pair(v, what, minimum):
    """An int or a pair of ints, each >= minimum, as a tuple (h, w)."""
    vals = v if isinstance(v, (tuple, list)) else (v, v)
    if (len(vals) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                  for a in vals)):
        raise ValueError(f"{what}: expected an int or a pair of ints (h, w), got {v!r}")
    if min(vals) < minimum:
        raise ValueError(f"{what}: expected values >= {minimum}, got {v!r}")
    return int(vals[0]), int(vals[1])


def _padding(p, what):
    """Parsed padding: "same", or ((top, bottom), (left, right)) of non-negative ints."""
    if isinstance(p, str):
        if p == "valid":
            return ((0, 0), (0, 0))
        if p == "same":
            return "same"
        raise ValueError(f'{what}: padding must be an int, a pair, "valid" or "same", got {p!r}')
    if (isinstance(p, (tuple, list)) and len(p) == 2
            and all(isinstance(a, (tuple, list)) for a in p)):
        t, b = _pair(tuple(p[0]), f"{what} (top, bottom) padding", 0)
        l, r = _pair(tuple(p[1]), f"{what} (left, right) padding", 0)
        return ((t, b), (l, r))
    ph, pw = _pair(p, f"{what} padding", 0)
    return ((ph, ph), (pw, pw))


def _same_pad(n, k, s, d):
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _resolve(pad, H, W, k, s, d):
    if pad == "same":
        return _same_pad(H, k[0], s[0], d[0]), _same_pad(W, k[1], s[1], d[1])
    return pad


def _out_size(n, k, s, p0, p1, d):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def _image_shape(in_shape, what):
    if len(in_shape) != 3:
        raise ValueError(f"{what}: expected an input shape (C, H, W) (NCHW images without the "
                         f"batch axis), got {tuple(in_shape)}")
    shape = tuple(int(v) for v in in_shape)
    if min(shape) < 1:
        raise ValueError(f"{what}: expected a non-empty input shape (C, H, W), got {shape}")
    return shape


def _check_image(x, what):
    x = chk.kernel_array(chk.floating(x, f"{what} input"), f"{what} input")
    chk.ndim(x, 4, f"{what} input", "N, C, H, W")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{what}: expected non-empty images (C, H, W >= 1), got "
                         f"x.shape={x.shape}")
    return x


def _grad_like(dy, y, what):
    dy = chk.kernel_array(chk.floating(dy, f"{what} backward dy"), f"{what} backward dy")
    if dy.shape != y.shape or dy.dtype != y.dtype:
        raise ValueError(f"{what} backward: dy must match the forward output "
                         f"{y.shape} {y.dtype}, got {dy.shape} {dy.dtype}")
    return dy


# ---------------------------------------------------------------------------------- Conv2D

def Conv2D(filters: int, kernel_size: Size, stride: Size = 1,
           padding: Size | str | tuple[tuple[int, int], tuple[int, int]] = 0,
           dilation: Size = 1, groups: int = 1, activation: str | None = None,
           use_bias: bool = True, W_init: str | Initializer = "he_uniform",
           b_init: str | Initializer = "zeros", algorithm: str = "auto") -> Layer:
    """2-D convolution (cross-correlation, as in PyTorch) over NCHW images, with a fused
    activation: x (N, C, H, W) -> y (N, filters, OH, OW).  See the module docstring for the
    output-size and "same" padding rules.

    Args:
        filters: output channels.
        kernel_size: KH, KW (an int or a pair).
        stride, dilation: an int or an (h, w) pair.
        padding: an int, an (h, w) pair, ``((top, bottom), (left, right))``, "valid" or
            "same".
        groups: channel groups; C and ``filters`` must be multiples of it.
        activation: None, "relu", "sigmoid" or "tanh", fused into the kernel.
        use_bias: whether there is a bias ``b``.
        W_init, b_init: initialiser names from ``dlkit.init`` or functions.
        algorithm: "auto", "direct", "winograd" or "im2col" (see ``kernels.cpu.conv``).

    Returns:
        A ``Layer``.  params ``W`` (filters, C/groups, KH, KW), ``b`` (filters,) when
        ``use_bias``, float32 (or init's dtype); input shape ``(C, H, W)``.

    Raises:
        ValueError: bad sizes or settings here; an input shape that is not (C, H, W), or too
            small for the kernel, in ``init``; mismatched shapes or dtypes in ``forward``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> conv = L.Conv2D(8, 3, padding="same", activation="relu")
        >>> out_shape, params = conv.init(random.key(0), (1, 28, 28))
        >>> out_shape, params["W"].shape
        ((8, 28, 28), (8, 1, 3, 3))
        >>> y, cache = conv.forward(params, np.zeros((2, 1, 28, 28), np.float32))
        >>> y.shape
        (2, 8, 28, 28)
    """
    filters = chk.positive_int(filters, "Conv2D filters")
    k = _pair(kernel_size, "Conv2D kernel_size", 1)
    s = _pair(stride, "Conv2D stride", 1)
    d = _pair(dilation, "Conv2D dilation", 1)
    groups = chk.positive_int(groups, "Conv2D groups")
    pad = _padding(padding, "Conv2D")
    if activation not in _ACTS:
        raise ValueError(f"Conv2D: activation must be one of {list(_ACTS)}, got {activation!r}")
    if algorithm not in _ALGOS:
        raise ValueError(f"Conv2D: algorithm must be one of {list(_ALGOS)}, got {algorithm!r}")
    if algorithm == "direct" and s != (1, 1):
        raise ValueError(f"Conv2D: the direct algorithm needs stride 1, got stride {s}; use "
                         f'algorithm="im2col" or "auto"')
    if algorithm == "winograd" and (k != (3, 3) or s != (1, 1) or d != (1, 1) or groups != 1):
        raise ValueError(f"Conv2D: the winograd algorithm needs a 3x3 kernel, stride 1, "
                         f"dilation 1 and groups=1, got kernel {k}, stride {s}, dilation {d}, "
                         f'groups {groups}; use algorithm="im2col" or "auto"')
    if filters % groups:
        raise ValueError(f"Conv2D: filters ({filters}) must be divisible by groups ({groups})")
    act, algo = _ACTS[activation], _ALGOS[algorithm]
    w_init, b_init_ = initializers.get(W_init), initializers.get(b_init)
    names = ("W", "b") if use_bias else ("W",)
    what = f"Conv2D({filters}, {k})"

    def geometry(C, H, W):
        """Resolved padding and output size for an input (C, H, W); raises on a bad shape."""
        if C % groups:
            raise ValueError(f"{what}: input channels ({C}) must be divisible by groups "
                             f"({groups})")
        (pt, pb), (pl, pr) = _resolve(pad, H, W, k, s, d)
        OH = _out_size(H, k[0], s[0], pt, pb, d[0])
        OW = _out_size(W, k[1], s[1], pl, pr, d[1])
        if OH < 1 or OW < 1:
            ek = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
            raise ValueError(f"{what}: kernel {k} (extent {ek} with dilation {d}) is larger "
                             f"than the padded input {(H + pt + pb, W + pl + pr)} (input "
                             f"{(H, W)}, padding ((top, bottom), (left, right)) = "
                             f"{((pt, pb), (pl, pr))}); the output would be empty")
        return pt, pl, OH, OW

    def init(key, in_shape, dtype=np.float32):
        C, H, W = _image_shape(in_shape, what)
        _, _, OH, OW = geometry(C, H, W)
        kw, kb = split(key)
        params = {"W": w_init(kw, (filters, C // groups) + k, dtype)}
        if use_bias:
            params["b"] = b_init_(kb, (filters,), dtype)
        return (filters, OH, OW), params

    def forward(params, x, *, key=None, train=False):
        chk.params(params, names, what)
        Wt = params["W"]
        x = _check_image(x, what)
        N, C, H, Wd = x.shape
        if Wt.ndim != 4 or Wt.shape[0] != filters or tuple(Wt.shape[2:]) != k:
            raise ValueError(f"{what}: expected W of shape ({filters}, C_in/groups, {k[0]}, "
                             f"{k[1]}), got W{Wt.shape}")
        if C != Wt.shape[1] * groups:
            raise ValueError(f"{what}: input has {C} channels, but W expects "
                             f"{Wt.shape[1] * groups} (W.shape={Wt.shape}, groups={groups}, "
                             f"x.shape={x.shape})")
        if use_bias:
            b = params["b"]
            if b.shape != (filters,):
                raise ValueError(f"{what}: expected b of shape ({filters},), got b{b.shape}")
            chk.same_dtype(what, x=x, W=Wt, b=b)
            K = device.kernels("conv", x, Wt, b, what=what)
        else:
            chk.same_dtype(what, x=x, W=Wt)
            K = device.kernels("conv", x, Wt, what=what)
        pt, pl, OH, OW = geometry(C, H, Wd)
        chk.elements((N, filters, OH, OW), f"{what} output")
        b = chk.kernel_array(b, f"{what} b") if use_bias else device.zeros(filters, x.dtype, x)
        Wt = chk.kernel_array(Wt, f"{what} W")
        y = K.conv2d_forward(x, Wt, b, s[0], s[1], pt, pl, d[0], d[1], groups, OH, OW, act,
                             algo)
        return y, (x, y)

    def backward(params, cache, dy, *, need_dx=True):
        # the geometry comes from the cached input and this layer's settings, the params and
        # the cached output must agree with it: the kernels index by all of them
        x, y = chk.cache(cache, 2, what)
        chk.params(params, names, what)
        x = _check_image(x, f"{what} backward cache x")
        N, C, H, Wd = x.shape
        pt, pl, OH, OW = geometry(C, H, Wd)
        Wt = chk.array(params["W"], (filters, C // groups) + k, x.dtype, f"{what} backward W")
        if use_bias:
            chk.array(params["b"], (filters,), x.dtype, f"{what} backward b")
        y = chk.array(y, (N, filters, OH, OW), x.dtype, f"{what} backward cache y")
        dy = _grad_like(dy, y, what)
        K = device.kernels("conv", x, Wt, y, dy, what=what)
        dx, dW, db = K.conv2d_backward(x, Wt, y, dy, s[0], s[1], pt, pl, d[0], d[1], groups,
                                       act, bool(need_dx), algo)
        grads = {"W": dW, "b": db} if use_bias else {"W": dW}
        return (dx if need_dx else None), grads

    return _register(Layer(init, forward, backward), "Conv2D",  # Cout*Cin/groups*KH*KW*OH*OW
                     lambda i, o, p: p["W"].size * o[1] * o[2])


# --------------------------------------------------------------------------------- pooling

def _pool_geometry(what, H, W, k, s, p):
    OH = (H + 2 * p[0] - k[0]) // s[0] + 1
    OW = (W + 2 * p[1] - k[1]) // s[1] + 1
    if k[0] > H + 2 * p[0] or k[1] > W + 2 * p[1]:
        raise ValueError(f"{what}: pooling window {k} is larger than the input {(H, W)} "
                         f"(padded: {(H + 2 * p[0], W + 2 * p[1])}); the output would be empty")
    return OH, OW


def _pool_args(name, pool_size, stride, padding):
    k = _pair(pool_size, f"{name} pool_size", 1)
    s = k if stride is None else _pair(stride, f"{name} stride", 1)
    if isinstance(padding, str):
        raise ValueError(f"{name}: padding must be an int or a pair of ints, got {padding!r}")
    p = _pair(padding, f"{name} padding", 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{name}: padding {p} must be at most half the window {k}, i.e. "
                         f"<= {(k[0] // 2, k[1] // 2)}")
    return k, s, p


def _cached_shape(shape, what):
    """The input shape (N, C, H, W) a pooling forward cached, checked."""
    if type(shape) is not tuple or len(shape) != 4 or \
            not all(type(v) is int and v >= 1 for v in shape):
        raise ValueError(f"{what} backward: the cache must hold the input shape (N, C, H, W), "
                         f"got {shape!r}")
    return shape


def _pool(name, pool_size, stride, padding, fwd, bwd, arg_dtype):
    """A pooling Layer; arg_dtype(k) is the dtype of the argmax its forward keeps (None: it
    keeps none)."""
    k, s, p = _pool_args(name, pool_size, stride, padding)
    what = f"{name}({k})"

    def init(key, in_shape, dtype=np.float32):
        C, H, W = _image_shape(in_shape, what)
        return (C,) + _pool_geometry(what, H, W, k, s, p), {}

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        x = _check_image(x, what)
        OH, OW = _pool_geometry(what, x.shape[2], x.shape[3], k, s, p)
        y, aux = fwd(device.kernels("pool", x, what=what), x, k, s, p, OH, OW)
        return y, (tuple(int(v) for v in x.shape), y, aux)

    def backward(params, cache, dy, *, need_dx=True):
        shape, y, aux = chk.cache(cache, 3, what)
        chk.params(params, (), what)
        N, C, H, W = _cached_shape(shape, what)
        OH, OW = _pool_geometry(what, H, W, k, s, p)
        y = chk.floating(y, f"{what} backward cache y")
        y = chk.array(y, (N, C, OH, OW), y.dtype, f"{what} backward cache y")
        dy = _grad_like(dy, y, what)
        if arg_dtype(k) is None:
            aux = None
        else:
            aux = chk.array(aux, y.shape, arg_dtype(k), f"{what} backward cache argmax")
            chk.index_range(aux, 0, k[0] * k[1], f"{what} backward cache argmax")
        K = device.kernels("pool", dy, *(() if aux is None else (aux,)), what=what)
        return bwd(K, dy, aux, k, s, p, H, W), {}

    return _register(Layer(init, forward, backward), name, _zero_macs)


def _argmax_dtype(k):
    """The dtype of max pooling's window-local argmax for a window k = (KH, KW)."""
    return np.dtype(np.uint8 if k[0] * k[1] <= 256 else np.int32)


def MaxPool2D(pool_size: Size = 2, stride: Size | None = None, padding: Size = 0) -> Layer:
    """Max pooling over NCHW images: x (N, C, H, W) -> y (N, C, OH, OW), no params.

    Keeps the argmax (first maximum in row-major order on ties) for the backward; NaNs
    propagate.

    Args:
        pool_size: the window, an int or an (h, w) pair.
        stride: defaults to ``pool_size``.
        padding: at most half the window.

    Returns:
        A ``Layer``; float32/float64 input, output of the same dtype.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        >>> L.MaxPool2D(2).forward({}, x)[0]
        array([[[[ 5.,  7.],
                 [13., 15.]]]], dtype=float32)
    """

    def fwd(K, x, k, s, p, OH, OW):
        arg = device.empty((x.shape[0], x.shape[1], OH, OW), _argmax_dtype(k), like=x)
        y = K.maxpool2d_forward(x, k[0], k[1], s[0], s[1], p[0], p[1], OH, OW, arg)
        return y, arg

    def bwd(K, dy, arg, k, s, p, H, W):
        return K.maxpool2d_backward(dy, arg, k[0], k[1], s[0], s[1], p[0], p[1], H, W)

    return _pool("MaxPool2D", pool_size, stride, padding, fwd, bwd, _argmax_dtype)


def AvgPool2D(pool_size: Size = 2, stride: Size | None = None, padding: Size = 0,
              count_include_pad: bool = True) -> Layer:
    """Average pooling over NCHW images: x (N, C, H, W) -> y (N, C, OH, OW), no params.

    Args:
        pool_size, stride, padding: as for ``MaxPool2D``.
        count_include_pad: padded zeros count towards the divisor (PyTorch's default);
            otherwise divide by the number of input elements in the window.

    Returns:
        A ``Layer``; float32/float64 input, output of the same dtype.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> L.AvgPool2D(2).forward({}, np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))[0]
        array([[[[ 2.5,  4.5],
                 [10.5, 12.5]]]], dtype=float32)
    """
    cip = bool(count_include_pad)

    def fwd(K, x, k, s, p, OH, OW):
        return K.avgpool2d_forward(x, k[0], k[1], s[0], s[1], p[0], p[1], OH, OW, cip), None

    def bwd(K, dy, _, k, s, p, H, W):
        return K.avgpool2d_backward(dy, k[0], k[1], s[0], s[1], p[0], p[1], H, W, cip)

    return _pool("AvgPool2D", pool_size, stride, padding, fwd, bwd, lambda k: None)


def GlobalAvgPool2D() -> Layer:
    """Global average pooling: x (N, C, H, W) -> (N, C), the mean of each channel's plane;
    no params.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L
        >>> L.GlobalAvgPool2D().forward({}, np.ones((2, 3, 4, 4), np.float32))[0].shape
        (2, 3)
    """
    what = "GlobalAvgPool2D"

    def init(key, in_shape, dtype=np.float32):
        C, H, W = _image_shape(in_shape, what)
        return (C,), {}

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        x = _check_image(x, what)
        y = device.kernels("pool", x, what=what).global_avgpool2d_forward(x)
        return y, (tuple(int(v) for v in x.shape), y)

    def backward(params, cache, dy, *, need_dx=True):
        shape, y = chk.cache(cache, 2, what)
        chk.params(params, (), what)
        N, C, H, W = _cached_shape(shape, what)
        y = chk.floating(y, f"{what} backward cache y")
        y = chk.array(y, (N, C), y.dtype, f"{what} backward cache y")
        dy = _grad_like(dy, y, what)
        K = device.kernels("pool", dy, what=what)
        return K.global_avgpool2d_backward(dy, H, W), {}

    return _register(Layer(init, forward, backward), "GlobalAvgPool2D", _zero_macs)


__all__ = ["Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D"]
