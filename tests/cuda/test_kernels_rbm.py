"""kernels.cuda.rbm against kernels.cpu.rbm: CD-k and PCD-k (Bernoulli and Gaussian visible,
sampled or mean visible units), conditionals, Gibbs sampling, free energy and its gradient,
pseudo-likelihood; float32, 1e-5 relative, dtypes asserted, no host transfers.  The same host
uniforms/normals feed both, so the sampled chains agree exactly."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from kernels.cpu import rbm as CR  # noqa: E402
from kernels.cuda import rbm as GR  # noqa: E402

F32 = np.float32


def dev(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def close(got, want, rtol=1e-5):
    g = got.copy_to_host()
    assert g.dtype == want.dtype == F32 and g.shape == want.shape, (g.dtype, g.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * scale)


def model(rng, N, V, H, gaussian):
    v = (rng.standard_normal((N, V)) if gaussian else rng.random((N, V)) < 0.4).astype(F32)
    W = (rng.standard_normal((V, H)) * 0.3).astype(F32)
    b = (rng.standard_normal(V) * 0.2).astype(F32)
    c = (rng.standard_normal(H) * 0.2).astype(F32)
    return v, W, b, c


CD_CASES = [  # (N, V, H, k, persistent, gaussian, sample_visible)
    (1, 3, 2, 1, False, False, True),
    (5, 7, 70, 2, False, False, False),
    (6, 20, 9, 2, True, False, True),
    (4, 5, 6, 1, False, True, True),
    (3, 6, 5, 2, True, True, False),
]


@pytest.mark.parametrize("case", CD_CASES, ids=[str(i) for i in range(len(CD_CASES))])
def test_rbm_cd(rng, transfers, case):
    N, V, H, k, persistent, gaussian, sample_visible = case
    v, W, b, c = model(rng, N, V, H, gaussian)
    chain = (rng.random((N, H)) < 0.5).astype(F32) if persistent else np.zeros((0, H), F32)
    uh = rng.random((k, N, H)).astype(F32)
    nv = ((rng.standard_normal((k, N, V)) if gaussian else rng.random((k, N, V))).astype(F32)
          if sample_visible else np.zeros((0, N, V), F32))
    want = CR.rbm_cd(v, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv)
    args = dev(v, W, b, c, chain)
    uhd, nvd = dev(uh, nv) if nv.size else (dev(uh)[0], cuda.device_array(nv.shape, F32))
    transfers.reset()
    got = GR.rbm_cd(*args, k, persistent, gaussian, sample_visible, uhd, nvd)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    for name, g, w in zip(("dW", "db", "dc", "chain", "v_neg", "err"), got, want):
        close(g, w)


@pytest.mark.parametrize("gaussian", [False, True])
def test_conditionals_gibbs_free_energy(rng, transfers, gaussian):
    N, V, H, steps = 5, 7, 9, 2     # 70 hidden units (two 64-wide tiles): CD_CASES[1]
    v, W, b, c = model(rng, N, V, H, gaussian)
    h = (rng.random((N, H)) < 0.5).astype(F32)
    uh = rng.random((steps, N, H)).astype(F32)
    nv = (rng.standard_normal((steps, N, V)) if gaussian else rng.random((steps, N, V))
          ).astype(F32)
    vd, Wd, bd, cd, hd, uhd, nvd = dev(v, W, b, c, h, uh, nv)
    transfers.reset()
    out = [GR.rbm_hidden(vd, Wd, cd), GR.rbm_visible(hd, Wd, bd, gaussian),
           *GR.rbm_gibbs(vd, Wd, bd, cd, steps, gaussian, uhd, nvd),
           GR.rbm_free_energy(vd, Wd, bd, cd, gaussian),
           *GR.rbm_free_energy_grad(vd, Wd, bd, cd, gaussian)]
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    want = [CR.rbm_hidden(v, W, c), CR.rbm_visible(h, W, b, gaussian),
            *CR.rbm_gibbs(v, W, b, c, steps, gaussian, uh, nv),
            CR.rbm_free_energy(v, W, b, c, gaussian),
            *CR.rbm_free_energy_grad(v, W, b, c, gaussian)]
    for g, w in zip(out, want):
        close(g, w)


def test_gibbs_zero_steps_and_pseudo_likelihood(rng):
    v, W, b, c = model(rng, 4, 6, 3, False)
    empty = np.zeros((0, 4, 3), F32), np.zeros((0, 4, 6), F32)
    want = CR.rbm_gibbs(v, W, b, c, 0, False, *empty)
    got = GR.rbm_gibbs(*dev(v, W, b, c), 0, False, cuda.device_array((0, 4, 3), F32),
                       cuda.device_array((0, 4, 6), F32))
    for g, w in zip(got, want):
        close(g, w)
    idx = rng.integers(0, 6, 4)
    close(GR.rbm_pseudo_likelihood(*dev(v, W, b, c, idx)),
          CR.rbm_pseudo_likelihood(v, W, b, c, idx))


def test_names_match():
    import inspect
    for name in ("rbm_cd", "rbm_hidden", "rbm_visible", "rbm_gibbs", "rbm_free_energy",
                 "rbm_free_energy_grad", "rbm_pseudo_likelihood"):
        assert (list(inspect.signature(getattr(CR, name).py_func).parameters)
                == list(inspect.signature(getattr(GR, name)).parameters)), name
