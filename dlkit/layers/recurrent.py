"""Recurrent layers: SimpleRNN, LSTM, GRU, the Bidirectional wrapper and TimeDistributed
(kernels: kernels.cpu.recurrent).

Sequences are batch-major, x (B, T, F), as PyTorch's ``batch_first=True`` and Keras.

    SimpleRNN(units, activation="tanh", ...)   h' = act(x W + h U + b)
    LSTM(units, unit_forget_bias=True, ...)     gate order i, f, g, o (PyTorch's cell)
    GRU(units, ...)                             gate order r, z, n (PyTorch's cell)

    common keywords: return_sequences=False, return_state=False, reverse=False,
                     W_init="glorot_uniform", U_init="orthogonal", b_init="zeros"

params (H = units, G = 1, 4, 3 gates): W (F, G*H), U (H, G*H), b (G*H,); the GRU adds bh
(3H,), its recurrent bias (PyTorch's b_hh: the n gate needs it apart).  From PyTorch:
W = weight_ih_l0.T, U = weight_hh_l0.T, b = bias_ih_l0 + bias_hh_l0 (RNN, LSTM) or
b = bias_ih_l0, bh = bias_hh_l0 (GRU).  W and U are initialised gate by gate, each gate's
(F, H) and (H, H) block on its own (Glorot-uniform and orthogonal by default: Keras' glorot
over the whole (F, G*H) matrix makes every gate's weights sqrt(G) times smaller, which slowed
training measurably, e.g. 87.2% instead of 87.9% on Fashion-MNIST rows after 5 epochs); the
LSTM's forget-gate bias starts at 1 (unit_forget_bias, as Keras).

Inputs (forward's ``x``):
    x                  array (B, T, F): every sequence has T steps
    Padded(x, lengths, padding="post")
                       ragged batch: sequence n has lengths[n] real steps (1 <= lengths[n] <= T)
                       at the start ("post": padding after them) or at the end ("pre", the
                       pad_sequences default).  Padded steps leave the state unchanged, give
                       output 0 and receive no gradient.
    (inputs, state)    either of the above with an initial state: h0 (B, H), for the LSTM a
                       pair (h0, c0); otherwise the state starts at 0.
Outputs:
    return_sequences=False: the output after each sequence's last real step, (B, H)
                            (for reverse=True: after its first, as PyTorch's h_n)
    return_sequences=True:  every step's output (B, T, H), as Padded if the input was
    return_state=True:      (output, final_state), final_state like the initial state
backward's ``dy`` mirrors the output ((dy, dstate) with return_state; either may be None, and
an LSTM dstate may be (dh, None) or (None, dc)); its dx mirrors the input: (dx, dstate0) when
an initial state was given.  Everything is validated on the host before any kernel runs.

Device arrays (numba CUDA, C-contiguous) run kernels.cuda.recurrent with no host copy, except
for a ragged batch: its lengths are a host array (validated there; ``dlkit.device.to_device``
leaves a Padded batch's lengths on the host) and the step ranges built from them are copied up
once per call (one (2, B) int64 copy).  Without lengths the ranges are filled on the device.

    Bidirectional(layer, merge="concat")   runs ``layer`` and its time-reversed twin over the
        same input; outputs merged by "concat" (features 2H), "sum" or "ave".  params
        {"forward": ..., "backward": ...}; states go in and come out as (state_fw, state_bw).
    TimeDistributed(layer)                 applies a per-example layer (e.g. Dense) to every
        step: (B, T, F) -> (B, T, out).  The Padded lengths pass through.
"""
from typing import NamedTuple

import numpy as np

from kernels.cpu import recurrent as K

from .. import _check as chk
from .. import device
from .. import init as initializers
from ..random import split
from ..init import Initializer
from .base import Layer, _info, _register


