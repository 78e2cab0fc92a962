"""``gemm``: BLAS matrix products on strided row-major views, callable from njit kernels.

``np.dot`` in Numba wants contiguous operands and cannot scale or accumulate; the kernels need
all three: a column block ``W[:, j0:j1]`` multiplied in place, ``x[:, c0:c1].T`` without a
transposed copy, ``acc += h @ U`` in a recurrence, ``dW = x.T @ g / N``.  ``gemm`` calls the
same BLAS as ``np.dot`` (scipy's, through Numba's ``numba_xxgemm`` helper; ``import dlkit``
pins it to one thread, the kernels split the work across ``prange`` themselves).

This is the one njit helper shared across kernel files.  Numba's on-disk cache is invalidated
only by edits to a kernel's own file, so after editing this file clear the caches
(``find kernels -name __pycache__ -exec rm -rf {} +``).
"""
import numpy as np
from numba import njit, types
from numba.np.linalg import ensure_blas

ensure_blas()   # loads scipy's BLAS, which numba_xxgemm calls

_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char,          # kind ('s'/'d'), transa, transb
    types.intp, types.intp, types.intp,          # m, n, k (Fortran's view)
    types.voidptr, types.voidptr, types.intp,    # alpha, a, lda
    types.voidptr, types.intp, types.voidptr,    # b, ldb, beta
    types.voidptr, types.intp))                  # c, ldc


@njit(cache=True, inline="always")
def _ld(x):
    """BLAS leading dimension of a row-major view: its row stride (a single row may carry any
    stride, so use its length there; BLAS wants at least the row length)."""
    return max(1, x.shape[1]) if x.shape[0] <= 1 else x.strides[0] // x.itemsize


@njit(cache=True)
def gemm(a, b, out, ta, tb, alpha, beta):
    """out = alpha op(a) @ op(b) + beta out, op(x) = x.T if t else x.

    a, b, out are 2-D row-major views with unit column stride (row stride may exceed the row
    length: any [r0:r1, c0:c1] slice of a C-contiguous array), all of one dtype.  BLAS is
    column-major, so it is asked for out^T = op(b)^T op(a)^T, which is the same memory.
    With beta == 0, out's old contents are never read (NaN in it does not leak).
    """
    m, n = out.shape
    kk = a.shape[0] if ta else a.shape[1]
    if m == 0 or n == 0:
        return
    if kk == 0:                        # BLAS may not touch out when k == 0; define it
        for r in range(m):
            for q in range(n):
                out[r, q] = out[r, q] * beta if beta != 0 else 0
        return
    ab = np.empty(2, a.dtype)
    ab[0] = alpha
    ab[1] = beta
    kind = 100 if a.itemsize == 8 else 115     # 'd' or 's'
    _xxgemm(kind, 116 if tb else 110, 116 if ta else 110, n, m, kk,
            ab[0:].ctypes.data, b.ctypes.data, _ld(b), a.ctypes.data, _ld(a),
            ab[1:].ctypes.data, out.ctypes.data, _ld(out))
