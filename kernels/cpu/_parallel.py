"""``parallel_above``: run a kernel in parallel only when its work is big enough.

A Numba parallel region costs a few microseconds even when it has one iteration, and far more
when the machine is busy (a descheduled OpenMP worker holds up the whole region; a 128x10
softmax cross-entropy took 28 ms instead of 5 us on a loaded 2-core machine).  PyTorch avoids
this by running small work inline (its grain size); dlkit does the same: each kernel is
compiled twice from the same source, ``@njit(parallel=True, cache=True)`` and
``@njit(cache=True)`` (where ``prange`` is a plain ``range``), and a call picks the serial one
when ``size(*args) < grain``.  Both compile lazily; results are identical either way because
chunk counts never depend on threads.

    @parallel_above(32768, size=lambda x, *_: x.size)
    def relu_forward(x): ...

``kernel.parallel`` and ``kernel.serial`` are the two Numba dispatchers, for timing or for
calling from other njit code.  Both use ``error_model="numpy"``: division by zero gives inf/nan
as in NumPy and PyTorch instead of a Python exception, whose check in every division keeps
LLVM from vectorising a loop (the Adam update ran 5x slower with it).
"""
import functools
import types

from numba import njit


def _renamed(fn, suffix):
    """A copy of fn with its own qualname, so Numba's on-disk cache keeps the two builds apart
    (the cache index is keyed by qualname and bytecode, not by the parallel flag)."""
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                           fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    g.__doc__ = fn.__doc__
    return g


class ParallelAbove:
    def __init__(self, fn, grain, size):
        self.parallel = njit(parallel=True, cache=True, error_model="numpy")(fn)
        self.serial = njit(cache=True, error_model="numpy")(_renamed(fn, "__serial"))
        self.grain, self.size = grain, size
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        return (self.parallel if self.size(*args) >= self.grain else self.serial)(*args)


def parallel_above(grain, size):
    return lambda fn: ParallelAbove(fn, grain, size)