class Padded(NamedTuple):
    """A ragged batch: values (B, T, ...) of which sequence n's lengths[n] steps are real,
    at the start (padding="post") or at the end (padding="pre") of the time axis.  values may
    be a device array; lengths stay on the host (``dlkit.device.to_device`` keeps them there).

    ``data.pad_sequences`` returns the values and lengths of one (with padding="pre" by
    default).  The recurrent layers, Embedding, SpatialDropout1D and TimeDistributed accept
    one wherever they take x.

    Example:
        >>> import numpy as np
        >>> from dlkit import data, layers as L, random
        >>> ids, lengths = data.pad_sequences([[3, 4, 5], [6]], maxlen=3)
        >>> x = L.Padded(ids, lengths, padding="pre")
        >>> model_emb, model_rnn = L.Embedding(10, 4), L.GRU(2)
        >>> _, pe = model_emb.init(random.key(0), (3,))
        >>> _, pr = model_rnn.init(random.key(1), (3, 4))
        >>> e, _ = model_emb.forward(pe, x)            # a Padded in, a Padded out
        >>> type(e).__name__, e.values.shape
        ('Padded', (2, 3, 4))
        >>> model_rnn.forward(pr, e)[0].shape         # each sequence's last real step
        (2, 2)
    """

    values: np.ndarray
    lengths: np.ndarray
    padding: str = "post"


Padded._host_fields = ("lengths",)


def _unwrap(x):
    """(values, lengths, padding) of a Padded batch; (x, None, None) for a plain array."""
    if isinstance(x, Padded):
        return x.values, x.lengths, x.padding
    return x, None, None


def _rewrap(y, lengths, padding):
    return y if lengths is None else Padded(y, lengths, padding)


def step_ranges(lengths, padding, B, T, what):
    """Validated (t0, t1) int64 arrays: step t of sequence n is real iff t0[n] <= t < t1[n]."""
    if lengths is None:
        return np.zeros(B, np.int64), np.full(B, T, np.int64)
    if padding not in ("pre", "post"):
        raise ValueError(f"{what}: padding must be 'pre' or 'post', got {padding!r}")
    if device.is_device_array(lengths):
        raise TypeError(f"{what}: a Padded batch's lengths must be a host (numpy) array: they "
                        "are validated on the host (dlkit.device.to_device leaves them there)")
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"{what}: lengths must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (B,):
        raise ValueError(f"{what}: expected lengths of shape ({B},) to match the batch of {B}, "
                         f"got shape {lengths.shape}")
    bad = (lengths < 1) | (lengths > T)
    if bad.any():
        n = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: sequence {n} has length {int(lengths[n])}, expected a "
                         f"length in [1, {T}] for inputs of {T} steps"
                         + (" (empty sequences cannot be run)" if lengths[n] < 1 else ""))
    L = lengths.astype(np.int64)
    if padding == "post":
        return np.zeros(B, np.int64), np.ascontiguousarray(L)
    return np.ascontiguousarray(T - L), np.full(B, T, np.int64)


kernel_array = chk.kernel_array


def _kernel_ranges(t0, t1, lengths, like):
    """The step ranges where ``like`` lives: as they are on the host; on the device filled
    there without lengths, else copied up in one (2, B) transfer."""
    if not device.on_device(like):
        return t0, t1
    if lengths is None:
        return device.zeros(t0.shape, np.int64, like), device.full(t1.shape, t1[0], np.int64,
                                                                   like)
    both = device.upload(np.stack([t0, t1]))
    return both[0], both[1]


class RecurrentLayer(Layer):
    """A Layer that remembers its constructor and arguments (``config``), so that
    Bidirectional can build its time-reversed twin with ``rebuild(reverse=...)``."""

    def rebuild(self, **changes) -> "RecurrentLayer":
        """The same layer built again with some constructor arguments changed."""
        return self._ctor(**{**self.config, **changes})


_CELLS = {"rnn": ("SimpleRNN", 1), "lstm": ("LSTM", 4), "gru": ("GRU", 3)}


