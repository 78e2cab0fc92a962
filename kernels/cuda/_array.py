"""Small array operations the layers need between kernels on the device (no CPU mirror: on
the host they are plain numpy, see ``dlkit.device``).  Launchers take and return device
arrays and never copy to the host.

    full(shape, value, dtype)     a new array filled on the device
    add(a, b, scale=None)         (a + b), or (a + b) * scale, elementwise; same shapes
    mul(a, scale)                 a * scale
    concat(a, b)                  along the last axis: (..., m) + (..., n) -> (..., m + n)
    split(a, m)                   along the last axis: (..., m + n) -> (..., m), (..., n)
    first_outside(ids, lo, hi)    int64 (2,): the flat position of the first id outside
                                  [lo, hi) and that id, or (-1, 0) when all are inside

Work to threads: grid-stride loops over the output elements (256-thread blocks, consecutive
threads on consecutive elements of the contiguous last axis, so loads and stores coalesce).
``first_outside``: each thread keeps the first bad position of its grid-stride elements, a
shared-memory tree takes each block's minimum, one block then takes the minimum of the block
minima: a fixed order, no atomics.
"""
import numpy as np
from numba import cuda, int64

from ._launch import THREADS, empty, grid_1d


def _flat(a):
    return a.reshape(int(np.prod(a.shape, dtype=np.int64)))


@cuda.jit
def _fill(a, value):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


def full(shape, value, dtype):
    a = empty(shape, dtype)
    if a.size:
        _fill[grid_1d(a.size)](_flat(a), np.dtype(dtype).type(value))
    return a


@cuda.jit
def _add(a, b, out, scale, scaled):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        s = a[i] + b[i]
        out[i] = s * scale if scaled else s


def add(a, b, scale=None):
    out = empty(a.shape, a.dtype)
    if a.size:
        t = a.dtype.type
        _add[grid_1d(a.size)](_flat(a), _flat(b), _flat(out),
                              t(1 if scale is None else scale), scale is not None)
    return out


@cuda.jit
def _mul(a, out, scale):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * scale


def mul(a, scale):
    out = empty(a.shape, a.dtype)
    if a.size:
        _mul[grid_1d(a.size)](_flat(a), _flat(out), a.dtype.type(scale))
    return out


@cuda.jit
def _concat(a, b, out):
    """out (R, m + n) = [a (R, m) | b (R, n)]."""
    m, n = a.shape[1], b.shape[1]
    w = m + n
    for e in range(cuda.grid(1), out.shape[0] * w, cuda.gridsize(1)):
        r = e // w
        j = e - r * w
        out[r, j] = a[r, j] if j < m else b[r, j - m]


def concat(a, b):
    shape = tuple(a.shape)          # (the simulator's shapes refuse negative indices)
    m, n = shape[-1], tuple(b.shape)[-1]
    out = empty(shape[:-1] + (m + n,), a.dtype)
    if out.size:
        R = out.size // (m + n)
        _concat[grid_1d(out.size)](a.reshape(R, m), b.reshape(R, n), out.reshape(R, m + n))
    return out


@cuda.jit
def _split(a, lo, hi):
    m, n = lo.shape[1], hi.shape[1]
    w = m + n
    for e in range(cuda.grid(1), a.shape[0] * w, cuda.gridsize(1)):
        r = e // w
        j = e - r * w
        if j < m:
            lo[r, j] = a[r, j]
        else:
            hi[r, j - m] = a[r, j]


def split(a, m):
    shape = tuple(a.shape)
    w = shape[-1]
    lo, hi = empty(shape[:-1] + (m,), a.dtype), empty(shape[:-1] + (w - m,), a.dtype)
    if a.size:
        R = a.size // w
        _split[grid_1d(a.size)](a.reshape(R, w), lo.reshape(R, m), hi.reshape(R, w - m))
    return lo, hi


@cuda.jit
def _first_outside_blocks(ids, lo, hi, part):
    """part[block] = the smallest position i of this block's elements with ids[i] outside
    [lo, hi), or n."""
    best = cuda.shared.array(THREADS, int64)
    t = cuda.threadIdx.x
    n = ids.shape[0]
    f = n
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = int64(ids[i])
        if f == n and (v < lo or v >= hi):
            f = i
    best[t] = f
    cuda.syncthreads()
    h = THREADS // 2
    while h > 0:
        if t < h:
            best[t] = min(best[t], best[t + h])
        cuda.syncthreads()
        h //= 2
    if t == 0:
        part[cuda.blockIdx.x] = best[0]


@cuda.jit
def _first_outside_finish(ids, part, out):
    best = cuda.shared.array(THREADS, int64)
    t = cuda.threadIdx.x
    n = ids.shape[0]
    f = n
    for i in range(t, part.shape[0], THREADS):
        f = min(f, part[i])
    best[t] = f
    cuda.syncthreads()
    h = THREADS // 2
    while h > 0:
        if t < h:
            best[t] = min(best[t], best[t + h])
        cuda.syncthreads()
        h //= 2
    if t == 0:
        if best[0] < n:
            out[0] = best[0]
            out[1] = int64(ids[best[0]])
        else:
            out[0] = -1
            out[1] = 0


def first_outside(ids, lo, hi):
    flat = _flat(ids)
    blocks, threads = grid_1d(max(flat.shape[0], 1))
    part = empty(blocks, np.int64)
    out = empty(2, np.int64)
    _first_outside_blocks[blocks, threads](flat, np.int64(lo), np.int64(hi), part)
    _first_outside_finish[1, THREADS](flat, part, out)
    return out
