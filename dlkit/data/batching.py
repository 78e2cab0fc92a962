"""Seeded mini-batches and splits.

    batches(X, Y, batch_size, key=None, drop_last=False, start=0)
        yields (X[idx], Y[idx]) over a permutation drawn from ``key`` (None: in order).
        ``start`` skips the first ``start`` batches of that same order (for resuming mid-epoch).
    permutation(key, n)                    the order batches() uses
    train_val_split(X, Y, val_fraction, key) -> (X_tr, Y_tr), (X_val, Y_val)
"""
import numpy as np

from ..random import generator


def permutation(key, n):
    return np.arange(n) if key is None else generator(key).permutation(n)


def _check_pair(X, Y):
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have the same length, got {len(X)} and {len(Y)}")


def n_batches(n, batch_size, drop_last=False):
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(X, Y, batch_size, key=None, drop_last=False, start=0):
    _check_pair(X, Y)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = permutation(key, len(X))
    for b in range(start, n_batches(len(X), batch_size, drop_last)):
        idx = np.sort(order[b * batch_size:(b + 1) * batch_size]) if key is None else \
            order[b * batch_size:(b + 1) * batch_size]
        yield X[idx], Y[idx]


def train_val_split(X, Y, val_fraction, key):
    _check_pair(X, Y)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    order = permutation(key, len(X))
    n_val = int(round(len(X) * val_fraction))
    va, tr = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (X[tr], Y[tr]), (X[va], Y[va])
