"""Weight initialisers: ``fn(key, shape, dtype=np.float32) -> ndarray``.

Fans follow the layouts of DESIGN.md: dense weights (in, out) have fan_in = in, fan_out = out;
conv weights (C_out, C_in/groups, KH, KW) have fan_in = C_in/groups*KH*KW and
fan_out = C_out*KH*KW.  Look one up by name with ``get("he_uniform")``.

    zeros, ones
    glorot_uniform  U(-a, a), a = sqrt(6 / (fan_in + fan_out))        (Keras' Dense default)
    glorot_normal   N(0, 2 / (fan_in + fan_out))
    he_uniform      U(-a, a), a = sqrt(6 / fan_in)                    (for ReLU layers)
    he_normal       N(0, 2 / fan_in)
    lecun_normal    N(0, 1 / fan_in)
    fan_in_uniform  U(-a, a), a = 1 / sqrt(fan_in)                    (PyTorch's default)
    normal(std)     N(0, std^2), a factory: ``normal(0.02)``
    orthogonal      a (semi-)orthogonal matrix, for recurrent weights (2-D shapes)
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeAlias

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .random import Key, generator

Initializer: TypeAlias = Callable[..., NDArray]
"""``fn(key, shape, dtype=np.float32) -> ndarray``, the signature every initialiser has."""


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, for the layouts of DESIGN.md.

    1-D ``(n,)``: ``(n, n)``; dense ``(in, out)``: ``(in, out)``; conv
    ``(C_out, C_in/groups, KH, KW)``: ``(C_in/groups*KH*KW, C_out*KH*KW)``.

    Example:
        >>> from dlkit import init
        >>> init.fans((784, 128)), init.fans((32, 3, 5, 5))
        ((784, 128), (75, 800))
    """
    shape = tuple(shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def zeros(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """An array of zeros (``key`` is unused; kept for the common signature)."""
    return np.zeros(shape, dtype)


def ones(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """An array of ones (``key`` is unused; kept for the common signature)."""
    return np.ones(shape, dtype)


def _uniform(key, shape, dtype, limit):
    return generator(key).uniform(-limit, limit, size=shape).astype(dtype)


def _normal(key, shape, dtype, std):
    return (generator(key).standard_normal(size=shape) * std).astype(dtype)


def glorot_uniform(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """Glorot/Xavier uniform: U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))`` (Keras'
    Dense default)."""
    fi, fo = fans(shape)
    return _uniform(key, shape, dtype, np.sqrt(6.0 / (fi + fo)))


def glorot_normal(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    fi, fo = fans(shape)
    return _normal(key, shape, dtype, np.sqrt(2.0 / (fi + fo)))


def he_uniform(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """He/Kaiming uniform: U(-a, a) with ``a = sqrt(6 / fan_in)``, for ReLU layers."""
    return _uniform(key, shape, dtype, np.sqrt(6.0 / fans(shape)[0]))


def he_normal(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """He/Kaiming normal: N(0, 2 / fan_in), for ReLU layers."""
    return _normal(key, shape, dtype, np.sqrt(2.0 / fans(shape)[0]))


def lecun_normal(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """LeCun normal: N(0, 1 / fan_in)."""
    return _normal(key, shape, dtype, np.sqrt(1.0 / fans(shape)[0]))


def fan_in_uniform(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """U(-a, a) with ``a = 1 / sqrt(fan_in)``: PyTorch's default for Linear and Conv weights
    (``kaiming_uniform_(a=sqrt(5))``).  Smaller than He's by sqrt(6); before a BatchNorm the
    scale of the weights sets how far each Adam step turns them, so models written after a
    PyTorch recipe train as it does with this."""
    return _uniform(key, shape, dtype, 1.0 / np.sqrt(fans(shape)[0]))


def normal(std: float) -> Initializer:
    """An initialiser drawing N(0, std^2), e.g. ``normal(0.02)``, GPT-2's for embeddings and
    projections.

    Example:
        >>> from dlkit import init, random
        >>> round(float(init.normal(0.02)(random.key(0), (1000, 100)).std()), 3)
        0.02
    """
    def normal_init(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
        return _normal(key, shape, dtype, std)
    return normal_init


def orthogonal(key: Key, shape: Sequence[int], dtype: DTypeLike = np.float32,
               gain: float = 1.0) -> NDArray:
    """A random (semi-)orthogonal matrix times ``gain``, for recurrent weights.

    Drawn as the Q of a QR decomposition of a Gaussian matrix with the signs fixed by R's
    diagonal (uniform over orthogonal matrices, Mezzadri 2007).  For ``rows >= cols`` the
    columns are orthonormal, otherwise the rows.

    Args:
        key: a ``dlkit.random`` key.
        shape: ``(rows, cols)``.
        dtype: a floating dtype, float32 by default.
        gain: scale applied to the matrix.

    Returns:
        A new ``(rows, cols)`` array of ``dtype``.

    Raises:
        ValueError: ``shape`` is not 2-D.

    Example:
        >>> import numpy as np
        >>> from dlkit import init, random
        >>> U = init.orthogonal(random.key(0), (4, 4), np.float64)
        >>> np.allclose(U.T @ U, np.eye(4))
        True
    """
    if len(shape) != 2:
        raise ValueError(f"orthogonal init needs a 2-D shape, got {tuple(shape)}")
    rows, cols = shape
    a = generator(key).standard_normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))         # unique, uniformly distributed (Mezzadri 2007)
    q = q if rows >= cols else q.T
    return (gain * q[:rows, :cols]).astype(dtype)


# the sections every initialiser's docstring shares, written once
_SECTIONS = """

    Args:
        key: a ``dlkit.random`` key; the same key gives the same array.
        shape: the array's shape (see ``fans`` for how the fans are read from it).
        dtype: a floating dtype, float32 by default.

    Returns:
        A new array of ``shape`` and ``dtype``.

    Example:
        >>> from dlkit import init, random
"""
for _f, _v in ((zeros, 0), (ones, 1)):
    _f.__doc__ += _SECTIONS + f"""        >>> init.{_f.__name__}(random.key(0), (2,))
        array([{_v}., {_v}.], dtype=float32)
    """
for _f in (glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_normal, fan_in_uniform):
    _f.__doc__ += _SECTIONS + f"""        >>> W = init.{_f.__name__}(random.key(0), (784, 128))
        >>> W.shape, W.dtype
        ((784, 128), dtype('float32'))
        >>> bool((W == init.{_f.__name__}(random.key(0), (784, 128))).all())   # same key, same W
        True
    """

_ALL = {f.__name__: f for f in (zeros, ones, glorot_uniform, glorot_normal, he_uniform,
                                he_normal, lecun_normal, fan_in_uniform, orthogonal)}


def get(init: str | Initializer) -> Initializer:
    """An initialiser from its name, or ``init`` itself if it is callable.

    Raises:
        ValueError: an unknown name (the message lists the known ones).

    Example:
        >>> from dlkit import init
        >>> init.get("he_uniform") is init.he_uniform
        True
    """
    if callable(init):
        return init
    if init not in _ALL:
        raise ValueError(f"unknown initialiser {init!r}; choose one of {sorted(_ALL)}")
    return _ALL[init]
