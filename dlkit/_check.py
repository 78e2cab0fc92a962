"""Host-side validation shared by the API: every check runs before any kernel does.

Messages say what was wrong, what was expected and what was received, e.g.
``Dense 'fc1': input has 780 features, expected 784 (x.shape=(128, 780), W.shape=(784, 128))``.

Backward passes trust nothing either: ``cache`` and ``array`` check what a backward is given
(its cache, its params, its dy) against the shapes and dtypes its kernels assume, because
Numba does not bounds-check and a cache or params of another shape would read or write out of
bounds.  Every array the API hands a kernel holds fewer than 2**31 elements (``MAX_ELEMENTS``):
BLAS takes 32-bit dimensions and the CUDA kernels 32-bit thread indices.
"""
from math import prod

import numpy as np

from .device import is_device_array

FLOATS = (np.float32, np.float64)
MAX_ELEMENTS = 2 ** 31 - 1


def floating(x, what):
    """x as a C-contiguous float32/float64 array (numpy, or a numba CUDA device array, which
    must already be C-contiguous: checked without copying it); TypeError for anything else."""
    if not isinstance(x, np.ndarray):
        if is_device_array(x):
            if x.dtype.type not in FLOATS:
                raise TypeError(f"{what}: expected dtype float32 or float64, got {x.dtype}")
            if x.size > MAX_ELEMENTS:
                elements(x.shape, what)
            return contiguous(x, what)
        raise TypeError(f"{what}: expected a numpy array or a CUDA device array, got "
                        f"{type(x).__name__}")
    if x.dtype.type not in FLOATS:
        raise TypeError(f"{what}: expected dtype float32 or float64, got {x.dtype}")
    if x.size > MAX_ELEMENTS:
        elements(x.shape, what)
    return np.ascontiguousarray(x)


def elements(shape, what):
    """Refuse a shape of more than MAX_ELEMENTS elements (an input, a param or the output a
    kernel would allocate): 32-bit BLAS dimensions and CUDA indices would overflow."""
    n = prod(int(v) for v in shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{what}: shape {tuple(shape)} holds {n} elements, more than the "
                         f"{MAX_ELEMENTS} (2**31 - 1) dlkit's kernels take in one array; "
                         "split the batch")


def contiguous(a, what="array"):
    """a C-contiguous: a copy for a strided numpy array; a device array must already be."""
    if type(a) is np.ndarray:
        return np.ascontiguousarray(a)
    if not a.is_c_contiguous():
        raise ValueError(f"{what}: device arrays must be C-contiguous, got shape {a.shape} "
                         f"strides {a.strides}; copy it into a contiguous device array")
    return a


def kernel_array(a, what="array"):
    """a as the kernels take it.  numpy: C-contiguous and writeable (a read-only array is
    another Numba type and would compile every kernel again, so it is copied); a device array
    must already be C-contiguous (checked, never copied)."""
    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a)
        return a if a.flags.writeable else a.copy()
    return contiguous(a, what)


def is_array(a):
    """A numpy array or a CUDA device array."""
    return isinstance(a, np.ndarray) or is_device_array(a)


def ndim(x, n, what, layout=None):
    if x.ndim != n:
        lay = f" ({layout})" if layout else ""
        raise ValueError(f"{what}: expected a {n}-D array{lay}, got shape {x.shape}")


def same_dtype(what, **arrays):
    dts = {k: v.dtype for k, v in arrays.items()}
    if len(set(dts.values())) > 1:
        got = ", ".join(f"{k}.dtype={d}" for k, d in dts.items())
        raise TypeError(f"{what}: mixed dtypes ({got}); cast them to one dtype")


