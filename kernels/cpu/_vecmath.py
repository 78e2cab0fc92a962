"""Vectorisable float32 ``exp`` and ``erfc`` for njit kernels (recurrent cells, attention, GELU).

Numba calls libm for ``np.exp`` / ``math.erf`` one element at a time (there is no SVML here),
which keeps LLVM from vectorising the loops around them; these polynomials are plain float32
arithmetic, so loops that call them vectorise.

    _exp32(x)    e^x for x in [-87, 88] (callers clamp): Cephes expf, the 2^n factor built by a
                 bit-cast; relative error about 1 ulp.
    _erfc32(x)   erfc(x) for x >= 0: t = 1 / (1 + x / 2),
                 erfc(x) = t e^(-x^2 - 1.26551223 + t (1.00002368 + t (0.37409196 + ...)))
                 (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7 for all x >= 0).

Like ``_blas.py``, this file holds njit helpers shared across kernel files: Numba's on-disk cache
does not notice edits here, so after editing it clear the caches
(``find kernels -name __pycache__ -exec rm -rf {} +``).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# error_model="numpy": float division without Python's zero check (which blocks vectorising);
# fastmath only with flags that keep NaN/Inf semantics (DESIGN.md).
_EM = {"error_model": "numpy", "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}
_f = np.float32


@intrinsic
def _f32_from_bits(typingctx, i):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(cache=True, **_EM)
def _exp32(x):
    """e^x for float32 x in [-87, 88] (callers clamp): Cephes expf, 2^n by bit-cast."""
    fx = np.floor(x * _f(1.44269504088896341) + _f(0.5))
    r = x - fx * _f(0.693359375) + fx * _f(2.12194440e-4)
    p = _f(1.9875691500e-4)
    p = p * r + _f(1.3981999507e-3)
    p = p * r + _f(8.3334519073e-3)
    p = p * r + _f(4.1665795894e-2)
    p = p * r + _f(1.6666665459e-1)
    p = p * r + _f(5.0000001201e-1)
    p = p * r * r + r + _f(1.0)
    n = np.int32(fx)
    return p * _f32_from_bits(np.int32((n + np.int32(127)) << np.int32(23)))


@njit(cache=True, **_EM)
def _erfc32(x):
    """erfc(x) for float32 x >= 0 (Numerical Recipes' erfcc; 0 beyond x = 9.3)."""
    t = _f(1.0) / (_f(1.0) + _f(0.5) * x)
    p = _f(0.17087277)
    p = p * t + _f(-0.82215223)
    p = p * t + _f(1.48851587)
    p = p * t + _f(-1.13520398)
    p = p * t + _f(0.27886807)
    p = p * t + _f(-0.18628806)
    p = p * t + _f(0.09678418)
    p = p * t + _f(0.37409196)
    p = p * t + _f(1.00002368)
    p = p * t + _f(-1.26551223)
    return t * _exp32(max(p - x * x, _f(-87.0)))
