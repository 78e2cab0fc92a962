"""Seeded mini-batches and splits.

    batches(X, Y, batch_size, key=None, drop_last=False, start=0)
        yields (X[idx], Y[idx]) over a permutation drawn from ``key`` (None: in order).
        ``start`` skips the first ``start`` batches of that same order (for resuming mid-epoch).
    permutation(key, n)                    the order batches() uses
    train_val_split(X, Y, val_fraction, key) -> (X_tr, Y_tr), (X_val, Y_val)
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from numpy.typing import NDArray

from ..random import Key, generator


def permutation(key: Key | None, n: int) -> NDArray[np.int64]:
    """The order ``batches`` visits n examples in: a permutation drawn from ``key``, or
    ``arange(n)`` when key is None.

    Example:
        >>> from dlkit import data, random
        >>> data.permutation(None, 4)
        array([0, 1, 2, 3])
        >>> sorted(data.permutation(random.key(0), 4).tolist())
        [0, 1, 2, 3]
    """
    return np.arange(n) if key is None else generator(key).permutation(n)


def _check_pair(X, Y):
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have the same length, got {len(X)} and {len(Y)}")


def n_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches ``batches`` yields for n examples: ceil(n / batch_size), or the number
    of full batches when ``drop_last``.

    Example:
        >>> from dlkit import data
        >>> data.n_batches(10, 4), data.n_batches(10, 4, drop_last=True)
        (3, 2)
    """
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(X: NDArray, Y: NDArray, batch_size: int, key: Key | None = None,
            drop_last: bool = False, start: int = 0) -> Iterator[tuple[NDArray, NDArray]]:
    """Yield mini-batches ``(X[idx], Y[idx])`` in the order ``permutation(key, len(X))``.

    Args:
        X: (N, ...) inputs, any dtype (indexed along the first axis; copies are yielded).
        Y: (N, ...) targets.
        batch_size: examples per batch; the last batch may be smaller.
        key: a ``dlkit.random`` key for a shuffled order (use a new one each epoch, e.g.
            ``fold_in(key, epoch)``); None for the stored order.
        drop_last: skip the last, smaller batch.
        start: skip the first ``start`` batches of that same order (to resume mid-epoch).

    Raises:
        ValueError: X and Y of different lengths, or a batch_size that is not a positive int.

    Example:
        >>> import numpy as np
        >>> from dlkit import data, random
        >>> X, Y = np.arange(10).reshape(5, 2), np.arange(5)
        >>> [y.tolist() for _, y in data.batches(X, Y, 2)]
        [[0, 1], [2, 3], [4]]
        >>> sorted(int(v) for _, y in data.batches(X, Y, 2, key=random.key(0)) for v in y)
        [0, 1, 2, 3, 4]
    """
    _check_pair(X, Y)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = permutation(key, len(X))
    for b in range(start, n_batches(len(X), batch_size, drop_last)):
        idx = np.sort(order[b * batch_size:(b + 1) * batch_size]) if key is None else \
            order[b * batch_size:(b + 1) * batch_size]
        yield X[idx], Y[idx]


def train_val_split(X: NDArray, Y: NDArray, val_fraction: float,
                    key: Key | None) -> tuple[tuple[NDArray, NDArray], tuple[NDArray, NDArray]]:
    """Split (X, Y) at random into a training and a validation set (each in stored order).

    Args:
        X, Y: (N, ...) arrays of the same length.
        val_fraction: the validation share, in (0, 1); ``round(N * val_fraction)`` examples.
        key: a ``dlkit.random`` key choosing the split (None: the first examples go to validation).

    Returns:
        ``(X_train, Y_train), (X_val, Y_val)``.

    Raises:
        ValueError: X and Y of different lengths, or val_fraction outside (0, 1).

    Example:
        >>> import numpy as np
        >>> from dlkit import data, random
        >>> (Xt, Yt), (Xv, Yv) = data.train_val_split(np.zeros((10, 3)), np.arange(10), 0.2,
        ...                                           random.key(0))
        >>> Xt.shape, Xv.shape, sorted(Yt.tolist() + Yv.tolist()) == list(range(10))
        ((8, 3), (2, 3), True)
    """
    _check_pair(X, Y)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    order = permutation(key, len(X))
    n_val = int(round(len(X) * val_fraction))
    va, tr = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (X[tr], Y[tr]), (X[va], Y[va])
