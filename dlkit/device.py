"""Where arrays live, and which kernels run on them.

The backend follows the arrays (DESIGN.md): NumPy arrays run ``kernels.cpu``, numba CUDA device
arrays run ``kernels.cuda``.  There is no global switch; move the data and the same
``forward`` / ``backward`` / ``opt.update`` code runs on the GPU:

    from dlkit import device
    params, state = device.to_device(params), device.to_device(state)
    x, y = device.to_device(xb), device.to_device(yb)         # per batch
    ...                                                       # the usual step
    params = device.to_host(params)                           # to save, plot, ...

    to_device(tree)          numpy arrays (in dicts, lists, tuples) -> device arrays; 0-d
                             arrays (the optimizer's step counter) and non-arrays stay on the
                             host, since the host reads them every step
    to_host(tree)            device arrays -> numpy arrays; everything else as it is
    is_device_array(a)       a numba CUDA device array (or the simulator's stand-in)?
    kernels(family, *arrays) kernels.cpu.<family> or kernels.cuda.<family> for these arrays;
                             TypeError when host and device arrays are mixed
    cuda()                   numba.cuda, or a RuntimeError naming what to install
    all_finite(arrays)       no NaN/inf in any of them (device: one byte read back)
    empty / zeros(shape, dtype, like)   new arrays where ``like`` lives (e.g. pooling's argmax)
    on_device_tree(tree)     any leaf on the device?
    full(shape, value, dtype, like)     a filled array where ``like`` lives
    add(a, b, scale=None), mul(a, s), concat(a, b), split(a, m)
                             elementwise sum / product and last-axis concatenation / split,
                             numpy on the host, kernels.cuda._array on the device (for
                             layers that combine results between kernels: Bidirectional)
    upload(a)                a on the device (one host-to-device copy)
    available()              (True, "") or (False, why) without raising

On a machine without a GPU, ``NUMBA_ENABLE_CUDASIM=1`` runs the CUDA kernels in numba's
simulator (slow, for tests).  ``numba.cuda`` is imported only when a device is first used, so
CPU-only work never pays for it.
"""
from __future__ import annotations

import importlib
import os
import threading
from types import ModuleType
from typing import Any, Iterable, Sequence, TypeAlias

import numpy as np
from numpy.typing import DTypeLike

Array: TypeAlias = Any
"""A numpy array or a numba CUDA device array (numba ships no type information for the latter,
so the API's hints say ``Any`` where either is accepted)."""

INSTALL_HINT = (
    "install the CUDA extra with `pip install -e \".[cuda]\"` (numba-cuda) plus the CUDA "
    "toolkit libraries for your driver, e.g. `pip install \"numba-cuda[cu12]\"` (CUDA 12 "
    "drivers) or `pip install \"numba-cuda[cu13]\"` (CUDA 13), on a machine with an NVIDIA "
    "GPU and driver; or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels in numba's "
    "(slow) simulator")

_modules = {}
_cpu = {}
_ndarray = np.ndarray


def is_device_array(a: Any) -> bool:
    """True for numba CUDA device arrays (``DeviceNDArray``, or the simulator's
    ``FakeCUDAArray``): both mark their class with ``__cuda_ndarray__``.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.is_device_array(np.zeros(3))
        False
    """
    return getattr(type(a), "__cuda_ndarray__", False) is True


def cuda() -> ModuleType:
    """The ``numba.cuda`` module, checked to be usable: a GPU with its driver, or the
    simulator.  Raises RuntimeError naming what to install otherwise.

    Example:
        >>> from dlkit import device
        >>> device.cuda().get_current_device().name          # doctest: +SKIP
        b'NVIDIA H100 80GB HBM3'
    """
    try:
        from numba import cuda as numba_cuda
    except ImportError as e:
        raise RuntimeError(f"CUDA was asked for but numba.cuda cannot be imported ({e}); "
                           f"{INSTALL_HINT}") from None
    if "simulator" in numba_cuda.device_array.__module__:
        return numba_cuda
    try:
        ok = numba_cuda.is_available()
    except Exception as e:  # pragma: no cover - depends on the driver
        ok, why = False, str(e)
    else:
        why = "no CUDA GPU or driver was found"
    if not ok:
        sim = os.environ.get("NUMBA_ENABLE_CUDASIM")
        extra = (" (NUMBA_ENABLE_CUDASIM is set, but numba.cuda was imported before it was)"
                 if sim and sim != "0" else "")
        raise RuntimeError(f"CUDA was asked for but {why}{extra}; {INSTALL_HINT}")
    return numba_cuda


def available() -> tuple[bool, str]:
    """(True, "") when CUDA kernels can run here (a GPU, or the simulator), else (False, why).

    Example:
        >>> from dlkit import device
        >>> device.available()                               # doctest: +SKIP
        (False, 'CUDA was asked for but no CUDA GPU or driver was found; install ...')
    """
    try:
        cuda()
    except RuntimeError as e:
        return False, str(e)
    return True, ""