def _state_pair(state, what, B, H, dtype, n):
    """Initial state(s): a list of n (B, H) arrays (zeros where not given)."""
    parts = [state] if n == 1 else state
    if n == 2 and not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(f"{what}: the LSTM's initial state must be a pair (h0, c0), got "
                        f"{type(state).__name__}")
    out = []
    for name, s in zip(("h0", "c0")[:n], parts):
        if s is None:
            out.append(None)
            continue
        s = kernel_array(chk.floating(s, f"{what} initial state {name}"))
        if s.shape != (B, H) or s.dtype != dtype:
            raise ValueError(f"{what}: initial state {name} must have shape ({B}, {H}) and "
                             f"dtype {dtype}, got {s.shape} {s.dtype}")
        out.append(s)
    return out


def _grad_arg(g, shape, dtype, what, like):
    """A gradient argument: zeros (where ``like`` lives) for None, else checked (shape, dtype)
    and contiguous."""
    if g is None:
        return device.zeros(shape, dtype, like)
    g = kernel_array(chk.floating(_unwrap(g)[0], what))
    if g.shape != tuple(shape) or g.dtype != dtype:
        raise ValueError(f"{what}: expected shape {tuple(shape)} and dtype {dtype}, got "
                         f"{g.shape} {g.dtype}")
    return g


