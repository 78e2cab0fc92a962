"""kernels.cuda.embedding against kernels.cpu.embedding: lookup, the atomics-free backward
(bit-identical to the CPU's: both sum each row's positions in increasing order), pad row,
repeated and unused ids, more positions than one counting-sort chunk, spatial dropout."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from kernels.cpu import embedding as CE  # noqa: E402
from kernels.cuda import embedding as GE  # noqa: E402

F32 = np.float32


def dev(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


@pytest.mark.parametrize("N,V,D,pad", [(1, 1, 1, -1), (7, 5, 3, 2), (150, 11, 4, -1)])
@pytest.mark.parametrize("idtype", [np.int64, np.int32])
def test_embedding(rng, transfers, N, V, D, pad, idtype):
    ids = rng.integers(0, V, N)
    if N > 2:
        ids[:3] = ids[0]                 # repeats
    E = rng.standard_normal((V, D)).astype(F32)
    dy = rng.standard_normal((N, D)).astype(F32)
    idd, Ed, dyd = dev(ids.astype(idtype), E, dy)
    transfers.reset()
    y = GE.embedding_forward(idd, Ed)
    dE = GE.embedding_backward(idd, dyd, V, pad)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    y, dE = y.copy_to_host(), dE.copy_to_host()
    assert y.dtype == F32 and dE.dtype == F32 and dE.shape == (V, D)
    np.testing.assert_array_equal(y, CE.embedding_forward(ids, E))
    want = CE.embedding_backward(ids, dy, V, pad)
    np.testing.assert_array_equal(dE.view(np.uint32), want.view(np.uint32))


def test_spatial_dropout(rng, transfers):
    x = rng.standard_normal((2, 5, 3)).astype(F32)
    keep = (rng.random((2, 3)) > 0.5).astype(np.uint8)
    xd, kd = dev(x, keep)
    transfers.reset()
    y = GE.spatial_dropout_forward(xd, kd, 2.0)
    assert transfers.h2d == transfers.d2h == 0
    got = y.copy_to_host()
    assert got.dtype == F32
    np.testing.assert_allclose(got, CE.spatial_dropout_forward(x, keep, 2.0), rtol=1e-6)
    assert GE.spatial_dropout_backward is GE.spatial_dropout_forward


def test_position(rng, transfers):
    x = rng.standard_normal((3, 5, 4)).astype(F32)
    P = rng.standard_normal((7, 4)).astype(F32)
    xd, Pd = dev(x, P)
    transfers.reset()
    y = GE.position_forward(xd, Pd)
    dP = GE.position_backward(xd, 7)
    assert transfers.h2d == transfers.d2h == 0
    np.testing.assert_array_equal(y.copy_to_host(), CE.position_forward(x, P))
    np.testing.assert_array_equal(dP.copy_to_host(), CE.position_backward(x, 7))


def test_names_match():
    import inspect
    for name in ("embedding_forward", "embedding_backward", "spatial_dropout_forward",
                 "spatial_dropout_backward", "position_forward", "position_backward"):
        f = getattr(CE, name)
        pf = getattr(f, "__wrapped__", f)
        assert (list(inspect.signature(pf).parameters)
                == list(inspect.signature(getattr(GE, name)).parameters)), name