def _module(on_device, family):
    key = (on_device, family)
    mod = _modules.get(key)
    if mod is None:
        if on_device:
            cuda()
        mod = importlib.import_module(f"kernels.{'cuda' if on_device else 'cpu'}.{family}")
        if not on_device and not _threadsafe_layer():
            mod = _OneThreadAtATime(mod)
        _modules[key] = mod
    return mod


def _threadsafe_layer():
    """Whether Numba's threading layer lets several Python threads run parallel kernels at
    once: tbb and omp do; workqueue aborts the process.  Starts Numba's thread pool to ask,
    as Numba does before its first parallel region (``_launch_threads`` is Numba's own entry
    point for that; where it is missing, the configured layer decides)."""
    import numba
    from numba.np.ufunc import parallel
    try:
        parallel._launch_threads()
        return numba.threading_layer() != "workqueue"
    except (AttributeError, ValueError):
        return numba.config.THREADING_LAYER != "workqueue"


WORKQUEUE_ERROR = (
    "dlkit: two Python threads called dlkit's kernels at once, but Numba's threading layer is "
    "'workqueue', which is not threadsafe (Numba would abort the process); install tbb "
    "(`pip install tbb`) or use the OpenMP layer (NUMBA_THREADING_LAYER=omp), or call dlkit "
    "from one thread at a time")


class _OneThreadAtATime:
    """A CPU kernel module under the workqueue threading layer: each kernel call holds a lock,
    and a call made while another thread holds it raises RuntimeError (WORKQUEUE_ERROR)
    instead of letting Numba abort the process."""
    _lock = threading.Lock()

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if not callable(attr):
            return attr

        def guarded(*args):
            if not self._lock.acquire(blocking=False):
                raise RuntimeError(WORKQUEUE_ERROR)
            try:
                return attr(*args)
            finally:
                self._lock.release()

        setattr(self, name, guarded)        # looked up once per kernel
        return guarded


def kernels(family: str, *arrays: Array, what: str | None = None) -> ModuleType:
    """The kernel module of ``family`` ("dense", "activations", "losses", "optim", ...) for
    ``arrays``: kernels.cpu.<family> when they are numpy arrays, kernels.cuda.<family> when
    they are device arrays.  Raises TypeError when they are mixed (``what`` names the caller
    in the message).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.kernels("dense", np.zeros(2)).__name__
        'kernels.cpu.dense'
    """
    for a in arrays:                    # the CPU path: a type check per array, one lookup
        if type(a) is not _ndarray:
            break
    else:
        mod = _cpu.get(family)
        if mod is None:
            mod = _cpu[family] = _module(False, family)
        return mod
    where = ["device" if is_device_array(a) else "host" for a in arrays]
    if "host" in where and "device" in where:
        got = ", ".join(f"#{i}: {w} ({type(a).__name__} {getattr(a, 'shape', '')})"
                        for i, (w, a) in enumerate(zip(where, arrays)))
        raise TypeError(f"{what or family}: mixed host (numpy) and device (CUDA) arrays "
                        f"({got}); move params, optimizer state and batches together with "
                        f"dlkit.device.to_device(...)")
    return _module("device" in where, family)


def on_device(a: Any) -> bool:
    """True when a is a device array (for API code that branches on where data lives).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.on_device(np.zeros(2))
        False
    """
    return type(a) is not np.ndarray and is_device_array(a)


