"""Embedding and SpatialDropout1D (kernels: kernels.cpu.embedding).

    Embedding(vocab_size, dim, padding_idx=None, E_init="uniform")
        ids (B, T) ints in [0, vocab_size) -> (B, T, dim); params E (vocab_size, dim).
        padding_idx: a row that gets no gradient (PyTorch's padding_idx; init sets it to 0).
        E_init: "uniform" U(-0.05, 0.05) (Keras' default), "normal" N(0, 1) (PyTorch's: unit
        variance inputs, what the next layer's Glorot init assumes; it trained a character
        LSTM faster), or any dlkit.init name or function.
    PositionEmbedding(max_len, kind="learned")
        x (B, T, D) -> x + P[:T] with T <= max_len; params P (max_len, D) for "learned"
        (N(0, 0.02^2), GPT-2's init), none for "sinusoidal" (Vaswani et al.'s fixed table).
    SpatialDropout1D(rate)
        x (B, T, D) -> x with whole feature channels zeroed per sequence (probability ``rate``)
        and the rest scaled by 1 / (1 - rate), in training; identity otherwise.

Both accept a ``Padded(values, lengths, padding)`` batch (dlkit.layers.recurrent) and return
one with the same lengths, so ragged batches flow from the embedding into recurrent layers.
Token ids are checked on the host before any kernel runs: a bad id raises ValueError naming
the id, its position (sequence, step) and the vocabulary size.

On the device (E a numba CUDA device array) the kernels are kernels.cuda.embedding.  Token ids
may then be a host array, checked as above and copied up once, or a device array (what
``dlkit.device.to_device`` makes of a batch): those are checked where they are by one small
kernel (``kernels.cuda._array.first_outside``: the position of the first id outside the
vocabulary) and a 16-byte read-back of (position, id), before the lookup runs, so a bad id
never reaches a kernel and the error is the same.  SpatialDropout1D draws its mask on the host
from the key (device and CPU runs match) and copies it up: one (B, D) uint8 copy per call.
PositionEmbedding adds a learned (or fixed sinusoidal) vector per position.
"""
from __future__ import annotations

import numpy as np

from .. import _check as chk
from .. import device
from ..random import generator, keep_mask
from ..init import Initializer
from .base import Layer, _register, _zero_macs, no_params
from .recurrent import Padded, _rewrap, _unwrap, kernel_array, step_ranges


def _uniform_005(key, shape, dtype=np.float32):
    """U(-0.05, 0.05), Keras' embedding initialiser."""
    return generator(key).uniform(-0.05, 0.05, size=shape).astype(dtype)


def _standard_normal(key, shape, dtype=np.float32):
    """N(0, 1), PyTorch's embedding initialiser."""
    return generator(key).standard_normal(size=shape).astype(dtype)


def _bad_id(what, ids, pos, value, vocab_size):
    pos = tuple(int(i) for i in np.unravel_index(pos, ids.shape))
    where = (f"sequence {pos[0]}, step {pos[1]}" if len(pos) == 2
             else f"position {pos if len(pos) != 1 else pos[0]}")
    return ValueError(f"{what}: token id {value} at {where} is outside the "
                      f"vocabulary [0, {vocab_size}) of size {vocab_size}")


def check_ids(ids, vocab_size, what):
    """Integer token ids in [0, vocab_size): a numpy array comes back as a C-contiguous int64
    array of the same shape; a device array (C-contiguous, any integer dtype) is checked on
    the device with a 16-byte read-back and comes back as it is."""
    on_dev = device.is_device_array(ids)
    if not (on_dev or isinstance(ids, np.ndarray)):
        raise TypeError(f"{what}: expected a numpy or CUDA device array of token ids, got "
                        f"{type(ids).__name__}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: token ids must be integers, got dtype {ids.dtype}")
    if on_dev:
        ids = chk.contiguous(ids, what)
        pos, value = device.kernels("_array", ids, what=what).first_outside(
            ids, 0, vocab_size).copy_to_host()
        if pos >= 0:
            raise _bad_id(what, ids, pos, int(value), vocab_size)
        return ids
    if ids.size:
        bad = (ids < 0) | (ids >= vocab_size)
        if bad.any():
            pos = int(np.flatnonzero(bad.reshape(-1))[0])
            raise _bad_id(what, ids, pos, int(ids.reshape(-1)[pos]), vocab_size)
    return kernel_array(np.asarray(ids, dtype=np.int64))