def _recurrent(cell, units, return_sequences, return_state, reverse, W_init, U_init, b_init,
               activation="tanh", unit_forget_bias=True):
    name, G = _CELLS[cell]
    H = chk.positive_int(units, f"{name} units")
    act = {"tanh": K.ACT_TANH, "relu": K.ACT_RELU}.get(activation)
    if act is None:
        raise ValueError(f"{name}: activation must be 'tanh' or 'relu', got {activation!r}")
    w_init, u_init, b_init_ = (initializers.get(i) for i in (W_init, U_init, b_init))
    pnames = ("W", "U", "b", "bh") if cell == "gru" else ("W", "U", "b")
    n_state = 2 if cell == "lstm" else 1
    what = f"{name}({H})"

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) != 2:
            raise ValueError(f"{what}: expected an input shape (time, features), got {in_shape}"
                             "; recurrent layers take sequences (batch, time, features)")
        T, F = in_shape
        kW, kU, kb = split(key, 3)
        params = {"W": np.concatenate([w_init(k, (F, H), dtype) for k in split(kW, G)], axis=1),
                  "U": np.concatenate([u_init(k, (H, H), dtype) for k in split(kU, G)], axis=1),
                  "b": np.array(b_init_(kb, (G * H,), dtype), dtype=dtype)}
        if cell == "lstm" and unit_forget_bias:
            params["b"][H:2 * H] = 1
        if cell == "gru":
            params["bh"] = np.zeros(G * H, dtype)
        return ((T, H) if return_sequences else (H,)), params

    def forward(params, x, *, key=None, train=False):
        chk.params(params, pnames, what)
        state = None
        if isinstance(x, tuple) and not isinstance(x, Padded):
            if len(x) != 2:
                raise TypeError(f"{what}: expected an input array, a Padded batch or a pair "
                                f"(inputs, initial_state), got a tuple of {len(x)}")
            x, state = x
        v, lengths, padding = _unwrap(x)
        v = kernel_array(chk.floating(v, f"{what} input"))
        if v.ndim != 3:
            hint = ("; a 2-D array is one feature vector per example: give sequences as "
                    "(batch, time, features), e.g. x[:, :, None] for one feature per step"
                    if v.ndim == 2 else "")
            raise ValueError(f"{what}: expected a 3-D input (batch, time, features), got shape "
                             f"{v.shape}{hint}")
        B, T, F = v.shape
        W, U, b = params["W"], params["U"], params["b"]
        if U.shape != (H, G * H) or W.ndim != 2 or W.shape[1] != G * H or b.shape != (G * H,) \
                or (cell == "gru" and params["bh"].shape != (G * H,)):
            got = ", ".join(f"{k}{params[k].shape}" for k in pnames)
            raise ValueError(f"{what}: expected params W (features, {G * H}), U ({H}, {G * H}), "
                             f"b ({G * H},)" + (f", bh ({G * H},)" if cell == "gru" else "")
                             + f"; got {got}")
        if F != W.shape[0]:
            raise ValueError(f"{what}: input has {F} features, expected {W.shape[0]} "
                             f"(x.shape={v.shape}, W.shape={W.shape})")
        chk.same_dtype(what, x=v, **{k: params[k] for k in pnames})
        if B == 0 or T == 0:
            raise ValueError(f"{what}: expected at least one sequence of at least one step, got "
                             f"input shape {v.shape}")
        t0, t1 = step_ranges(lengths, padding, B, T, what)
        chk.elements((B * T, G * H), f"{what} gate activations")
        given = state is not None
        s0 = _state_pair(state if given else [None] * n_state if n_state == 2 else None,
                         what, B, H, v.dtype, n_state)
        K = device.kernels("recurrent", v, *(params[k] for k in pnames),
                           *(s for s in s0 if s is not None), what=what)
        s0 = [device.zeros((B, H), v.dtype, v) if s is None else s for s in s0]
        t0, t1 = _kernel_ranges(t0, t1, lengths, v)
        W, U, b = (kernel_array(a) for a in (W, U, b))
        if cell == "rnn":
            y, hT, *kc = K.rnn_forward(v, W, U, b, s0[0], t0, t1, reverse, act)
            final = hT
        elif cell == "lstm":
            y, hT, cT, *kc = K.lstm_forward(v, W, U, b, s0[0], s0[1], t0, t1, reverse)
            final = (hT, cT)
        else:
            bh = kernel_array(params["bh"])
            y, hT, *kc = K.gru_forward(v, W, U, b, bh, s0[0], t0, t1, reverse)
            final = hT
        out = _rewrap(y, lengths, padding) if return_sequences else hT
        if return_state:
            out = (out, final)
        cache = (list(kc), t0, t1, (B, T, F), v.dtype, given)
        return out, cache

    def checked_cache(params, cache):
        """The cache and params a backward hands its kernels, checked against each other: the
        kernels take every size from these arrays, so one of another shape would read or
        write out of bounds."""
        kc, t0, t1, dims, dtype, given = chk.cache(cache, 6, what)
        chk.params(params, pnames, what)
        if type(dims) is not tuple or len(dims) != 3 or \
                np.dtype(dtype).type not in chk.FLOATS:
            raise ValueError(f"{what} backward: the cache must hold the input shape (B, T, F) "
                             f"and a float dtype, got {dims!r} and {dtype!r}")
        B, T, F = (chk.size(n, f"{what} backward cache input shape") for n in dims)
        rows, steps = (B * T,), (B * (T + 1),)
        shapes = {"xs": rows + (F,), "acts": rows + (G * H,), "un": rows + (H,),
                  "hs": steps + (H,), "cs": steps + (H,)}
        names = {"rnn": ("xs", "hs"), "lstm": ("xs", "acts", "hs", "cs"),
                 "gru": ("xs", "acts", "un", "hs")}[cell]
        if type(kc) is not list or len(kc) != len(names):
            raise TypeError(f"{what} backward: the cache must hold the forward's arrays "
                            f"{list(names)}, got {chk.describe(kc)}")
        kc = [chk.array(a, shapes[n], dtype, f"{what} backward cache {n}")
              for a, n in zip(kc, names)]
        t0, t1 = (chk.array(t, (B,), np.int64, f"{what} backward cache step range")
                  for t in (t0, t1))
        chk.index_range(t0, 0, max(T, 1), f"{what} backward cache first steps")
        chk.index_range(t1, 1, T + 1, f"{what} backward cache step ends")
        if type(t0) is np.ndarray and (t0 >= t1).any():
            raise ValueError(f"{what} backward: the cache's step ranges are empty or reversed "
                             f"(t0 {t0.tolist()}, t1 {t1.tolist()})")
        for n in pnames:
            chk.array(params[n], ((F,) if n == "W" else (H,) if n == "U" else ()) + (G * H,),
                      dtype, f"{what} backward {n}")
        return kc, t0, t1, (B, T, F), dtype, bool(given)

    def backward(params, cache, dy, *, need_dx=True):
        kc, t0, t1, (B, T, F), dtype, given = checked_cache(params, cache)
        v = kc[0]                       # the cache's gathered inputs: where the arrays live
        if return_state:
            if not (isinstance(dy, tuple) and not isinstance(dy, Padded) and len(dy) == 2):
                raise TypeError(f"{what} backward: with return_state=True, dy must be a pair "
                                "(d_output, d_state); either may be None")
            dout, dstate = dy
        else:
            dout, dstate = dy, None
        if n_state == 2:
            if dstate is not None and not (isinstance(dstate, (tuple, list))
                                           and len(dstate) == 2):
                raise TypeError(f"{what} backward: the LSTM's d_state must be a pair (dh, dc)")
            dh_s, dc_s = dstate if dstate is not None else (None, None)
        else:
            dh_s, dc_s = dstate, None
        dhT = _grad_arg(dh_s, (B, H), dtype, f"{what} backward d_state", v)
        if return_sequences:
            dys = _grad_arg(dout, (B, T, H), dtype, f"{what} backward dy", v)
        else:
            dys = device.empty((B, 0, H), dtype, v)
            if dout is not None:
                dhT = device.add(dhT, _grad_arg(dout, (B, H), dtype, f"{what} backward dy", v))
        W, U = kernel_array(params["W"]), kernel_array(params["U"])
        K = device.kernels("recurrent", v, W, U, dhT, dys, what=what)
        nd = bool(need_dx)
        if cell == "rnn":
            dx, dW, dU, db, dh0 = K.rnn_backward(W, U, t0, t1, reverse, act, *kc, dys, dhT, nd)
            grads, ds0 = {"W": dW, "U": dU, "b": db}, dh0
        elif cell == "lstm":
            dcT = _grad_arg(dc_s, (B, H), dtype, f"{what} backward d_state (dc)", v)
            dx, dW, dU, db, dh0, dc0 = K.lstm_backward(W, U, t0, t1, reverse, *kc, dys, dhT,
                                                       dcT, nd)
            grads, ds0 = {"W": dW, "U": dU, "b": db}, (dh0, dc0)
        else:
            dx, dW, dU, db, dbh, dh0 = K.gru_backward(W, U, t0, t1, reverse, *kc, dys, dhT, nd)
            grads, ds0 = {"W": dW, "U": dU, "b": db, "bh": dbh}, dh0
        dx = dx if need_dx else None
        return ((dx, ds0) if given else dx), grads

    return init, forward, backward