def _map(fn, tree):
    if isinstance(tree, dict):
        return {k: _map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        if not hasattr(tree, "_fields"):
            return type(tree)(_map(fn, v) for v in tree)
        host = getattr(tree, "_host_fields", None)
        if host is not None:        # a NamedTuple that says which fields stay on the host
            return type(tree)(*(v if f in host else _map(fn, v)
                                for f, v in zip(tree._fields, tree)))
    return fn(tree)


def to_device(tree: Any) -> Any:
    """A copy of ``tree`` with every numpy array of one or more dimensions on the GPU.

    Arrays are made C-contiguous first.  0-d arrays (the optimizer's step counter), Python
    scalars and arrays already on the device are left as they are.  A NamedTuple with a
    ``_host_fields`` attribute (``layers.Padded``) is moved field by field except those: a
    ragged batch's lengths stay on the host, where the layers validate them.

    Raises:
        RuntimeError: CUDA is not usable here (the message says what to install).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> params = device.to_device({"W": np.ones((2, 2), np.float32)})  # doctest: +SKIP
        >>> device.on_device(params["W"])                                  # doctest: +SKIP
        True
    """
    cu = cuda()

    def move(a):
        if isinstance(a, np.ndarray) and a.ndim > 0:
            return cu.to_device(np.ascontiguousarray(a))
        return a
    return _map(move, tree)


def to_host(tree: Any) -> Any:
    """A copy of ``tree`` (dicts, lists, tuples) with every device array copied back into a
    numpy array; everything else is kept as it is.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.to_host({"W": np.zeros(2), "step": 3})
        {'W': array([0., 0.]), 'step': 3}
    """
    return _map(lambda a: a.copy_to_host() if is_device_array(a) else a, tree)


def zeros_like(a: Array) -> Array:
    """Zeros with a's shape and dtype, where a lives (filled on the device for device arrays).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.zeros_like(np.ones(2, np.float32))
        array([0., 0.], dtype=float32)
    """
    if type(a) is np.ndarray or not is_device_array(a):
        return np.zeros_like(a)
    return _module(True, "optim").zeros(a.shape, a.dtype)


def all_finite(arrays: Iterable[Array]) -> bool:
    """True if no array in ``arrays`` (all numpy, or all device arrays) holds a NaN or an inf.
    For device arrays: one flag kernel per array and a one-byte read-back.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.all_finite([np.zeros(2), np.array([1.0, np.inf])])
        False
    """
    arrays = list(arrays)
    if all(type(a) is np.ndarray for a in arrays):
        # the sum is finite iff every element is, unless it overflows: then look closer
        with np.errstate(invalid="ignore", over="ignore"):
            return all(np.isfinite(np.add.reduce(a, axis=None)) or np.isfinite(a).all()
                       for a in arrays)
    return not _module(True, "optim").nonfinite_flag(arrays).copy_to_host()[0]


def on_device_tree(tree: Any) -> bool:
    """True if any leaf of ``tree`` (dicts, lists, tuples) is a device array.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.on_device_tree({"fc": {"W": np.zeros(2)}})
        False
    """
    if isinstance(tree, dict):
        return any(on_device_tree(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return any(on_device_tree(v) for v in tree)
    return is_device_array(tree)


def empty(shape: int | Sequence[int], dtype: DTypeLike, like: Array) -> Array:
    """An uninitialised array where ``like`` lives (np.empty, or a device array).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.empty((2, 3), np.int64, like=np.zeros(1)).shape
        (2, 3)
    """
    if type(like) is np.ndarray or not is_device_array(like):
        return np.empty(shape, dtype)
    return cuda().device_array(shape, dtype=np.dtype(dtype))


def zeros(shape: int | Sequence[int], dtype: DTypeLike, like: Array) -> Array:
    """Zeros where ``like`` lives (filled on the device for a device ``like``).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.zeros(2, np.float32, like=np.ones(1))
        array([0., 0.], dtype=float32)
    """
    if type(like) is np.ndarray or not is_device_array(like):
        return np.zeros(shape, dtype)
    return _module(True, "optim").zeros(shape, dtype)


def upload(a: Array) -> Array:
    """``a`` on the device (one host-to-device copy for a numpy array; a device array is
    returned as it is).

    Raises:
        RuntimeError: CUDA is not usable here.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.upload(np.arange(3)).copy_to_host()       # doctest: +SKIP
        array([0, 1, 2])
    """
    return a if is_device_array(a) else cuda().to_device(np.ascontiguousarray(a))


def _ops(what, *arrays):
    """kernels.cuda._array when the arrays are on the device, None when they are on the host;
    TypeError when mixed."""
    if not any(is_device_array(a) for a in arrays):
        return None
    return kernels("_array", *arrays, what=what)


def full(shape: int | Sequence[int], value: float, dtype: DTypeLike, like: Array) -> Array:
    """``value`` everywhere, where ``like`` lives (filled on the device for a device ``like``).

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.full(2, 7, np.int64, like=np.zeros(1))
        array([7, 7])
    """
    K = _ops("full", like)
    return np.full(shape, value, dtype) if K is None else K.full(shape, value, dtype)


def add(a: Array, b: Array, scale: float | None = None) -> Array:
    """a + b (times ``scale``, after the sum, when given): two arrays of one shape and dtype,
    both on the host or both on the device.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.add(np.ones(2), np.ones(2), scale=0.5)
        array([1., 1.])
    """
    K = _ops("add", a, b)
    if K is None:
        s = a + b
        return s if scale is None else s * s.dtype.type(scale)
    return K.add(a, b, scale)


def mul(a: Array, scale: float) -> Array:
    """a * scale, in a's dtype, where a lives.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.mul(np.ones(2, np.float32), 3)
        array([3., 3.], dtype=float32)
    """
    K = _ops("mul", a)
    return a * a.dtype.type(scale) if K is None else K.mul(a, scale)


def concat(a: Array, b: Array) -> Array:
    """[a | b] along the last axis, where they live.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.concat(np.zeros((1, 2)), np.ones((1, 1)))
        array([[0., 0., 1.]])
    """
    K = _ops("concat", a, b)
    return np.concatenate([a, b], axis=-1) if K is None else K.concat(a, b)


def split(a: Array, m: int) -> tuple[Array, Array]:
    """(a[..., :m], a[..., m:]), each C-contiguous, where a lives.

    Example:
        >>> import numpy as np
        >>> from dlkit import device
        >>> device.split(np.arange(3), 1)
        (array([0]), array([1, 2]))
    """
    K = _ops("split", a)
    if K is None:
        return np.ascontiguousarray(a[..., :m]), np.ascontiguousarray(a[..., m:])
    return K.split(a, m)
