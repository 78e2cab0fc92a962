"""Keys: explicit, splittable randomness (in the spirit of jax.random).

A key is a tuple of two non-negative ints below 2**32.  Nothing here holds state: derive a new
key for every use with ``split`` or ``fold_in`` and turn a key into numbers with ``generator``.
The derivations go through numpy's SeedSequence, so they are the same on every platform.

    key(seed)            -> key
    split(key, n=2)      -> tuple of n keys
    fold_in(key, data)   -> key            (data: a non-negative int, e.g. a step number)
    generator(key)       -> numpy.random.Generator (PCG64)
"""
import numpy as np

_SPLIT, _FOLD = 0x5B17, 0xF01D


def _check(key):
    if (not isinstance(key, tuple) or len(key) != 2
            or not all(isinstance(k, (int, np.integer)) and 0 <= k < 2**32 for k in key)):
        raise TypeError(f"expected a key: a tuple of two ints in [0, 2**32) made by "
                        f"dlkit.random.key(seed); got {key!r}")


def _derive(words):
    return tuple(int(w) for w in np.random.SeedSequence(words).generate_state(2))


def key(seed):
    """A key from an integer seed (any non-negative int)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return _derive([int(seed), 0])


def split(key, n=2):
    """n independent keys derived from ``key``."""
    _check(key)
    return tuple(_derive([*key, _SPLIT, i]) for i in range(int(n)))


def fold_in(key, data):
    """A key derived from ``key`` and a non-negative int (a step, an epoch, a layer index)."""
    _check(key)
    if not isinstance(data, (int, np.integer)) or data < 0:
        raise ValueError(f"fold_in data must be a non-negative int; got {data!r}")
    return _derive([*key, _FOLD, int(data)])


def generator(key):
    """A numpy Generator seeded by ``key``: the only way dlkit turns keys into numbers."""
    _check(key)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))