def _make(ctor, cell, config, **extra):
    layer = RecurrentLayer(*_recurrent(cell, config["units"], config["return_sequences"],
                                       config["return_state"], config["reverse"],
                                       config["W_init"], config["U_init"], config["b_init"],
                                       **extra))
    layer._ctor, layer.config = ctor, config
    return _register(layer, ctor.__name__, _rnn_macs)


def _rnn_macs(in_shape, out_shape, params):
    """T * gates * H * (F + H): the sizes of W (F, G*H) and U (H, G*H), once per step."""
    return in_shape[0] * (params["W"].size + params["U"].size)


def _times(n, macs):
    """n * macs, None (unknown) staying None."""
    return None if macs is None else n * macs


def SimpleRNN(units: int, activation: str = "tanh", return_sequences: bool = False,
              return_state: bool = False, reverse: bool = False,
              W_init: str | Initializer = "glorot_uniform",
              U_init: str | Initializer = "orthogonal",
              b_init: str | Initializer = "zeros") -> "RecurrentLayer":
    """Elman RNN, ``h' = act(x W + h U + b)`` with act "tanh" or "relu" (PyTorch's nn.RNN).

    Args:
        units: H, the state size.
        return_sequences: return every step's output (B, T, H) instead of the last (B, H).
        return_state: return ``(output, final_state)``.
        reverse: run from the last step to the first.
        W_init, U_init, b_init: initialiser names from ``dlkit.init`` or functions, applied
            gate by gate to W (F, G*H) and U (H, G*H), and to b (G*H,).
        activation: "tanh" or "relu".

    params: ``W`` (F, H), ``U`` (H, H), ``b`` (H,).

    Returns:
        A ``RecurrentLayer`` (a ``Layer``).  Input ``x`` (B, T, F) float32/float64, a
        ``Padded`` batch, or ``(inputs, state)``; see the module docstring for the outputs,
        ragged batches and states.

    Raises:
        ValueError: bad settings here; a bad input shape in ``init``; mismatched shapes,
            dtypes or lengths in ``forward``/``backward``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> rnn = L.SimpleRNN(4)
        >>> out_shape, params = rnn.init(random.key(0), (5, 3))     # (T, F)
        >>> out_shape, {k: v.shape for k, v in params.items()}
        ((4,), {'W': (3, 4), 'U': (4, 4), 'b': (4,)})
        >>> h, cache = rnn.forward(params, np.zeros((2, 5, 3), np.float32))
        >>> h.shape
        (2, 4)
    """
    config = dict(units=units, activation=activation, return_sequences=return_sequences,
                  return_state=return_state, reverse=reverse, W_init=W_init, U_init=U_init,
                  b_init=b_init)
    return _make(SimpleRNN, "rnn", config, activation=activation)


