"""Keys: explicit, splittable randomness (in the spirit of jax.random).

A key is a tuple of two non-negative ints below 2**32.  Nothing here holds state: derive a new
key for every use with ``split`` or ``fold_in`` and turn a key into numbers with ``generator``.
Derivations hash the key's words with the SplitMix64 finaliser in plain Python integers (the same
on every platform, about 1 us; numpy's SeedSequence took 16 us, which mattered once per layer
per step); ``generator`` seeds PCG64 through SeedSequence.

    key(seed)            -> key
    split(key, n=2)      -> tuple of n keys
    fold_in(key, data)   -> key            (data: a non-negative int, e.g. a step number)
    generator(key)       -> numpy.random.Generator (PCG64)
    keep_mask(key, shape, rate) -> uint8 0/1 array, P(1) = 1 - rate (dropout masks; a Numba
                            kernel, 7x faster than drawing floats from ``generator``)
    uniform(key, shape, dtype=float32) -> floats in [0, 1) (the same SplitMix64 kernel family,
                            parallel; what the RBM's Gibbs samplers consume)
"""
from __future__ import annotations

from typing import Sequence, TypeAlias

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import device

Key: TypeAlias = tuple[int, int]
"""A key: a tuple of two ints in ``[0, 2**32)``, made by ``key(seed)``."""

_SPLIT, _FOLD = 0x5B17, 0xF01D


def _check(key):
    if (not isinstance(key, tuple) or len(key) != 2
            or not all(isinstance(k, (int, np.integer)) and 0 <= k < 2**32 for k in key)):
        raise TypeError(f"expected a key: a tuple of two ints in [0, 2**32) made by "
                        f"dlkit.random.key(seed); got {key!r}")


_M64 = (1 << 64) - 1


def _mix(z):
    """SplitMix64: a bijective 64-bit mixer with good avalanche."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _derive(words):
    h = 0
    for w in words:
        h = _mix(h ^ (int(w) & _M64))
    return (h >> 32, h & 0xFFFFFFFF)


def key(seed: int) -> Key:
    """A key from an integer seed (any non-negative int).

    Raises:
        ValueError: ``seed`` is not a non-negative int.

    Example:
        >>> from dlkit import random
        >>> k = random.key(0)
        >>> isinstance(k, tuple) and len(k) == 2 and k == random.key(0)
        True
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return _derive([int(seed), 0])


def split(key: Key, n: int = 2) -> tuple[Key, ...]:
    """``n`` independent keys derived from ``key``.

    Raises:
        TypeError: ``key`` is not a key.

    Example:
        >>> from dlkit import random
        >>> k1, k2 = random.split(random.key(0))
        >>> k1 != k2
        True
    """
    _check(key)
    return tuple(_derive([*key, _SPLIT, i]) for i in range(int(n)))


def fold_in(key: Key, data: int) -> Key:
    """A key derived from ``key`` and a non-negative int (a step, an epoch, a layer index).

    Raises:
        TypeError: ``key`` is not a key.
        ValueError: ``data`` is not a non-negative int.

    Example:
        >>> from dlkit import random
        >>> k = random.key(0)
        >>> random.fold_in(k, 1) == random.fold_in(k, 1) != random.fold_in(k, 2)
        True
    """
    _check(key)
    if not isinstance(data, (int, np.integer)) or data < 0:
        raise ValueError(f"fold_in data must be a non-negative int; got {data!r}")
    return _derive([*key, _FOLD, int(data)])


def generator(key: Key) -> np.random.Generator:
    """A numpy Generator (PCG64) seeded by ``key``: how dlkit turns keys into numbers.

    Example:
        >>> from dlkit import random
        >>> a = random.generator(random.key(0)).standard_normal(3)
        >>> bool((a == random.generator(random.key(0)).standard_normal(3)).all())
        True
    """
    _check(key)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def keep_mask(key: Key, shape: int | Sequence[int], rate: float) -> NDArray[np.uint8]:
    """A uint8 array of ``shape``, 1 with probability ``1 - rate``: the SplitMix64 stream seeded
    by ``key`` (kernels.cpu.activations.dropout_mask), the dropout layers' masks.

    Raises:
        TypeError: ``key`` is not a key.
        ValueError: ``rate`` outside ``[0, 1)``.

    Example:
        >>> from dlkit import random
        >>> m = random.keep_mask(random.key(0), (1000,), 0.25)
        >>> m.dtype, bool(0.7 < m.mean() < 0.8)
        (dtype('uint8'), True)
    """
    _check(key)
    if not 0 <= rate < 1:
        raise ValueError(f"keep_mask: rate must be in [0, 1), got {rate!r}")
    n = int(np.prod(shape, dtype=np.int64))
    return device.kernels("activations").dropout_mask(_seed(key), n, np.uint64(round(rate * 2**32))).reshape(shape)


def uniform(key: Key, shape: int | Sequence[int], dtype: DTypeLike = np.float32) -> NDArray:
    """An array of ``shape`` and ``dtype`` (float32 or float64) of uniforms in [0, 1): the
    SplitMix64 stream seeded by ``key`` (kernels.cpu.activations.uniform; 24 random bits in a
    float32, 53 in a float64).

    Raises:
        TypeError: ``key`` is not a key, or another dtype.

    Example:
        >>> from dlkit import random
        >>> u = random.uniform(random.key(0), (2, 3))
        >>> u.shape, u.dtype, bool(((0 <= u) & (u < 1)).all())
        ((2, 3), dtype('float32'), True)
    """
    _check(key)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"uniform: dtype must be float32 or float64, got {dtype}")
    out = np.empty(int(np.prod(shape, dtype=np.int64)), dtype)
    device.kernels("activations").uniform(_seed(key), out)
    return out.reshape(shape)


def _seed(key):
    """The uint64 that seeds a key's SplitMix64 stream."""
    return np.uint64((int(key[0]) << 32) | int(key[1]))
