"""Embedding and SpatialDropout1D (kernels: kernels.cpu.embedding).

    Embedding(vocab_size, dim, padding_idx=None, E_init="uniform")
        ids (B, T) ints in [0, vocab_size) -> (B, T, dim); params E (vocab_size, dim).
        padding_idx: a row that gets no gradient (PyTorch's padding_idx; init sets it to 0).
        E_init: "uniform" U(-0.05, 0.05) (Keras' default), "normal" N(0, 1) (PyTorch's: unit
        variance inputs, what the next layer's Glorot init assumes; it trained a character
        LSTM faster), or any dlkit.init name or function.
    SpatialDropout1D(rate)
        x (B, T, D) -> x with whole feature channels zeroed per sequence (probability ``rate``)
        and the rest scaled by 1 / (1 - rate), in training; identity otherwise.

Both accept a ``Padded(values, lengths, padding)`` batch (dlkit.layers.recurrent) and return
one with the same lengths, so ragged batches flow from the embedding into recurrent layers.
Token ids are checked on the host before any kernel runs: a bad id raises ValueError naming
the id, its position (sequence, step) and the vocabulary size.
"""
import numpy as np

from kernels.cpu import embedding as K

from .. import _check as chk
from ..random import generator
from .base import Layer, no_params
from .recurrent import Padded, _rewrap, _unwrap, kernel_array, step_ranges


def _uniform_005(key, shape, dtype=np.float32):
    """U(-0.05, 0.05), Keras' embedding initialiser."""
    return generator(key).uniform(-0.05, 0.05, size=shape).astype(dtype)


def _standard_normal(key, shape, dtype=np.float32):
    """N(0, 1), PyTorch's embedding initialiser."""
    return generator(key).standard_normal(size=shape).astype(dtype)


def check_ids(ids, vocab_size, what):
    """Integer token ids in [0, vocab_size), as a C-contiguous int64 array of the same shape."""
    if not isinstance(ids, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array of token ids, got {type(ids).__name__}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: token ids must be integers, got dtype {ids.dtype}")
    if ids.size:
        bad = (ids < 0) | (ids >= vocab_size)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            where = (f"sequence {pos[0]}, step {pos[1]}" if len(pos) == 2
                     else f"position {pos if len(pos) != 1 else pos[0]}")
            raise ValueError(f"{what}: token id {int(ids[pos])} at {where} is outside the "
                             f"vocabulary [0, {vocab_size}) of size {vocab_size}")
    return kernel_array(np.asarray(ids, dtype=np.int64))


def Embedding(vocab_size, dim, padding_idx=None, E_init="uniform"):
    """Token ids (B, T) -> vectors (B, T, dim); see the module docstring."""
    from .. import init as initializers
    V = chk.positive_int(vocab_size, "Embedding vocab_size")
    D = chk.positive_int(dim, "Embedding dim")
    if padding_idx is not None and not (isinstance(padding_idx, (int, np.integer))
                                        and 0 <= padding_idx < V):
        raise ValueError(f"Embedding: padding_idx must be None or an int in [0, {V}), "
                         f"got {padding_idx!r}")
    pad = -1 if padding_idx is None else int(padding_idx)
    named = {"uniform": _uniform_005, "normal": _standard_normal}
    e_init = named[E_init] if isinstance(E_init, str) and E_init in named \
        else initializers.get(E_init)
    what = f"Embedding({V}, {D})"

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) != 1:
            raise ValueError(f"{what}: expected an input shape (time,) of token ids, got "
                             f"{in_shape}")
        E = e_init(key, (V, D), dtype)
        if pad >= 0:
            E[pad] = 0
        return (in_shape[0], D), {"E": E}

    def forward(params, x, *, key=None, train=False):
        chk.params(params, ("E",), what)
        E = params["E"]
        if E.shape != (V, D):
            raise ValueError(f"{what}: expected E of shape ({V}, {D}), got {E.shape}")
        ids, lengths, padding = _unwrap(x)
        ids = check_ids(ids, V, f"{what} input")
        if ids.ndim != 2:
            raise ValueError(f"{what}: expected token ids of shape (batch, time), got "
                             f"{ids.shape}")
        step_ranges(lengths, padding, ids.shape[0], ids.shape[1], what)   # fail early
        y = K.embedding_forward(ids.reshape(-1), kernel_array(E))
        y = y.reshape(ids.shape + (D,))
        return _rewrap(y, lengths, padding), (ids, y.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        ids, dtype = cache
        dy = _unwrap(dy)[0]
        dy = kernel_array(chk.floating(dy, f"{what} backward dy"))
        if dy.shape != ids.shape + (D,) or dy.dtype != dtype:
            raise ValueError(f"{what} backward: dy must have shape {ids.shape + (D,)} and "
                             f"dtype {dtype}, got {dy.shape} {dy.dtype}")
        dE = K.embedding_backward(ids.reshape(-1), dy.reshape(-1, D), V, pad)
        return None, {"E": dE}

    return Layer(init, forward, backward)


def SpatialDropout1D(rate):
    """Drop whole feature channels of x (B, T, D) per sequence; see the module docstring."""
    rate = chk.rate(rate, "SpatialDropout1D")
    what = f"SpatialDropout1D({rate})"

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        v, lengths, padding = _unwrap(x)
        v = kernel_array(chk.floating(v, f"{what} input"))
        chk.ndim(v, 3, f"{what} input", "batch, time, features")
        if not train or rate == 0.0:
            return x, None
        if key is None:
            raise ValueError(f"{what}: training mode needs a key (forward(..., key=k, "
                             "train=True)) to draw the mask")
        B, _, D = v.shape
        keep = (generator(key).random((B, D), dtype=np.float32) >= rate).view(np.uint8)
        y = K.spatial_dropout_forward(v, keep, 1.0 / (1.0 - rate))
        return _rewrap(y, lengths, padding), (keep, v.shape, v.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        dy = _unwrap(dy)[0]
        if cache is None:
            return dy, {}
        keep, shape, dtype = cache
        dy = kernel_array(chk.floating(dy, f"{what} backward dy"))
        if dy.shape != shape or dy.dtype != dtype:
            raise ValueError(f"{what} backward: dy must have shape {shape} and dtype {dtype}, "
                             f"got {dy.shape} {dy.dtype}")
        return K.spatial_dropout_backward(dy, keep, 1.0 / (1.0 - rate)), {}

    return Layer(no_params, forward, backward)


__all__ = ["Embedding", "SpatialDropout1D", "Padded", "check_ids"]
