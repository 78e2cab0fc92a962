"""kernels.cpu._blas: gemm, the strided BLAS call shared by the dense, recurrent and RBM
kernels, and gemm_small, the recurrences' per-step product cut into pieces, against NumPy."""
import numpy as np
import pytest

from kernels.cpu import _blas
from kernels.cpu._blas import gemm, gemm_small, pieces, small_operand


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_on_strided_blocks_matches_numpy(dtype, rng):
    """gemm(a, b, out, ta, tb, alpha, beta) on sub-blocks of bigger arrays, single rows and
    K = 0, as the kernels use it; nothing outside out is written."""
    big = [rng.standard_normal((13, 14)).astype(dtype) for _ in range(3)]
    for ta in (False, True):
        for tb in (False, True):
            for m, n, kk in ((3, 4, 5), (1, 4, 5), (3, 1, 1), (1, 1, 7), (2, 3, 0)):
                a = big[0][1:1 + (kk if ta else m), 2:2 + (m if ta else kk)]
                b = big[1][3:3 + (n if tb else kk), 1:1 + (kk if tb else n)]
                out_big = big[2].copy()
                out = out_big[4:4 + m, 5:5 + n]
                want = 0.5 * (a.T if ta else a) @ (b.T if tb else b) + 2.0 * out
                gemm(a, b, out, ta, tb, 0.5, 2.0)
                tol = 1e-5 if dtype == np.float32 else 1e-13
                np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
                outside = np.ones(out_big.shape, bool)
                outside[4:4 + m, 5:5 + n] = False
                assert np.array_equal(out_big[outside], big[2][outside])


def test_pieces_fit_the_limit_and_stop_at_32():
    # the recurrences' per-step products (rows, columns, depth) under OpenBLAS's 1e6
    assert pieces(32, 400, 100, 10**6) == (2, 1)        # LSTM, H = 100: two column halves
    assert pieces(32, 100, 400, 10**6) == (1, 2)        # its backward, dh += dA U^T
    assert pieces(64, 512, 128, 10**6) == (4, 2)
    assert pieces(64, 128, 512, 10**6) == (1, 8)
    assert pieces(32, 100, 100, 10**6) == (1, 1)        # fits already
    assert pieces(64, 512, 128, 0) == (1, 1)            # 0: never cut
    assert pieces(10**6, 100, 70, 1) == (2, 2)          # cannot fit: no side under 32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("limit", [0, 10**6, 20000])
def test_gemm_small_matches_numpy(dtype, limit, rng):
    """Every cut (uneven pieces included) gives a @ b + beta out on strided views (b a
    transposed view too), and the same bits on every call."""
    old = _blas.small_mnk(limit)
    try:
        assert _blas.small_mnk() == limit
        for m, n, k, beta in ((32, 400, 100, 1.0), (7, 130, 97, 0.0), (64, 66, 300, 1.0)):
            a = rng.standard_normal((m, k + 3)).astype(dtype)[:, 2:2 + k]
            b = rng.standard_normal((k, n + 5)).astype(dtype)[:, 1:1 + n]
            if beta == 0:
                b = np.ascontiguousarray(b.T).T             # an F-ordered view
            bp = small_operand(b, m)
            assert bp[1:] == pieces(m, n, k, limit)
            out0 = rng.standard_normal((m, n)).astype(dtype)
            if beta == 0:
                out0[0, 0] = np.nan                     # never read with beta = 0
            want = a.astype(np.float64) @ b + beta * np.nan_to_num(out0.astype(np.float64))
            got = out0.copy()
            gemm_small(a, bp, got, beta)
            tol = 1e-4 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
            again = out0.copy()
            gemm_small(a, bp, again, beta)
            assert np.array_equal(got, again)
    finally:
        _blas.small_mnk(old)
