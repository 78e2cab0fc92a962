"""Embedding lookup and channel (spatial) dropout on the GPU; mirrors kernels.cpu.embedding
(same names, arguments and results; see its docstring).  The API checks the ids before the
forward runs; the backward's counting sort also skips ids outside [0, V), because the API does
not read a cache's device ids back a second time, so no id can make it write out of bounds.

Work to threads:

* ``embedding_forward``: one thread per output element, grid-stride over N*D with consecutive
  threads on consecutive features, so each row copy E[ids[i]] -> y[i] is a coalesced read and
  a coalesced write.
* ``embedding_backward``, by vocabulary-row ownership and without atomics: a stable parallel
  counting sort groups the positions by id, then every dE element sums its own positions.
    1. the N positions are cut into Q chunks (Q depends on N only); thread q counts its
       chunk's ids into its own row counts[q, :];
    2. one thread per vocabulary row v scans counts[:, v] over the chunks (its own column) to
       the row's total; a single block turns the totals into row starts (exclusive prefix sum:
       each of 1024 threads sums a contiguous segment, a shared-memory scan of the segment
       sums, each thread writes its segment) and each v thread then writes offsets[q, v];
    3. thread q scatters its chunk's positions, in increasing order, to order[offsets[q, id]++]
       (it owns that row of offsets): order lists each id's positions in increasing order;
    4. one thread per dE element (v, j), consecutive threads on consecutive j (coalesced reads
       of dy rows), sums dy[order[p], j] over v's positions in order; the pad row gets zeros.
  The sums run in increasing position order, exactly as on the CPU: deterministic, and equal to
  the CPU kernel's result bit for bit.
* ``spatial_dropout_forward`` / ``_backward``, ``position_forward``: elementwise grid-stride
  loops.
* ``position_backward``: one thread per dP element (t, j), consecutive threads on consecutive
  j (coalesced), summing dy[b, t, j] over b in increasing order, as the CPU kernel does.
"""
import numpy as np
from numba import cuda, int64

from ._launch import cdiv, empty, grid_1d

_CHUNK = 64             # positions per counting-sort chunk (Q = ceil(N / 64), at most _MAX_Q)
_MAX_Q = 1024
_SCAN = 1024            # threads of the prefix-sum block


@cuda.jit
def _gather(ids, E, y):
    D = E.shape[1]
    for e in range(cuda.grid(1), y.shape[0] * D, cuda.gridsize(1)):
        i = e // D
        j = e - i * D
        y[i, j] = E[ids[i], j]


def embedding_forward(ids, E):
    """ids (N,) ints, E (V, D) -> y (N, D) = E[ids]."""
    N, D = ids.shape[0], E.shape[1]
    y = empty((N, D), E.dtype)
    if N * D:
        _gather[grid_1d(N * D)](ids, E, y)
    return y