def Embedding(vocab_size: int, dim: int, padding_idx: int | None = None,
              E_init: str | Initializer = "uniform") -> Layer:
    """Token ids (B, T) -> vectors (B, T, dim): row ``ids[b, t]`` of the table E.

    Args:
        vocab_size: V, the number of rows of E; ids must lie in ``[0, V)``.
        dim: D, the vector size.
        padding_idx: a row set to 0 by init that gets no gradient (PyTorch's padding_idx).
        E_init: "uniform" U(-0.05, 0.05) (Keras' default), "normal" N(0, 1) (PyTorch's), or
            any ``dlkit.init`` name or function.

    Returns:
        A ``Layer``.  params ``E`` (V, D), float32 (or init's dtype); input shape ``(T,)``
        of integer ids (any integer dtype) or a ``Padded`` batch; output (B, T, D).

    Raises:
        ValueError: bad sizes here; an id outside ``[0, V)`` in forward (the message names
            the id, its sequence and step).
        TypeError: non-integer ids.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> emb = L.Embedding(100, 8, padding_idx=0)
        >>> out_shape, params = emb.init(random.key(0), (5,))
        >>> out_shape, params["E"].shape, float(abs(params["E"][0]).max())
        ((5, 8), (100, 8), 0.0)
        >>> emb.forward(params, np.array([[1, 2, 3, 0, 0]]))[0].shape
        (1, 5, 8)
    """
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
        if getattr(ids, "ndim", 2) != 2:
            raise ValueError(f"{what}: expected token ids of shape (batch, time), got "
                             f"{ids.shape}")
        if device.is_device_array(ids):
            device.kernels("embedding", ids, E, what=what)    # mixed host/device: TypeError
        given = ids
        ids = check_ids(ids, V, f"{what} input")
        if isinstance(ids, np.ndarray) and np.may_share_memory(ids, given):
            ids = ids.copy()    # the cache keeps a snapshot: the caller may reuse its array
        chk.elements(ids.shape + (D,), f"{what} output")
        step_ranges(lengths, padding, ids.shape[0], ids.shape[1], what)   # fail early
        if device.on_device(E) and not device.on_device(ids):
            ids = device.upload(ids)        # checked on the host: one copy up
        K = device.kernels("embedding", ids, E, what=what)
        y = K.embedding_forward(ids.reshape(-1), kernel_array(E))
        y = y.reshape(ids.shape + (D,))
        return _rewrap(y, lengths, padding), (ids, y.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        # host ids index dE: checked again, whatever happened to the cache since forward (the
        # CUDA backward skips ids outside the vocabulary instead: no second read-back)
        ids, dtype = chk.cache(cache, 2, what)
        chk.params(params, ("E",), what)
        on_dev = device.is_device_array(ids)
        if getattr(ids, "ndim", 0) != 2 or not (on_dev or isinstance(ids, np.ndarray)) or \
                ids.dtype != np.int64 and not on_dev or ids.dtype.kind not in "iu":
            raise ValueError(f"{what} backward: the cache must hold the (batch, time) int64 "
                             f"token ids its forward made, got {chk.describe(ids)}")
        ids = chk.contiguous(ids, f"{what} backward cache ids") if on_dev else \
            check_ids(ids, V, f"{what} backward cache ids")
        chk.array(params["E"], (V, D), dtype, f"{what} backward E")
        dy = _unwrap(dy)[0]
        dy = kernel_array(chk.floating(dy, f"{what} backward dy"))
        if dy.shape != ids.shape + (D,) or dy.dtype != dtype:
            raise ValueError(f"{what} backward: dy must have shape {ids.shape + (D,)} and "
                             f"dtype {dtype}, got {dy.shape} {dy.dtype}")
        K = device.kernels("embedding", ids, dy, what=what)
        dE = K.embedding_backward(ids.reshape(-1), dy.reshape(-1, D), V, pad)
        return None, {"E": dE}

    return _register(Layer(init, forward, backward), "Embedding", _zero_macs)


def SpatialDropout1D(rate: float) -> Layer:
    """Drop whole feature channels of x (B, T, D) per sequence, in training.

    Each (sequence, channel) pair is zeroed at every step with probability ``rate``; the rest
    are scaled by 1 / (1 - rate).  Identity outside training.  Accepts a ``Padded`` batch.

    Args:
        rate: the drop probability, in ``[0, 1)``.

    Returns:
        A ``Layer`` with no params; float32/float64 x (B, T, D) -> same shape and dtype.

    Raises:
        ValueError: ``rate`` outside ``[0, 1)``; ``train=True`` without a key.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> y, _ = L.SpatialDropout1D(0.5).forward({}, np.ones((1, 3, 4), np.float32),
        ...                                        key=random.key(0), train=True)
        >>> bool((y == y[:, :1, :]).all())      # the same channels dropped at every step
        True
    """
    rate = chk.rate(rate, "SpatialDropout1D")
    what = f"SpatialDropout1D({rate})"

    def forward(params, x, *, key=None, train=False):
        chk.params(params, (), what)
        v, lengths, padding = _unwrap(x)
        v = kernel_array(chk.floating(v, f"{what} input"))
        chk.ndim(v, 3, f"{what} input", "batch, time, features")
        if not train or rate == 0.0:
            return x, (None, v.shape, v.dtype)
        if key is None:
            raise ValueError(f"{what}: training mode needs a key (forward(..., key=k, "
                             "train=True)) to draw the mask")
        B, _, D = v.shape
        keep = keep_mask(key, (B, D), rate)
        if device.on_device(v):     # the mask is drawn on the host: one copy to the device
            keep = device.upload(keep)
        K = device.kernels("embedding", v, keep, what=what)
        y = K.spatial_dropout_forward(v, keep, 1.0 / (1.0 - rate))
        return _rewrap(y, lengths, padding), (keep, v.shape, v.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        keep, shape, dtype = chk.cache(cache, 3, what)
        chk.params(params, (), what)
        dy = kernel_array(chk.floating(_unwrap(dy)[0], f"{what} backward dy"))
        chk.ndim(dy, 3, f"{what} backward dy", "batch, time, features")
        if dy.shape != shape or dy.dtype != dtype:
            raise ValueError(f"{what} backward: dy must have shape {shape} and dtype {dtype}, "
                             f"got {dy.shape} {dy.dtype}")
        if keep is None:
            return dy, {}
        keep = chk.array(keep, (shape[0], shape[2]), np.uint8, f"{what} backward cache mask")
        chk.index_range(keep, 0, 2, f"{what} backward cache mask")
        K = device.kernels("embedding", dy, keep, what=what)
        return K.spatial_dropout_backward(dy, keep, 1.0 / (1.0 - rate)), {}

    return _register(Layer(no_params, forward, backward), "SpatialDropout1D", _zero_macs)


def sinusoidal_table(max_len: int, dim: int, dtype=np.float32) -> np.ndarray:
    """Vaswani et al.'s fixed position table (max_len, dim): P[t, 2i] = sin(t / 10000^(2i/dim)),
    P[t, 2i+1] = cos(t / 10000^(2i/dim)), computed in float64."""
    t = np.arange(max_len, dtype=np.float64)[:, None]
    freq = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    P = np.empty((max_len, dim))
    P[:, 0::2] = np.sin(t * freq)
    P[:, 1::2] = np.cos(t * freq[: dim // 2])
    return P.astype(dtype)


def PositionEmbedding(max_len: int, kind: str = "learned",
                      P_init: str | Initializer | None = None) -> Layer:
    """Add a vector per position: x (B, T, D) -> x + P[:T], for T <= max_len.

    Args:
        max_len: L, the longest sequence (a transformer's context length).
        kind: "learned" (params ``P`` (L, D)) or "sinusoidal" (Vaswani et al.'s fixed table,
            no params).
        P_init: the learned table's initialiser; default N(0, 0.02^2) (GPT-2's).

    Returns:
        A ``Layer``: input shape ``(T, D)``, output the same; float32/float64.

    Raises:
        ValueError: bad sizes or kind here; T > max_len, or a D other than init's, in forward.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> pos = L.PositionEmbedding(16)
        >>> out_shape, params = pos.init(random.key(0), (10, 8))
        >>> out_shape, params["P"].shape
        ((10, 8), (16, 8))
        >>> y, _ = pos.forward(params, np.zeros((2, 10, 8), np.float32))
        >>> bool((y[1] == params["P"][:10]).all())
        True
    """
    from .. import init as initializers
    L = chk.positive_int(max_len, "PositionEmbedding max_len")
    if kind not in ("learned", "sinusoidal"):
        raise ValueError(f"PositionEmbedding: kind must be 'learned' or 'sinusoidal', got "
                         f"{kind!r}")
    learned = kind == "learned"
    p_init = initializers.normal(0.02) if P_init is None else initializers.get(P_init)
    what = f"PositionEmbedding({L}, {kind!r})"
    tables = {}                     # sinusoidal: (dim, dtype, on device) -> the table

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) != 2 or in_shape[0] > L:
            raise ValueError(f"{what}: expected an input shape (time, features) with time <= "
                             f"{L}, got {in_shape}")
        return in_shape, ({"P": p_init(key, (L, in_shape[1]), dtype)} if learned else {})

    def _table(params, x):
        if learned:
            chk.params(params, ("P",), what)
            return chk.array(params["P"], (L, x.shape[2]), x.dtype, f"{what} P")
        chk.params(params, (), what)
        k = (x.shape[2], x.dtype, device.on_device(x))
        if k not in tables:
            P = sinusoidal_table(L, x.shape[2], x.dtype)
            tables[k] = device.upload(P) if k[2] else P
        return tables[k]

    def forward(params, x, *, key=None, train=False):
        x = kernel_array(chk.floating(x, f"{what} input"))
        chk.ndim(x, 3, f"{what} input", "batch, time, features")
        if x.shape[1] > L:
            raise ValueError(f"{what}: the input has {x.shape[1]} steps, more than max_len "
                             f"{L} (x.shape={x.shape})")
        P = _table(params, x)
        y = device.kernels("embedding", x, P, what=what).position_forward(x, P)
        return y, (x.shape, x.dtype)

    def backward(params, cache, dy, *, need_dx=True):
        shape, dtype = chk.cache(cache, 2, what)
        dy = kernel_array(chk.floating(dy, f"{what} backward dy"))
        if dy.shape != shape or dy.dtype != dtype:
            raise ValueError(f"{what} backward: dy must have shape {shape} and dtype {dtype}, "
                             f"got {dy.shape} {dy.dtype}")
        if not learned:
            chk.params(params, (), what)
            return dy, {}
        chk.params(params, ("P",), what)
        chk.array(params["P"], (L, shape[2]), dtype, f"{what} backward P")
        dP = device.kernels("embedding", dy, what=what).position_backward(dy, L)
        return dy, {"P": dP}

    return _register(Layer(init, forward, backward), "PositionEmbedding", _zero_macs)


__all__ = ["Embedding", "PositionEmbedding", "SpatialDropout1D", "Padded", "check_ids",
           "sinusoidal_table"]