def LSTM(units: int, return_sequences: bool = False, return_state: bool = False,
         reverse: bool = False, unit_forget_bias: bool = True,
         W_init: str | Initializer = "glorot_uniform",
         U_init: str | Initializer = "orthogonal",
         b_init: str | Initializer = "zeros") -> "RecurrentLayer":
    """Long short-term memory, gate order i, f, g, o (PyTorch's nn.LSTM cell).

    Args:
        units, return_sequences, return_state, reverse, W_init, U_init, b_init: as for
            ``SimpleRNN``.
        unit_forget_bias: start the forget gate's bias at 1 (as Keras).

    params: ``W`` (F, 4H), ``U`` (H, 4H), ``b`` (4H,).  The state is the pair (h, c), each
    (B, H).

    Returns:
        A ``RecurrentLayer``; inputs, outputs and errors as for ``SimpleRNN``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> lstm = L.LSTM(4, return_sequences=True, return_state=True)
        >>> _, params = lstm.init(random.key(0), (5, 3))            # (T, F)
        >>> {k: v.shape for k, v in params.items()}
        {'W': (3, 16), 'U': (4, 16), 'b': (16,)}
        >>> (seq, (h, c)), cache = lstm.forward(params, np.zeros((2, 5, 3), np.float32))
        >>> seq.shape, h.shape, c.shape
        ((2, 5, 4), (2, 4), (2, 4))
    """
    config = dict(units=units, return_sequences=return_sequences, return_state=return_state,
                  reverse=reverse, unit_forget_bias=unit_forget_bias, W_init=W_init,
                  U_init=U_init, b_init=b_init)
    return _make(LSTM, "lstm", config, unit_forget_bias=unit_forget_bias)


def GRU(units: int, return_sequences: bool = False, return_state: bool = False,
        reverse: bool = False, W_init: str | Initializer = "glorot_uniform",
        U_init: str | Initializer = "orthogonal",
        b_init: str | Initializer = "zeros") -> "RecurrentLayer":
    """Gated recurrent unit, gate order r, z, n (PyTorch's nn.GRU cell, reset after U).

    Args:
        units, return_sequences, return_state, reverse, W_init, U_init, b_init: as for
            ``SimpleRNN``.

    params: ``W`` (F, 3H), ``U`` (H, 3H), ``b`` (3H,) and ``bh`` (3H,), the recurrent bias
    (PyTorch's b_hh).

    Returns:
        A ``RecurrentLayer``; inputs, outputs and errors as for ``SimpleRNN``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> gru = L.GRU(4, reverse=True)                            # last step to first
        >>> _, params = gru.init(random.key(0), (5, 3))
        >>> sorted((k, v.shape) for k, v in params.items())
        [('U', (4, 12)), ('W', (3, 12)), ('b', (12,)), ('bh', (12,))]
        >>> gru.forward(params, np.zeros((2, 5, 3), np.float32))[0].shape
        (2, 4)
    """
    config = dict(units=units, return_sequences=return_sequences, return_state=return_state,
                  reverse=reverse, W_init=W_init, U_init=U_init, b_init=b_init)
    return _make(GRU, "gru", config)


