"""Compile every CUDA kernel with the real compiler (NVVM) for sm_90, no GPU needed.

The CUDA simulator runs kernels as Python, so it never type-checks them: a shared-memory shape
that is not a compile-time constant, a float64 promotion in a float32 kernel or an unsupported
call pass the simulator tests and fail (or slow down) on a GPU.  This script drives every
kernels.cuda launcher once, for float32 and float64, with the simulator's array stand-ins
(host numpy underneath) and, instead of launching, compiles each launched kernel to PTX with
the argument types of that launch.  It prints one line per failure and per float32 kernel whose
PTX holds float64 instructions, then a summary, and exits 1 if there are any.

    python tests/cuda/ptx_check.py          # needs numba-cuda[cu12] or [cu13] (libnvvm)

tests/cuda/test_ptx.py runs it in a subprocess (the simulator and the real compiler cannot
share a process); exit status 77 means "no NVVM here" (the test skips, outside CI); an import
error or any other failure exits non-zero with its traceback and fails the test.
"""
import os
import sys
import traceback

import numpy as np

os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from numba import cuda, typeof  # noqa: E402

# What this script needs from numba.cuda: an import error here (a rename, a moved module) is a
# failure, with its traceback, never a skip.
from numba.cuda.dispatcher import CUDADispatcher  # noqa: E402
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray  # noqa: E402

# The one genuine reason to skip: the CUDA toolkit's NVVM library is absent (numba-cuda
# installed without its [cu12]/[cu13] extra).  Any other failure of a trivial compile is a bug.
_NO_TOOLKIT = ("nvvm", "libnvvm", "cuda toolkit", "cudatoolkit", "cuda_home")
try:
    cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=(9, 0))
except Exception as e:
    text = f"{type(e).__name__}: {e}"
    if not any(w in text.lower() for w in _NO_TOOLKIT):
        raise
    print(f"ptx_check: skipped: no CUDA toolkit (NVVM) here ({text.splitlines()[0]}); install "
          "numba-cuda[cu12] or numba-cuda[cu13]")
    sys.exit(77)

import kernels.cuda._launch as L  # noqa: E402

L.device_props = lambda: (132, 1024, 32)
results = {}


def fake_empty(shape, dtype):
    return FakeCUDAArray(np.zeros(shape, dtype=np.dtype(dtype)))


class Compile:
    """Stands in for ``kernel[grid, block]``: compiles for the call's argument types."""

    def __init__(self, disp):
        self.disp = disp

    def __call__(self, *args):
        sig = tuple(typeof(a) for a in args)
        key = (self.disp.py_func.__module__, self.disp.py_func.__qualname__, sig)
        if key in results:
            return
        try:
            ptx, _ = cuda.compile_ptx(self.disp.py_func, sig, cc=(9, 0))
            f64 = sum(1 for line in ptx.splitlines() if ".f64" in line)
            results[key] = ("ok", f64)
        except Exception as e:
            results[key] = ("FAIL", str(e).splitlines()[:12])


CUDADispatcher.__getitem__ = lambda self, config: Compile(self)

from kernels.cuda import _array as AR  # noqa: E402
from kernels.cuda import activations as A  # noqa: E402
from kernels.cuda import attention as AT  # noqa: E402
from kernels.cuda import conv as C  # noqa: E402
from kernels.cuda import dense as D  # noqa: E402
from kernels.cuda import embedding as E  # noqa: E402
from kernels.cuda import losses as Ls  # noqa: E402
from kernels.cuda import optim as O  # noqa: E402
from kernels.cuda import pool as P  # noqa: E402
from kernels.cuda import rbm as R  # noqa: E402
from kernels.cuda import recurrent as RC  # noqa: E402

for mod in (AR, A, AT, C, D, E, Ls, O, P, R, RC):
    mod.empty = fake_empty
launcher_errors = []


def run(name, fn):
    try:
        fn()
    except Exception as e:
        launcher_errors.append(name)
        print("LAUNCHER ERROR", name, type(e).__name__, e)
        traceback.print_exc(limit=3)