@cuda.jit
def _count(ids, counts):
    """counts[q, v] = occurrences of v in chunk q of ids (thread q owns row q)."""
    Q, V = counts.shape
    N = ids.shape[0]
    for q in range(cuda.grid(1), Q, cuda.gridsize(1)):
        for v in range(V):
            counts[q, v] = 0
        for i in range(q * N // Q, (q + 1) * N // Q):
            v = ids[i]
            if v >= 0 and v < V:        # the API checked the ids; never write outside anyway
                counts[q, v] += 1


@cuda.jit
def _row_totals(counts, totals):
    for v in range(cuda.grid(1), totals.shape[0], cuda.gridsize(1)):
        t = 0
        for q in range(counts.shape[0]):
            t += counts[q, v]
        totals[v] = t


@cuda.jit
def _exclusive_scan(totals, start):
    """start[v] = sum of totals[:v], start[V] = the total; one block of _SCAN threads."""
    part = cuda.shared.array(_SCAN, int64)
    V = totals.shape[0]
    t = cuda.threadIdx.x
    lo, hi = t * V // _SCAN, (t + 1) * V // _SCAN
    s = 0
    for v in range(lo, hi):
        s += totals[v]
    part[t] = s
    cuda.syncthreads()
    if t == 0:              # 1024 segment sums: a short serial scan, in order
        run = 0
        for k in range(_SCAN):
            c = part[k]
            part[k] = run
            run += c
        start[V] = run
    cuda.syncthreads()
    run = part[t]
    for v in range(lo, hi):
        start[v] = run
        run += totals[v]


@cuda.jit
def _offsets(counts, start, offsets):
    """offsets[q, v] = start[v] + sum of counts[:q, v] (thread v owns column v)."""
    Q, V = counts.shape
    for v in range(cuda.grid(1), V, cuda.gridsize(1)):
        run = start[v]
        for q in range(Q):
            offsets[q, v] = run
            run += counts[q, v]


@cuda.jit
def _scatter(ids, offsets, order):
    Q = offsets.shape[0]
    N = ids.shape[0]
    for q in range(cuda.grid(1), Q, cuda.gridsize(1)):
        V = offsets.shape[1]
        for i in range(q * N // Q, (q + 1) * N // Q):
            v = ids[i]
            if v >= 0 and v < V:
                order[offsets[q, v]] = i
                offsets[q, v] += 1


@cuda.jit
def _row_sums(dy, order, start, pad, dE, zero):
    V, D = dE.shape
    for e in range(cuda.grid(1), V * D, cuda.gridsize(1)):
        v = e // D
        j = e - v * D
        s = zero
        if v != pad:
            for p in range(start[v], start[v + 1]):
                s += dy[order[p], j]
        dE[v, j] = s


def embedding_backward(ids, dy, V, pad):
    """ids (N,) ints, dy (N, D), V vocabulary size, pad row (-1: none) -> dE (V, D)."""
    N, D = dy.shape
    dE = empty((V, D), dy.dtype)
    if V * D == 0:
        return dE
    Q = max(1, min(_MAX_Q, cdiv(N, _CHUNK)))
    counts = empty((Q, V), np.int64)
    totals = empty(V, np.int64)
    start = empty(V + 1, np.int64)
    offsets = empty((Q, V), np.int64)
    order = empty(max(N, 1), np.int64)
    _count[grid_1d(Q, 64)](ids, counts)
    _row_totals[grid_1d(V)](counts, totals)
    _exclusive_scan[1, _SCAN](totals, start)
    _offsets[grid_1d(V)](counts, start, offsets)
    _scatter[grid_1d(Q, 64)](ids, offsets, order)
    _row_sums[grid_1d(V * D)](dy, order, start, pad, dE, dy.dtype.type(0))
    return dE


@cuda.jit
def _spatial_dropout(x, keep, y, scale, zero):
    B, T, D = x.shape
    for e in range(cuda.grid(1), B * T * D, cuda.gridsize(1)):
        j = e % D
        b = e // (T * D)
        t = (e // D) % T
        y[b, t, j] = x[b, t, j] * (scale if keep[b, j] else zero)


def spatial_dropout_forward(x, keep, scale):
    """x (B, T, D), keep (B, D) uint8 0/1, scale -> y (B, T, D) = x * keep[:, None, :] * scale."""
    y = empty(x.shape, x.dtype)
    t = x.dtype.type
    if y.size:
        _spatial_dropout[grid_1d(y.size)](x, keep, y, t(scale), t(0))
    return y


spatial_dropout_backward = spatial_dropout_forward


@cuda.jit
def _position_add(x, P, y):
    B, T, D = x.shape
    for e in range(cuda.grid(1), B * T * D, cuda.gridsize(1)):
        j = e % D
        t = (e // D) % T
        b = e // (T * D)
        y[b, t, j] = x[b, t, j] + P[t, j]


def position_forward(x, P):
    """x (B, T, D), P (L, D) with T <= L -> y (B, T, D) = x + P[:T]."""
    y = empty(x.shape, x.dtype)
    if y.size:
        _position_add[grid_1d(y.size)](x, P, y)
    return y


@cuda.jit
def _position_sum(dy, dP, zero):
    B, T, D = dy.shape
    L = dP.shape[0]
    for e in range(cuda.grid(1), L * D, cuda.gridsize(1)):
        j = e % D
        t = e // D
        acc = zero
        if t < T:
            for b in range(B):
                acc += dy[b, t, j]
        dP[t, j] = acc


def position_backward(dy, L):
    """dy (B, T, D), L >= T -> dP (L, D): dP[t] = sum_b dy[b, t], rows T.. zero."""
    dP = empty((L, dy.shape[2]), dy.dtype)
    if dP.size:
        _position_sum[grid_1d(dP.size)](dy, dP, dy.dtype.type(0))
    return dP
