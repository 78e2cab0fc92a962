"""``gemm``: BLAS matrix products on strided row-major views, callable from njit kernels;
``gemm_small``: the same cut for OpenBLAS's small-matrix kernels (below).

``np.dot`` in Numba wants contiguous operands and cannot scale or accumulate; the kernels need
all three: a column block ``W[:, j0:j1]`` multiplied in place, ``x[:, c0:c1].T`` without a
transposed copy, ``acc += h @ U`` in a recurrence, ``dW = x.T @ g / N``.  ``gemm`` calls the
same BLAS as ``np.dot`` (scipy's, through Numba's ``numba_xxgemm`` helper; ``import dlkit``
pins it to one thread, the kernels split the work across ``prange`` themselves).

Like ``_conv_common.py`` and ``_recurrent_common.py``, this file holds njit helpers shared
across kernel files.  Numba's on-disk cache is invalidated only by edits to a kernel's own
file, so after editing this file clear the caches
(``find kernels -name __pycache__ -exec rm -rf {} +``).
"""
import ctypes

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
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


# ------------------------------------------------------------------ small products
# OpenBLAS's AVX-512 builds (SkylakeX and its successors) multiply a small product
# (m*n*k <= 1e6 multiply-adds, not both operands transposed, a transposed first operand only
# for tiny outputs) with kernels that skip the packing of both operands into buffers; above
# that, every call packs.  A recurrence's per-step product is just above the line: h (32, 100)
# @ U (100, 400) took 20 us in one call and 11 us as two column halves.  Other builds (the AVX2
# "Haswell" kernels) have no such path and lose up to 13% to the extra calls, so the limit is
# set at import from the kernels scipy's OpenBLAS runs.  It lives in a C variable that the
# compiled kernels read at run time (a Python global would be frozen into Numba's on-disk
# cache): ``small_mnk`` sets it, for tests and timing.

_SMALL_CORES = ("skylakex", "cooperlake", "sapphirerapids")
_SMALL_MNK = ctypes.c_int64(0)
llvm.add_symbol("dlkit_blas_small_mnk", ctypes.addressof(_SMALL_MNK))


def _openblas_core():
    """The kernels scipy's OpenBLAS picked (lower case): scipy's own OpenBLAS, else the one
    OpenBLAS loaded; '' when that cannot be told (another BLAS, or OpenBLASes that differ)."""
    from threadpoolctl import threadpool_info
    libs = [d for d in threadpool_info() if d.get("internal_api") == "openblas"]
    libs = [d for d in libs if "scipy" in d.get("filepath", "")] or libs
    cores = {(d.get("architecture") or "").lower() for d in libs}
    return cores.pop() if len(cores) == 1 else ""


def small_mnk(limit=None):
    """The largest m*n*k that ``gemm_small`` hands to BLAS in one call (0: no cutting).
    With ``limit``, set it (to undo a change, pass the returned old value back).  Returns the
    value in force before the call."""
    old = _SMALL_MNK.value
    if limit is not None:
        _SMALL_MNK.value = int(limit)
    return old


small_mnk(1_000_000 if _openblas_core() in _SMALL_CORES else 0)


@intrinsic
def _small_limit(typingctx):
    """The current value of ``small_mnk`` (a load of the C variable, not a compile-time
    constant)."""
    def codegen(context, builder, sig, args):
        gv = builder.module.globals.get("dlkit_blas_small_mnk")
        if gv is None:
            gv = ir.GlobalVariable(builder.module, ir.IntType(64), "dlkit_blas_small_mnk")
        return builder.load(gv)
    return types.int64(), codegen


@njit(cache=True)
def pieces(m, n, k, lim):
    """(pn, pk): how many column and depth pieces ``small_operand`` cuts an (m, k) @ (k, n)
    product into under the limit ``lim`` (0: none): the larger of n / pn and k / pk is halved
    until m * (n / pn) * (k / pk) <= lim or the halved side would fall under 32."""
    pn, pk = 1, 1
    while lim > 0 and m * -(-n // pn) * -(-k // pk) > lim and max(n // pn, k // pk) >= 64:
        if n // pn > k // pk:
            pn *= 2
        else:
            pk *= 2
    return pn, pk


@njit(cache=True, inline="always")
def _piece(j, i, k, n, pk, pn):
    """Rows k0:k1 and columns c0:c1 of b in piece (j, i), and where ``small_operand`` stores it
    (row band j fills [k0*n, k1*n), its column piece i starts at o)."""
    k0, k1 = j * k // pk, (j + 1) * k // pk
    c0, c1 = i * n // pn, (i + 1) * n // pn
    return k0, k1, c0, c1, k0 * n + c0 * (k1 - k0)


@njit(cache=True)
def small_operand(b, m):
    """b (k, n), the fixed second operand of products with m-row first operands, cut into
    ``pieces`` under ``small_mnk()`` and each piece stored contiguously (the small-matrix
    kernels read b in place, and a piece's rows 4n bytes apart hit the same cache sets: h U
    at H = 128 took 46 us a step from U's columns in place, 35 us from contiguous pieces).
    Returns (bp, pn, pk) for ``gemm_small``; each piece is a (k1 - k0, c1 - c0) matrix at
    ``_piece``'s offset."""
    k, n = b.shape
    pn, pk = pieces(m, n, k, _small_limit())
    bp = np.empty(k * n, dtype=b.dtype)
    for j in range(pk):
        for i in range(pn):
            k0, k1, c0, c1, o = _piece(j, i, k, n, pk, pn)
            bp[o:o + (k1 - k0) * (c1 - c0)].reshape(k1 - k0, c1 - c0)[:, :] = b[k0:k1, c0:c1]
    return bp, pn, pk


@njit(cache=True)
def gemm_small(a, bpp, out, beta):
    """out = a @ b + beta out, a (m, k) and out (m, n) views as for ``gemm``, b given as
    bpp = small_operand(b, m): one BLAS call a piece, the depth pieces accumulating in order,
    so results depend on the shapes and the limit only."""
    bp, pn, pk = bpp
    m, n = out.shape
    k = a.shape[1]
    for j in range(pk):
        for i in range(pn):
            k0, k1, c0, c1, o = _piece(j, i, k, n, pk, pn)
            gemm(a[:, k0:k1], bp[o:o + (k1 - k0) * (c1 - c0)].reshape(k1 - k0, c1 - c0),
                 out[:, c0:c1], False, False, 1.0, beta if j == 0 else 1.0)