def ints(*shape, dt=np.int64):
    return FakeCUDAArray(np.ones(shape, dt))


def launch_all(dt):
    def a(*shape):
        return FakeCUDAArray(np.ones(shape, dt))

    u8 = np.uint8
    run("array", lambda: (
        AR.full((2, 3), 1.5, dt), AR.add(a(5), a(5)), AR.add(a(2, 3), a(2, 3), 0.5),
        AR.mul(a(5), 0.5), AR.astype(ints(5), dt), AR.concat(a(2, 3, 4), a(2, 3, 2)), AR.split(a(2, 3, 6), 4),
        AR.full(3, 7, np.int64), AR.first_outside(ints(2, 3), 0, 5),
        AR.first_outside(ints(4, dt=np.int32), 0, 5),
        AR.value_range(a(2, 3)),
        AR.scale_to_norm([a(3, 2), a(4)], AR.sum_squares([a(3, 2), a(4)]), 1.0)))
    run("dense", lambda: (
        D.dense_forward(a(3, 4), a(4, 5), a(5), 1),
        D.dense_backward(a(3, 4), a(4, 5), a(3, 5), a(3, 5), 2, True),
        D.colsum(a(3, 4))))
    run("activations", lambda: (
        A.activation_forward(a(7), 1, 0.1), A.activation_backward(a(7), a(7), a(7), 3, 0.1),
        A.softmax_forward(a(3, 4), True), A.softmax_backward(a(3, 4), a(3, 4), False),
        A.dropout_forward(a(7), ints(7, dt=u8), 2.0),
        A.gelu_forward(a(7)), A.gelu_backward(a(7), a(7))))
    run("attention", lambda: (
        AT.attention_forward(a(2, 3, 5, 4), a(2, 3, 5, 4), a(2, 3, 5, 4), True, 0.5, 0.1, 7),
        AT.attention_backward(a(2, 3, 5, 4), a(2, 3, 5, 4), a(2, 3, 5, 4), a(2, 3, 5, 4),
                              a(2, 3, 5), a(2, 3, 5, 4), False, 0.5, 0.0, 7),
        AT.heads_split(a(2, 5, 24), 3, 2), AT.heads_merge((a(2, 2, 5, 4),) * 3)))
    run("losses", lambda: (
        Ls.softmax_cross_entropy(a(3, 4), ints(3)),
        Ls.softmax_cross_entropy(a(3, 4), ints(3, dt=np.int32)),
        Ls.sigmoid_binary_cross_entropy(a(5), a(5)), Ls.mean_squared_error(a(5), a(5))))
    run("optim", lambda: (
        O.sgd_update(a(5), a(5), a(5), 0.1, 0.9, True, 0.1, 0.1),
        O.adam_update(a(5), a(5), a(5), a(5), 0.1, 0.9, 0.99, 1e-8, 1, 0.1, 0.1, 0.1),
        O.rmsprop_update(a(5), a(5), a(5), a(5), 0.1, 0.9, 1e-8, 0.5, 0.1, 0.1),
        O.apply_update(a(5), a(5)), O.zeros((2, 3), dt), O.nonfinite_flag([a(5)]),
        O.penalise(a(5), a(5), 0.1, 0.1)))
    run("conv", lambda: (
        C.conv2d_forward(a(2, 3, 5, 5), a(4, 3, 3, 3), a(4), 1, 1, 1, 1, 1, 1, 1, 5, 5, 1),
        C.conv2d_backward(a(2, 3, 5, 5), a(4, 3, 3, 3), a(2, 4, 5, 5), a(2, 4, 5, 5),
                          1, 1, 1, 1, 1, 1, 1, 1, True)))
    run("pool", lambda: (
        P.maxpool2d_forward(a(2, 3, 4, 4), 2, 2, 2, 2, 0, 0, 2, 2, ints(2, 3, 2, 2, dt=u8)),
        P.maxpool2d_forward(a(2, 3, 4, 4), 2, 2, 2, 2, 0, 0, 2, 2,
                            ints(2, 3, 2, 2, dt=np.int32)),
        P.maxpool2d_backward(a(2, 3, 2, 2), ints(2, 3, 2, 2, dt=u8), 2, 2, 2, 2, 0, 0, 4, 4),
        P.avgpool2d_forward(a(2, 3, 4, 4), 2, 2, 2, 2, 0, 0, 2, 2, True),
        P.avgpool2d_backward(a(2, 3, 2, 2), 2, 2, 2, 2, 0, 0, 4, 4, False),
        P.global_avgpool2d_forward(a(2, 3, 4, 4)), P.global_avgpool2d_backward(a(2, 3), 4, 4)))
    run("embedding", lambda: (
        E.embedding_forward(ints(5), a(4, 3)), E.embedding_backward(ints(5), a(5, 3), 4, -1),
        E.embedding_backward(ints(5, dt=np.int32), a(5, 3), 4, 1),
        E.spatial_dropout_forward(a(2, 3, 4), ints(2, 4, dt=u8), 2.0),
        E.position_forward(a(2, 3, 4), a(5, 4)), E.position_backward(a(2, 3, 4), 5)))
    run("rbm", lambda: (
        R.rbm_cd(a(3, 4), a(4, 5), a(4), a(5), a(3, 5), 2, True, False, True, a(2, 3, 5),
                 a(2, 3, 4)),
        R.rbm_cd(a(3, 4), a(4, 5), a(4), a(5), a(0, 5), 1, False, True, True, a(1, 3, 5),
                 a(1, 3, 4)),
        R.rbm_gibbs(a(3, 4), a(4, 5), a(4), a(5), 1, True, a(1, 3, 5), a(1, 3, 4)),
        R.rbm_free_energy(a(3, 4), a(4, 5), a(4), a(5), False),
        R.rbm_free_energy_grad(a(3, 4), a(4, 5), a(4), a(5), True),
        R.rbm_pseudo_likelihood(a(3, 4), a(4, 5), a(4), a(5), ints(3))))
    t0, t1 = ints(2), ints(2)
    run("recurrent", lambda: (
        RC.rnn_forward(a(2, 3, 4), a(4, 5), a(5, 5), a(5), a(2, 5), t0, t1, False, 0),
        RC.rnn_backward(a(4, 5), a(5, 5), t0, t1, False, 1, a(6, 4), a(8, 5), a(2, 3, 5),
                        a(2, 5), True),
        RC.lstm_forward(a(2, 3, 4), a(4, 20), a(5, 20), a(20), a(2, 5), a(2, 5), t0, t1, True),
        RC.lstm_backward(a(4, 20), a(5, 20), t0, t1, False, a(6, 4), a(6, 20), a(8, 5),
                         a(8, 5), a(2, 0, 5), a(2, 5), a(2, 5), True),
        RC.gru_forward(a(2, 3, 4), a(4, 15), a(5, 15), a(15), a(15), a(2, 5), t0, t1, False),
        RC.gru_backward(a(4, 15), a(5, 15), t0, t1, False, a(6, 4), a(6, 15), a(6, 5),
                        a(8, 5), a(2, 3, 5), a(2, 5), False),
        RC.sigmoid(a(5)), RC.tanh(a(5))))


for dtype in (np.float32, np.float64):
    launch_all(dtype)
bad = 0
for (mod, name, sig), (status, info) in sorted(results.items(), key=lambda kv: kv[0][:2]):
    pure32 = any("float32" in str(s) for s in sig) and not any("float64" in str(s) for s in sig)
    if status == "FAIL":
        bad += 1
        print("FAIL", mod, name, sig)
        print("   ", "\n    ".join(info))
    elif pure32 and info:
        bad += 1
        print(f"FLOAT64 in a float32 kernel: {mod}.{name} {sig}: {info} PTX lines")
print(f"ptx_check: {len(results)} kernel specialisations compiled for sm_90, {bad} problems, "
      f"{len(launcher_errors)} launcher errors")
sys.exit(1 if bad or launcher_errors else 0)
