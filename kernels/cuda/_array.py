"""Small array operations the layers need between kernels on the device (no CPU mirror: on
the host they are plain numpy, see ``dlkit.device``).  Launchers take and return device
arrays and never copy to the host.

    full(shape, value, dtype)     a new array filled on the device
    add(a, b, scale=None)         (a + b), or (a + b) * scale, elementwise; same shapes
    mul(a, scale)                 a * scale
    astype(a, dtype)              a converted to dtype (integer labels -> float targets)
    concat(a, b)                  along the last axis: (..., m) + (..., n) -> (..., m + n)
    split(a, m)                   along the last axis: (..., m + n) -> (..., m), (..., n)
    first_outside(ids, lo, hi)    int64 (2,): the flat position of the first id outside
                                  [lo, hi) and that id, or (-1, 0) when all are inside
    value_range(a)                float64 (3,): the smallest and largest value that is not
                                  NaN (inf, -inf when there is none) and 1.0 if a holds a
                                  NaN, else 0.0 (range checks of device data: 24 bytes back)
    sum_squares(arrays)           float64 (n,): each array's sum of squares
    scale_to_norm(arrays, sums, max_norm)
                                  the arrays scaled to global norm <= max_norm (gradient
                                  clipping), the norm never leaving the device

Work to threads: grid-stride loops over the output elements (256-thread blocks, consecutive
threads on consecutive elements of the contiguous last axis, so loads and stores coalesce).
``first_outside``: each thread keeps the first bad position of its grid-stride elements, a
shared-memory tree takes each block's minimum, one block then takes the minimum of the block
minima: a fixed order, no atomics.  ``value_range`` and ``sum_squares`` reduce the same way
(per-thread minimum, maximum and NaN flag in float64, which holds every float32 and float64
value exactly; float64 per-thread sums of squares), a tree per block, one block over the block
results.
"""
import math

import numpy as np
from numba import cuda, float64, int64

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
def _cast(a, out):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i] = a[i]


def astype(a, dtype):
    """A copy of a converted to dtype (as numpy's astype: C casts)."""
    out = empty(a.shape, dtype)
    if a.size:
        _cast[grid_1d(a.size)](_flat(a), _flat(out))
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


@cuda.jit(device=True, inline=True)
def _tree_sum(acc, v):
    """The sum of every thread's v over the block, through the shared array acc (THREADS,),
    in a fixed order; every thread of the block calls it and gets the sum."""
    t = cuda.threadIdx.x
    acc[t] = v
    cuda.syncthreads()
    h = THREADS // 2
    while h > 0:
        if t < h:
            acc[t] += acc[t + h]
        cuda.syncthreads()
        h //= 2
    return acc[0]


@cuda.jit(device=True, inline=True)
def _tree_min(acc, v):
    """The minimum of every thread's v over the block (as _tree_sum)."""
    t = cuda.threadIdx.x
    acc[t] = v
    cuda.syncthreads()
    h = THREADS // 2
    while h > 0:
        if t < h:
            acc[t] = min(acc[t], acc[t + h])
        cuda.syncthreads()
        h //= 2
    return acc[0]


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
    f = _tree_min(best, f)
    if t == 0:
        part[cuda.blockIdx.x] = f


@cuda.jit
def _first_outside_finish(ids, part, out):
    best = cuda.shared.array(THREADS, int64)
    t = cuda.threadIdx.x
    n = ids.shape[0]
    f = n
    for i in range(t, part.shape[0], THREADS):
        f = min(f, part[i])
    f = _tree_min(best, f)
    if t == 0:
        if f < n:
            out[0] = f
            out[1] = int64(ids[f])
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


@cuda.jit(device=True, inline=True)
def _range_tree(red, lo, hi, nan, out, col):
    """out[:, col] = (min of lo, max of hi, max of nan) over the block (every thread calls)."""
    t = cuda.threadIdx.x
    red[0, t] = lo
    red[1, t] = hi
    red[2, t] = nan
    cuda.syncthreads()
    h = THREADS // 2
    while h > 0:
        if t < h:
            red[0, t] = min(red[0, t], red[0, t + h])
            red[1, t] = max(red[1, t], red[1, t + h])
            red[2, t] = max(red[2, t], red[2, t + h])
        cuda.syncthreads()
        h //= 2
    if t == 0:
        out[0, col] = red[0, 0]
        out[1, col] = red[1, 0]
        out[2, col] = red[2, 0]