def params(p, names, what):
    """p must be a dict with exactly the keys ``names``, each a float array of at most
    MAX_ELEMENTS elements.  Every layer call checks its params, so the common case (numpy
    arrays, all fine) takes one pass with no allocation."""
    if type(p) is dict and len(p) == len(names):
        for n in names:
            a = p.get(n)
            if type(a) is not np.ndarray or a.dtype.type not in FLOATS or a.size > MAX_ELEMENTS:
                break
        else:
            return
    if not isinstance(p, dict):
        raise TypeError(f"{what}: params must be a dict, got {type(p).__name__}")
    missing = [n for n in names if n not in p]
    extra = [n for n in p if n not in names]
    if missing or extra:
        raise ValueError(f"{what}: params keys {sorted(p)} do not match the expected "
                       f"{sorted(names)} (missing {missing}, extra {extra})")
    for n in names:
        if not is_array(p[n]) or p[n].dtype.type not in FLOATS:
            raise TypeError(f"{what}: param {n!r} must be a float32/float64 ndarray, got "
                            f"{getattr(p[n], 'dtype', type(p[n]).__name__)}")
        if p[n].size > MAX_ELEMENTS:
            elements(p[n].shape, f"{what} param {n!r}")


def describe(a):
    if is_array(a):
        return f"shape {tuple(a.shape)} dtype {a.dtype}"
    if isinstance(a, (tuple, list)):
        return f"a {type(a).__name__} of {len(a)}"
    return type(a).__name__


def cache(c, n, what):
    """A backward's cache: the tuple of n items its forward returned (TypeError otherwise)."""
    if type(c) is not tuple or len(c) != n:
        raise TypeError(f"{what} backward: expected the cache its forward returned (a tuple of "
                        f"{n}), got {describe(c)}")
    return c


def array(a, expected_shape, dtype, what):
    """An array a backward hands a kernel (from its cache or params): exactly
    ``expected_shape`` and ``dtype``, where the other arrays live, made C-contiguous
    (``kernel_array``); ValueError naming expected and received otherwise."""
    if not is_array(a) or tuple(a.shape) != expected_shape or a.dtype != dtype:
        raise ValueError(f"{what}: expected shape {expected_shape} and dtype {np.dtype(dtype)}"
                         f" (what the forward saw), got {describe(a)}")
    return kernel_array(a, what)


def index_range(a, lo, hi, what):
    """A host array of integers all in [lo, hi) (ValueError naming the first one outside);
    device arrays pass unchecked (their kernels only compare them, never index with them)."""
    if type(a) is np.ndarray and a.size:
        mn, mx = a.min(), a.max()
        if mn < lo or mx >= hi:
            bad = mn if mn < lo else mx
            pos = int(np.flatnonzero(a.reshape(-1) == bad)[0])
            raise ValueError(f"{what}: value {int(bad)} at flat position {pos} is outside "
                             f"[{lo}, {hi})")
    return a


def size(v, what):
    """A non-negative Python int from a cache (ValueError otherwise)."""
    if type(v) is not int or v < 0:
        raise ValueError(f"{what}: expected a non-negative int, got {v!r}")
    return v


def shape(a, expected, what):
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{what}: expected shape {tuple(expected)}, got {tuple(a.shape)}")


def labels(y, n_classes, n, what):
    """Integer class labels of length n in [0, n_classes): returns them as an int64 array.

    Device labels are checked for dtype and shape only (no host copy); the loss kernel checks
    their range where they are and the loss reports the first bad one."""
    if is_device_array(y):
        if y.dtype.kind not in "iu":
            raise TypeError(f"{what}: labels must be integers, got dtype {y.dtype}")
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{what}: expected labels of shape ({n},) to match the batch of "
                             f"{n}, got shape {tuple(y.shape)}")
        return contiguous(y, what)
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{what}: labels must be integers, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{what}: expected labels of shape ({n},) to match the batch of {n}, "
                         f"got shape {y.shape}")
    if n:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            pos = int(np.flatnonzero(y == bad)[0])
            raise ValueError(f"{what}: label {bad} at position {pos} is outside "
                             f"[0, {n_classes}) for {n_classes} classes")
    return np.ascontiguousarray(y, dtype=np.int64)


def rate(p, what):
    if not (isinstance(p, (int, float, np.floating)) and 0 <= p < 1):
        raise ValueError(f"{what}: rate must be a number in [0, 1), got {p!r}")
    return float(p)


def positive_int(v, what):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{what}: expected a positive int, got {v!r}")
    return int(v)