# ------------------------------------------------------------------ wrappers
def Bidirectional(layer: "RecurrentLayer", merge: str = "concat") -> Layer:
    """Run a recurrent layer forwards and backwards in time over the same input.

    Args:
        layer: a layer made by SimpleRNN, LSTM or GRU; its time-reversed twin is built from
            the same settings.
        merge: "concat" (output features 2H), "sum" or "ave".

    Returns:
        A ``Layer`` with params ``{"forward": ..., "backward": ...}``; states go in and come
        out as ``(state_fw, state_bw)``.

    Raises:
        TypeError: ``layer`` is not a recurrent layer.
        ValueError: another ``merge``.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> bi = L.Bidirectional(L.GRU(4))
        >>> out_shape, params = bi.init(random.key(0), (5, 3))
        >>> out_shape, sorted(params)
        ((8,), ['backward', 'forward'])
        >>> bi.forward(params, np.zeros((2, 5, 3), np.float32))[0].shape
        (2, 8)
    """
    if not isinstance(layer, RecurrentLayer):
        raise TypeError("Bidirectional: expected a recurrent layer made by SimpleRNN, LSTM or "
                        f"GRU, got {type(layer).__name__}")
    if merge not in ("concat", "sum", "ave"):
        raise ValueError(f"Bidirectional: merge must be 'concat', 'sum' or 'ave', got {merge!r}")
    fw, bw = layer, layer.rebuild(reverse=not layer.config["reverse"])
    with_state = layer.config["return_state"]
    H = layer.config["units"]
    what = f"Bidirectional({layer._ctor.__name__}({H}))"

    def init(key, in_shape, dtype=np.float32):
        kf, kb = split(key)
        shape, pf = fw.init(kf, in_shape, dtype)
        _, pb = bw.init(kb, in_shape, dtype)
        if merge == "concat":
            shape = shape[:-1] + (2 * shape[-1],)
        return shape, {"forward": pf, "backward": pb}

    def _merge(a, b):
        va, lengths, padding = _unwrap(a)
        vb = _unwrap(b)[0]
        if merge == "concat":
            m = device.concat(va, vb)
        else:
            m = device.add(va, vb, None if merge == "sum" else 0.5)
        return _rewrap(m, lengths, padding)

    def _split_dy(d):
        if d is None:
            return None, None
        v, lengths, padding = _unwrap(d)
        if merge == "concat":
            if v.shape[v.ndim - 1] != 2 * H:
                raise ValueError(f"{what} backward: dy must have {2 * H} features, got "
                                 f"{v.shape}")
            return device.split(chk.kernel_array(v, f"{what} backward dy"), H)
        if merge == "ave":
            v = device.mul(v, 0.5)
        return v, v

    def forward(params, x, *, key=None, train=False):
        if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
            raise ValueError(f"{what}: params must be {{'forward': ..., 'backward': ...}}, got "
                             f"{sorted(params) if isinstance(params, dict) else params!r}")
        given = isinstance(x, tuple) and not isinstance(x, Padded)
        if given:
            if len(x) != 2 or not (isinstance(x[1], (tuple, list)) and len(x[1]) == 2):
                raise TypeError(f"{what}: an initial state must be given as "
                                "(inputs, (state_forward, state_backward))")
            xf, xb = (x[0], x[1][0]), (x[0], x[1][1])
        else:
            xf = xb = x
        of, cf = fw.forward(params["forward"], xf, key=key, train=train)
        ob, cb = bw.forward(params["backward"], xb, key=key, train=train)
        if with_state:
            out = (_merge(of[0], ob[0]), (of[1], ob[1]))
        else:
            out = _merge(of, ob)
        return out, (cf, cb, given)

    def backward(params, cache, dy, *, need_dx=True):
        cf, cb, given = chk.cache(cache, 3, what)
        if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
            raise ValueError(f"{what} backward: params must be {{'forward': ..., 'backward': "
                             f"...}}, got {chk.describe(params)}")
        if with_state:
            if not (isinstance(dy, tuple) and not isinstance(dy, Padded) and len(dy) == 2):
                raise TypeError(f"{what} backward: with return_state=True, dy must be a pair "
                                "(d_output, (d_state_forward, d_state_backward))")
            dout, dstate = dy
            dsf, dsb = dstate if dstate is not None else (None, None)
            df, db = _split_dy(dout)
            df, db = (df, dsf), (db, dsb)
        else:
            df, db = _split_dy(dy)
        dxf, gf = fw.backward(params["forward"], cf, df, need_dx=need_dx)
        dxb, gb = bw.backward(params["backward"], cb, db, need_dx=need_dx)
        grads = {"forward": gf, "backward": gb}
        if given:
            dx = None if dxf[0] is None else device.add(dxf[0], dxb[0])
            return (dx, (dxf[1], dxb[1])), grads
        return (None if dxf is None else device.add(dxf, dxb)), grads

    return _register(Layer(init, forward, backward), f"Bidirectional({layer._ctor.__name__})",
                     lambda i, o, p: sum(_rnn_macs(i, o, p[d]) for d in ("forward", "backward")))


