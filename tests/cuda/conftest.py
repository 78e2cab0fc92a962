"""CUDA tests: run under the CUDA simulator in CI (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q
tests/cuda``), or on a real GPU without the variable.  Without either they skip, saying why.

Under the simulator a device array is a thin wrapper over a numpy array that quietly allows
things a real ``DeviceNDArray`` does not (numpy interop, arithmetic, free host reads), so a
host round trip hidden in a launcher would go unnoticed.  The autouse fixture ``transfers``
closes that gap: while a test runs, every copy between host and device is counted (explicit
``to_device`` / ``copy_to_host`` / ``copy_to_device``, scalar reads and writes of device
elements from host code, numpy arrays passed straight to a kernel), and numpy interop and
arithmetic on device arrays raise, as they would (or would copy) on a GPU.

The counts exist only under the simulator.  On a real GPU nothing is counted (``counted`` is
False) and each count is ``UNCOUNTED``, which compares equal to (and as >, >=, <, <= with) any
number: the tests' count assertions then hold vacuously, by design, while everything else in
those tests (results against the CPU kernels) still runs.  Counting on a GPU through the
driver's copy functions would count different things (a kernel launch with a numpy argument is
two real copies, not one "implicit" call), so the simulator is where copies are checked.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()

# Without a GPU or the simulator every module here is skipped unimported, for one short reason
# (pytest -ra folds the modules into one line); device.available()'s full explanation is WHY.
if "cannot be imported" in WHY:
    SKIP = 'numba-cuda is not installed (pip install -e ".[test]")'
else:
    SKIP = "no CUDA GPU; NUMBA_ENABLE_CUDASIM=1 runs these in the simulator (the README's test command)"


class _Unavailable(pytest.Module):
    """A test module that cannot run here: skipped (failed under the simulator with CI set,
    where .ci/run installs numba-cuda) without importing it."""

    def collect(self):
        sim = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
        if sim and os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI runs the CUDA simulator step but {SKIP}: {WHY}", pytrace=False)
        pytest.skip(SKIP)


def pytest_pycollect_makemodule(module_path, parent):
    if not OK:
        return _Unavailable.from_parent(parent, path=module_path)
    return None


# This file and tests/conftest.py are both imported as the module "conftest", and pytest keeps
# the one it loaded last in sys.modules: after collecting tests/cuda, `from conftest import
# in_ci` in a later test module (tests/mpi, tests/test_*.py) finds this one.  So the shared
# helpers of tests/conftest.py are forwarded from here to that same module object (not a copy:
# need() records its tests in the one list the closing summary reads).
_SHARED = ("in_ci", "need", "run_threads")
_top = None


def pytest_configure(config):
    global _top
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    _top = config.pluginmanager.get_plugin(str(path))


def __getattr__(name):
    if name in _SHARED and _top is not None:
        return getattr(_top, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Uncounted:
    """A count that was not taken (real GPU): equal to any number, ordered either way."""

    def __eq__(self, other):
        return True

    __le__ = __ge__ = __lt__ = __gt__ = __eq__

    def __ne__(self, other):
        return False

    def __hash__(self):
        return 0

    def __repr__(self):
        return "UNCOUNTED"


UNCOUNTED = _Uncounted()


class Transfers:
    """Counts of host<->device copies since the last ``reset`` (simulator only; see above)."""

    def __init__(self, counted=True):
        self.counted = counted
        self.reset()

    def reset(self):
        self.h2d = self.d2h = self.implicit = 0 if self.counted else UNCOUNTED

    def __repr__(self):
        return f"Transfers(h2d={self.h2d}, d2h={self.d2h}, implicit={self.implicit})"


def _in_kernel():
    from numba.cuda.simulator import kernel
    return kernel._kernel_context is not None


@pytest.fixture(autouse=True)
def transfers(monkeypatch):
    """Counts transfers during a test and makes simulated device arrays as strict as real ones
    (simulator only; on a GPU the counter just stays at zero for explicit-copy-free code)."""
    if not OK:
        yield Transfers(counted=False)
        return
    from numba import cuda
    if "simulator" not in cuda.device_array.__module__:
        yield Transfers(counted=False)
        return
    t = Transfers()
    from numba.cuda.simulator import args as sim_args
    from numba.cuda.simulator.cudadrv import devicearray as sim_da
    Fake = sim_da.FakeCUDAArray

    to_device = cuda.to_device

    def counted_to_device(ary, *a, **k):
        t.h2d += 1
        return to_device(ary, *a, **k)

    copy_to_host, copy_to_device = Fake.copy_to_host, Fake.copy_to_device

    def counted_copy_to_host(self, *a, **k):
        t.d2h += 1
        return copy_to_host(self, *a, **k)

    def counted_copy_to_device(self, ary, *a, **k):
        if not isinstance(ary, Fake):
            t.h2d += 1
        return copy_to_device(self, ary, *a, **k)

    getitem, setitem, getattr_ = Fake.__getitem__, Fake.__setitem__, Fake.__getattr__

    def strict_getitem(self, idx):
        out = getitem(self, idx)
        if not isinstance(out, Fake) and not _in_kernel():
            t.d2h += 1          # a real DeviceNDArray copies the element to the host
        return out

    def strict_setitem(self, idx, val):
        if not _in_kernel():
            t.h2d += 1
        return setitem(self, idx, val)

    def strict_getattr(self, name):
        if name.startswith("__array"):
            raise AttributeError(f"device arrays do not support numpy interop ({name}); "
                                 "copy to the host explicitly")
        return getattr_(self, name)

    def no_arithmetic(self, *a, **k):
        raise TypeError("device arrays have no arithmetic operators (a real DeviceNDArray "
                        "has none); use a kernel")

    def implicit(self, *a, **k):
        t.implicit += 1
        raise AssertionError("a numpy array was passed to a CUDA kernel: an implicit "
                             "host<->device round trip")

    monkeypatch.setattr(cuda, "to_device", counted_to_device)
    monkeypatch.setattr(Fake, "copy_to_host", counted_copy_to_host)
    monkeypatch.setattr(Fake, "copy_to_device", counted_copy_to_device)
    monkeypatch.setattr(Fake, "__getitem__", strict_getitem)
    monkeypatch.setattr(Fake, "__setitem__", strict_setitem)
    monkeypatch.setattr(Fake, "__getattr__", strict_getattr)
    for op in ("__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__",
               "__pow__", "__array_ufunc__"):
        if hasattr(Fake, op):
            monkeypatch.setattr(Fake, op, no_arithmetic)
    monkeypatch.setattr(sim_args.InOut, "to_device", implicit)
    yield t


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