@cuda.jit
def _range_blocks(a, part):
    """part[:, block] = (min, max, NaN flag) of this block's grid-stride elements."""
    red = cuda.shared.array((3, THREADS), float64)
    lo, hi, nan = math.inf, -math.inf, 0.0
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        v = float64(a[i])
        if math.isnan(v):
            nan = 1.0
        else:
            lo = min(lo, v)
            hi = max(hi, v)
    _range_tree(red, lo, hi, nan, part, cuda.blockIdx.x)


@cuda.jit
def _range_finish(part, out):
    red = cuda.shared.array((3, THREADS), float64)
    lo, hi, nan = math.inf, -math.inf, 0.0
    for i in range(cuda.threadIdx.x, part.shape[1], THREADS):
        lo = min(lo, part[0, i])
        hi = max(hi, part[1, i])
        nan = max(nan, part[2, i])
    _range_tree(red, lo, hi, nan, out, 0)


def value_range(a):
    """float64 (3,) on the device: (min, max) of a's non-NaN values (inf, -inf if none) and
    1.0 when a holds a NaN (else 0.0).  The caller reads the 24 bytes back."""
    flat = _flat(a)
    blocks, threads = grid_1d(max(flat.shape[0], 1))
    part = empty((3, blocks), np.float64)
    out = empty((3, 1), np.float64)
    _range_blocks[blocks, threads](flat, part)
    _range_finish[1, THREADS](part, out)
    return out.reshape(3)


@cuda.jit
def _sumsq_blocks(a, part):
    """part[block] = the sum of squares (float64) of this block's grid-stride elements."""
    acc = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    s = 0.0
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        v = float64(a[i])
        s += v * v
    s = _tree_sum(acc, s)
    if t == 0:
        part[cuda.blockIdx.x] = s


@cuda.jit
def _sum_into(part, out, k):
    """out[k] = sum(part), one block, a fixed order."""
    acc = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    s = 0.0
    for i in range(t, part.shape[0], THREADS):
        s += part[i]
    s = _tree_sum(acc, s)
    if t == 0:
        out[k] = s


def sum_squares(arrays):
    """float64 (len(arrays),): each array's sum of squares, on the device."""
    out = empty(len(arrays), np.float64)
    for k, a in enumerate(arrays):
        flat = _flat(a)
        blocks, threads = grid_1d(max(flat.shape[0], 1))
        part = empty(blocks, np.float64)
        _sumsq_blocks[blocks, threads](flat, part)
        _sum_into[1, THREADS](part, out, k)
    return out


@cuda.jit
def _norm_scale(sums, max_norm, scale):
    """scale[0] = max_norm / sqrt(sum(sums)) when that norm is finite and above max_norm, else
    1 (one thread; the store rounds to scale's dtype, as the CPU's g.dtype.type(scale))."""
    if cuda.grid(1) == 0:
        total = 0.0
        for i in range(sums.shape[0]):
            total += sums[i]
        norm = math.sqrt(total)
        scale[0] = max_norm / norm if (not math.isinf(norm) and not math.isnan(norm)
                                        and norm > max_norm) else 1.0


@cuda.jit
def _mul_by(a, scale, out):
    s = scale[0]
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * s


def scale_to_norm(arrays, sums, max_norm):
    """The arrays times min(1, max_norm / global norm) (1 when the norm is not finite), the
    global norm sqrt(sum(sums)) computed on the device: no host round trip."""
    scales = {}
    out = []
    for a in arrays:
        s = scales.get(a.dtype)
        if s is None:
            s = scales[a.dtype] = empty(1, a.dtype)
            _norm_scale[1, 32](sums, np.float64(max_norm), s)
        r = empty(a.shape, a.dtype)
        if a.size:
            _mul_by[grid_1d(a.size)](_flat(a), s, _flat(r))
        out.append(r)
    return out
