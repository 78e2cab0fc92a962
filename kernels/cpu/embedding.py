"""Embedding lookup and channel (spatial) dropout over sequences.

    embedding_forward(ids (N,) int64, E (V, D)) -> y (N, D)           y[i] = E[ids[i]]
    embedding_backward(ids (N,) int64, dy (N, D), V, pad) -> dE (V, D)
        dE[v] = sum of dy[i] over the positions i with ids[i] = v, in increasing i; the row
        ``pad`` (PyTorch's padding_idx; -1 for none) gets no gradient.
    spatial_dropout_forward(x (B, T, D), keep (B, D) uint8, scale) -> y (B, T, D)
        y[b, t, d] = x[b, t, d] * keep[b, d] * scale: whole feature channels dropped per
        sequence (Keras' SpatialDropout1D).  The backward is the same map on dy.
    position_forward(x (B, T, D), P (L, D)) -> y (B, T, D)           y[b, t] = x[b, t] + P[t]
    position_backward(dy (B, T, D), L) -> dP (L, D)
        dP[t] = sum over b of dy[b, t] (in increasing b) for t < T, 0 for T <= t < L; the
        gradient of x is dy itself.  T <= L is checked by the API.

The backward is deterministic without atomics: a serial counting sort groups the positions by
id (O(N + V)), then a ``prange`` over fixed chunks of vocabulary rows lets every row sum its
own positions in order; no two iterations write the same row, and the row sums do not depend
on the thread count.  Small work runs the serial build of the same source (``parallel_above``).
Ids are trusted: dlkit checks them on the host (Numba does not
bounds-check).
"""
import numpy as np
from numba import njit, prange

from ._parallel import parallel_above


@njit(cache=True)
def _n_chunks(n, grain):
    """Chunks for n items of work: one per ``grain`` items, at most 16."""
    return max(1, min(16, n // grain))


@parallel_above(65536, size=lambda ids, E: ids.shape[0] * E.shape[1])
def embedding_forward(ids, E):
    """ids (N,) int64, E (V, D) -> y (N, D)."""
    N = ids.shape[0]
    D = E.shape[1]
    y = np.empty((N, D), dtype=E.dtype)
    nc = _n_chunks(N * D, 32768)
    for c in prange(nc):
        for i in range(c * N // nc, (c + 1) * N // nc):
            src = E[ids[i]]
            dst = y[i]
            for j in range(D):
                dst[j] = src[j]
    return y


@njit(cache=True, error_model="numpy")
def _group_by_id(ids, V):
    """Counting sort: positions of each id in increasing order.
    -> start (V + 1,) int64, order (N,) int64: id v's positions are order[start[v]:start[v+1]]."""
    N = ids.shape[0]
    start = np.zeros(V + 1, dtype=np.int64)
    for i in range(N):
        start[ids[i] + 1] += 1
    for v in range(V):
        start[v + 1] += start[v]
    cursor = start[:V].copy()
    order = np.empty(N, dtype=np.int64)
    for i in range(N):
        v = ids[i]
        order[cursor[v]] = i
        cursor[v] += 1
    return start, order


@parallel_above(65536, size=lambda ids, dy, V, pad: V * dy.shape[1])
def embedding_backward(ids, dy, V, pad):
    """ids (N,) int64, dy (N, D), V vocabulary size, pad row (-1: none) -> dE (V, D)."""
    D = dy.shape[1]
    dE = np.empty((V, D), dtype=dy.dtype)
    start, order = _group_by_id(ids, V)
    nc = _n_chunks(V * D, 65536)
    for c in prange(nc):
        for v in range(c * V // nc, (c + 1) * V // nc):
            row = dE[v]
            for j in range(D):
                row[j] = 0
            if v == pad:
                continue
            for p in range(start[v], start[v + 1]):
                src = dy[order[p]]
                for j in range(D):
                    row[j] += src[j]
    return dE


@parallel_above(65536, size=lambda x, keep, scale: x.size)
def spatial_dropout_forward(x, keep, scale):
    """x (B, T, D), keep (B, D) uint8 0/1, scale -> y (B, T, D) = x * keep[:, None, :] * scale."""
    B, T, D = x.shape
    y = np.empty_like(x)
    s = x.dtype.type(scale)
    nc = _n_chunks(B * T * D, 32768)
    for c in prange(nc):
        m = np.empty(D, dtype=x.dtype)
        for b in range(c * B // nc, (c + 1) * B // nc):
            for j in range(D):
                m[j] = s if keep[b, j] else s * 0
            for t in range(T):
                src = x[b, t]
                dst = y[b, t]
                for j in range(D):
                    dst[j] = src[j] * m[j]
    return y


spatial_dropout_backward = spatial_dropout_forward


@parallel_above(65536, size=lambda x, P: x.size)
def position_forward(x, P):
    """x (B, T, D), P (L, D) with T <= L -> y (B, T, D) = x + P[:T] (broadcast over b)."""
    B, T, D = x.shape
    y = np.empty_like(x)
    nc = _n_chunks(B * T * D, 32768)
    for c in prange(nc):
        for b in range(c * B // nc, (c + 1) * B // nc):
            for t in range(T):
                src, pos, dst = x[b, t], P[t], y[b, t]
                for j in range(D):
                    dst[j] = src[j] + pos[j]
    return y


@parallel_above(65536, size=lambda dy, L: dy.size)
def position_backward(dy, L):
    """dy (B, T, D), L >= T -> dP (L, D): dP[t] = sum_b dy[b, t] for t < T, rows T.. zero.
    Chunks own positions t, so no two write the same row."""
    B, T, D = dy.shape
    dP = np.zeros((L, D), dy.dtype)
    nc = _n_chunks(B * T * D, 32768)
    for c in prange(nc):
        for t in range(c * T // nc, (c + 1) * T // nc):
            acc = dP[t]
            for b in range(B):
                src = dy[b, t]
                for j in range(D):
                    acc[j] += src[j]
    return dP