def TimeDistributed(layer: Layer) -> Layer:
    """Apply a per-example layer to every time step: (B, T, *in) -> (B, T, *out).

    The steps are folded into the batch, so ``layer`` sees (B*T, *in); its params are the
    wrapped layer's.  A ``Padded`` input's lengths pass through.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> td = L.TimeDistributed(L.Dense(2))
        >>> out_shape, params = td.init(random.key(0), (5, 3))
        >>> out_shape, params["W"].shape
        ((5, 2), (3, 2))
        >>> td.forward(params, np.zeros((4, 5, 3), np.float32))[0].shape
        (4, 5, 2)
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"TimeDistributed: expected a Layer, got {type(layer).__name__}")
    inner_init, inner_fwd, inner_bwd = layer

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) < 2:
            raise ValueError(f"TimeDistributed: expected an input shape (time, ...), got "
                             f"{in_shape}")
        out, params = inner_init(key, in_shape[1:], dtype)
        return (in_shape[0],) + tuple(out), params

    def forward(params, x, *, key=None, train=False):
        v, lengths, padding = _unwrap(x)
        if not chk.is_array(v) or v.ndim < 3:
            raise ValueError("TimeDistributed: expected an input (batch, time, ...), got "
                             f"{getattr(v, 'shape', type(v).__name__)}")
        B, T = v.shape[:2]
        v = chk.contiguous(v, "TimeDistributed input")
        y, cache = inner_fwd(params, v.reshape((B * T,) + v.shape[2:]), key=key, train=train)
        return _rewrap(y.reshape((B, T) + y.shape[1:]), lengths, padding), (cache, B, T)

    def backward(params, cache, dy, *, need_dx=True):
        c, B, T = chk.cache(cache, 3, "TimeDistributed")
        B, T = (chk.size(n, "TimeDistributed backward cache") for n in (B, T))
        dy = _unwrap(dy)[0]
        if not chk.is_array(dy) or dy.shape[:2] != (B, T):
            raise ValueError(f"TimeDistributed backward: dy must start with ({B}, {T}), got "
                             f"{getattr(dy, 'shape', type(dy).__name__)}")
        dy = chk.kernel_array(dy, "TimeDistributed backward dy")
        dx, grads = inner_bwd(params, c, dy.reshape((B * T,) + dy.shape[2:]), need_dx=need_dx)
        return (None if dx is None else dx.reshape((B, T) + dx.shape[1:])), grads

    kind, macs = (_info(layer) or (type(layer).__name__, None))[:2]   # T times the layer's
    return _register(Layer(init, forward, backward), f"TimeDistributed({kind})",
                     macs and (lambda i, o, p: _times(i[0], macs(i[1:], o[1:], p))))
