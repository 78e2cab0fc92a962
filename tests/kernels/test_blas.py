"""kernels.cpu._blas.gemm, the strided BLAS call shared by the dense, recurrent and RBM
kernels, against NumPy."""
import numpy as np
import pytest

from kernels.cpu._blas import gemm


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
