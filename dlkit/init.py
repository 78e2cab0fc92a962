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
    orthogonal      a (semi-)orthogonal matrix, for recurrent weights (2-D shapes)
"""
import numpy as np

from .random import generator


def fans(shape):
    shape = tuple(shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def zeros(key, shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def ones(key, shape, dtype=np.float32):
    return np.ones(shape, dtype)


def _uniform(key, shape, dtype, limit):
    return generator(key).uniform(-limit, limit, size=shape).astype(dtype)


def _normal(key, shape, dtype, std):
    return (generator(key).standard_normal(size=shape) * std).astype(dtype)


def glorot_uniform(key, shape, dtype=np.float32):
    fi, fo = fans(shape)
    return _uniform(key, shape, dtype, np.sqrt(6.0 / (fi + fo)))


def glorot_normal(key, shape, dtype=np.float32):
    fi, fo = fans(shape)
    return _normal(key, shape, dtype, np.sqrt(2.0 / (fi + fo)))


def he_uniform(key, shape, dtype=np.float32):
    return _uniform(key, shape, dtype, np.sqrt(6.0 / fans(shape)[0]))


def he_normal(key, shape, dtype=np.float32):
    return _normal(key, shape, dtype, np.sqrt(2.0 / fans(shape)[0]))


def lecun_normal(key, shape, dtype=np.float32):
    return _normal(key, shape, dtype, np.sqrt(1.0 / fans(shape)[0]))


def orthogonal(key, shape, dtype=np.float32, gain=1.0):
    if len(shape) != 2:
        raise ValueError(f"orthogonal init needs a 2-D shape, got {tuple(shape)}")
    rows, cols = shape
    a = generator(key).standard_normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))         # unique, uniformly distributed (Mezzadri 2007)
    q = q if rows >= cols else q.T
    return (gain * q[:rows, :cols]).astype(dtype)


_ALL = {f.__name__: f for f in (zeros, ones, glorot_uniform, glorot_normal, he_uniform,
                                he_normal, lecun_normal, orthogonal)}


def get(init):
    """An initialiser from its name, or ``init`` itself if it is callable."""
    if callable(init):
        return init
    if init not in _ALL:
        raise ValueError(f"unknown initialiser {init!r}; choose one of {sorted(_ALL)}")
    return _ALL[init]
