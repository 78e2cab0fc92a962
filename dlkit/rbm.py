"""Restricted Boltzmann machines (kernels: kernels.cpu.rbm, or kernels.cuda.rbm for device
arrays).

An RBM is a plain param dict ``{"W": (n_visible, n_hidden), "vbias": (n_visible,),
"hbias": (n_hidden,)}`` (W in the Dense layout (in, out), so a trained RBM drops into
``layers.Dense(n_hidden, "sigmoid")`` as ``{"W": W, "b": hbias}``).  Hidden units are
Bernoulli; visible units are Bernoulli (``visible="bernoulli"``, data in [0, 1]) or Gaussian
with unit variance (``visible="gaussian"``, standardise the data first).  Every function takes
``visible=`` and defaults to Bernoulli.

    init(key, n_visible, n_hidden, *, std=0.01, data=None, visible=..., dtype=np.float32)
        -> params   W ~ N(0, std^2), hbias = 0, vbias = log(p / (1 - p)) of the data's
           per-unit mean p when ``data`` is given (Hinton's practical guide), else 0
    cd_grads(params, v0, key, k=1, chain=None, *, sample_visible=True, visible=...)
        -> (grads, chain, stats)
           CD-k when chain is None, persistent CD-k (PCD) when chain is the hidden state
           (batch, n_hidden) returned by the previous call (start one with ``init_chain``).
           grads = dLoss/dθ = -(positive - negative statistics) / batch, the same keys,
           shapes and dtypes as params, so any dlkit optimizer applies them.  The returned
           chain is None for CD.  stats = {"recon_error": mean over the batch of
           |v0 - E[v_1|h_0]|^2 (CD; None for PCD, whose chain does not start at the data)}.
           sample_visible=False uses the visible means in the negative phase (Hinton's
           recipe) instead of samples (textbook CD, and scikit-learn's BernoulliRBM).
    init_chain(params, v, key, *, visible=...)     -> a PCD chain: h ~ P(h | v)
    transform(params, v, *, visible=...)           -> P(h = 1 | v)            (N, n_hidden)
    visible_mean(params, h, *, visible=...)        -> E[v | h]                (N, n_visible)
    reconstruct(params, v, *, visible=...)         -> E[v | h = P(h|v)]       (mean field)
    reconstruction_error(params, v, *, visible=...) -> mean over rows of |v - reconstruct(v)|^2
    gibbs(params, v, key, n_steps=1, *, visible=...) -> (v_sample, v_mean, h_sample)
    free_energy(params, v, *, visible=...)         -> F(v) per row             (N,)
    free_energy_grad(params, v, *, visible=...)    -> d mean_n F(v_n) / dθ     (grads dict)
    pseudo_likelihood(params, v, key)              -> (N,) as scikit-learn's
           BernoulliRBM.score_samples (Bernoulli only), the flipped units drawn from ``key``
    weight_decay(grads, params, l2, l1=0)          -> grads + l2 W + l1 sign(W), on W only
    hinton_sgd(lr=0.1, momentum=0.5)               -> optim.sgd: the practical guide's recipe
    fit(params, X, key, *, epochs=1, batch_size=100, k=1, persistent=False, ...)
        -> FitResult(params, opt_state, chain, history): CD-k / PCD-k training with Hinton's
           recipe by default (SGD lr 0.1, momentum 0.5 then 0.9, weight decay 2e-4 on W,
           visible means), the SGD step fused into the CD kernel; or any dlkit optimizer

Randomness: each call draws everything from its ``key`` (``_draws``): the hidden uniforms
(k, N, n_hidden) and Bernoulli visible noise (k, N, n_visible) as one ``random.uniform`` array
(the parallel SplitMix64 kernel: 27 us for a CD-1 step's 128k numbers, against 244 us from a
numpy Generator), Gaussian visible noise as standard normals from ``random.generator(key)``;
all in the data's dtype (float32 runs draw float32 numbers, so they sample differently from
float64 runs with the same key).  The same
key gives the same bits.  Every input is checked (dtype, shapes, Bernoulli data in [0, 1],
k >= 1, the chain's shape) before any kernel that uses it runs; errors say what was expected
and what came.

On the device: params, data and chains moved with ``dlkit.device.to_device`` run the same
functions on kernels.cuda.rbm (host and device arrays mixed: TypeError).  The random numbers
are still drawn on the host from the key, as above, and copied up in one copy per call, so a
device call samples exactly what the CPU call samples (results agree to float32 rounding).
The range check of device data ([0, 1], or finite) is one reduction kernel and a 24-byte
read-back, and raises the CPU's error; ``cd_grads`` reads the per-row reconstruction errors
back for its stats (CD).  Results stay on the device.
"""
from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _check as chk
from . import device, distributed, optim, tree
from .random import Key, fold_in, generator, uniform

Params: TypeAlias = dict[str, Any]
"""RBM params: ``{"W": (n_visible, n_hidden), "vbias": (n_visible,), "hbias": (n_hidden,)}``,
float32 or float64 numpy arrays (or CUDA device arrays)."""

VISIBLE = ("bernoulli", "gaussian")
PARAMS = ("W", "vbias", "hbias")


# ---------------------------------------------------------------- checks
def _visible_kind(visible):
    if visible not in VISIBLE:
        raise ValueError(f"rbm: visible must be one of {VISIBLE}, got {visible!r}")
    return visible == "gaussian"


def _array(a, what):
    """a as the kernels take it: a numpy array C-contiguous and writeable (a copy when read-only:
    Numba would compile a separate specialisation of every kernel for read-only arrays), a
    device array as it is (it must be C-contiguous: checked, never copied)."""
    if not chk.is_array(a):
        raise TypeError(f"{what}: expected a numpy array or a CUDA device array, got "
                        f"{type(a).__name__}")
    return chk.kernel_array(a, what)


def _kernels(W):
    """kernels.cpu.rbm or kernels.cuda.rbm, where the (checked) params live."""
    return device.kernels("rbm", W)


def _range(a, what):
    """(min, max) of a non-empty array, NaN when it holds a NaN.  A device array: one
    reduction kernel (kernels.cuda._array.value_range) and 24 bytes back."""
    if type(a) is np.ndarray:
        return a.min(), a.max()
    lo, hi, nan = device.kernels("_array", a, what=what).value_range(a).copy_to_host()
    t = a.dtype.type
    return (t(np.nan), t(np.nan)) if nan else (t(lo), t(hi))


def _same_place(what, W, **arrays):
    """TypeError, before any kernel runs, when host and device arrays are mixed."""
    device.kernels("rbm", W, *arrays.values(),
                   what=f"{what} (params, {', '.join(arrays)})")


def check_params(params: Params, what: str = "rbm") -> tuple[Any, Any, Any]:
    """Validate an RBM param dict; returns (W, vbias, hbias), numpy arrays (C-contiguous) or
    device arrays (all three on the same side).

    Raises:
        ValueError: missing or extra keys, or mismatched shapes (``what`` starts the message).
        TypeError: non-float arrays, mixed dtypes, or host and device arrays mixed.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm
        >>> rbm.check_params({"W": np.zeros((3, 2)), "vbias": np.zeros(2), "hbias": np.zeros(2)})
        Traceback (most recent call last):
        ...
        ValueError: rbm: W(3, 2) needs vbias of shape (3,) and hbias of shape (2,), got ...
    """
    chk.params(params, PARAMS, what)
    W, vb, hb = (_array(params[n], f"{what} param {n!r}") for n in PARAMS)
    if W.ndim != 2:
        raise ValueError(f"{what}: W must be 2-D (n_visible, n_hidden), got shape {W.shape}")
    V, H = W.shape
    if vb.shape != (V,) or hb.shape != (H,):
        raise ValueError(f"{what}: W{W.shape} needs vbias of shape ({V},) and hbias of shape "
                         f"({H},), got vbias{vb.shape} and hbias{hb.shape}")
    chk.same_dtype(what, W=W, vbias=vb, hbias=hb)
    if not (type(W) is type(vb) is type(hb) is np.ndarray):
        device.kernels("rbm", W, vb, hb, what=f"{what} params")
    return W, vb, hb


def _data(v, W, what, gaussian, name="visible data"):
    """v checked against W: float, 2-D (batch, n_visible), W's dtype, on W's side (host or
    device), in [0, 1] (Bernoulli) or finite (Gaussian).  Returns it C-contiguous."""
    if chk.is_array(v) and v.dtype.kind in "iub":
        raise TypeError(f"{what}: {name} must be float32/float64, got {v.dtype}"
                        + (" (scale uint8 images to [0, 1], e.g. x / 255)"
                           if v.dtype == np.uint8 else ""))
    v = chk.floating(_array(v, f"{what} {name}"), f"{what} {name}")
    chk.ndim(v, 2, f"{what} {name}", "batch, n_visible")
    if v.shape[1] != W.shape[0]:
        raise ValueError(f"{what}: {name} has {v.shape[1]} units per row, the RBM has "
                         f"{W.shape[0]} visible units (data shape {v.shape}, W shape {W.shape})")
    if v.dtype != W.dtype:
        raise TypeError(f"{what}: {name} is {v.dtype} but the params are {W.dtype}; "
                        "cast one to the other")
    if type(v) is not type(W):
        _same_place(what, W, **{name: v})
    if v.size:
        lo, hi = _range(v, what)
        if gaussian:
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError(f"{what}: {name} contains NaN or Inf")
        elif not (lo >= 0 and hi <= 1):
            bad = "NaN" if np.isnan(lo) or np.isnan(hi) else f"range [{lo:g}, {hi:g}]"
            raise ValueError(f"{what}: Bernoulli visible units need data in [0, 1], got {bad}; "
                             "scale the data (e.g. x / 255) or use visible='gaussian' for "
                             "real-valued data")
    return v


def _k(k, what):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{what}: k (Gibbs steps) must be an int >= 1, got {k!r}")
    return int(k)


def _chain(chain, N, H, W, what):
    if not chk.is_array(chain):
        raise TypeError(f"{what}: chain must be the array returned by the previous call "
                        f"(or rbm.init_chain), got {type(chain).__name__}")
    if chain.shape != (N, H):
        raise ValueError(f"{what}: chain has shape {chain.shape} but this batch needs "
                         f"({N}, {H}) (batch rows, hidden units); a PCD chain has one row per "
                         "batch row: keep the batch size fixed or start a new chain with "
                         "rbm.init_chain")
    if chain.dtype != W.dtype:
        raise TypeError(f"{what}: chain is {chain.dtype}, the params are {W.dtype}")
    chain = _array(chain, what)
    if type(chain) is not type(W):
        _same_place(what, W, chain=chain)
    if chain.size:
        lo, hi = _range(chain, what)
        if not (lo >= 0 and hi <= 1):
            raise ValueError(f"{what}: chain values must lie in [0, 1] (hidden states), got "
                             f"range [{lo}, {hi}]")
    return chain


def _draws(key, k, N, H, V, dtype, visible_noise, gaussian):
    """The random numbers of k Gibbs steps on N rows, from key: uh (k, N, H) uniforms for the
    hidden samples; nv (k, N, V) the visible noise, uniforms (Bernoulli) or standard normals
    (Gaussian), or (0, N, V) without visible_noise."""
    if gaussian and visible_noise:
        return (uniform(key, (k, N, H), dtype),
                generator(key).standard_normal((k, N, V), dtype=dtype))
    u = uniform(key, (k * N * (H + V if visible_noise else H),), dtype)
    return (u[:k * N * H].reshape(k, N, H),
            u[k * N * H:].reshape(k if visible_noise else 0, N, V))


def _where(W, *arrays):
    """The host-drawn random arrays where W lives: as they are on the host; on the device
    uploaded in one copy (one buffer, split into views)."""
    if type(W) is np.ndarray:
        return arrays
    buf = device.upload(np.concatenate([a.reshape(-1) for a in arrays]))
    out, at = [], 0
    for a in arrays:
        out.append(buf[at:at + a.size].reshape(a.shape))
        at += a.size
    return out


def _to_host(a):
    return a if type(a) is np.ndarray else a.copy_to_host()


# ---------------------------------------------------------------- construction
def init(key: Key, n_visible: int, n_hidden: int, *, std: float = 0.01,
         data: NDArray | None = None, visible: str = "bernoulli",
         dtype: DTypeLike = np.float32) -> Params:
    """New RBM params.  W ~ N(0, std^2); hbias = 0; vbias from ``data`` (N, n_visible) when
    given: log(p / (1 - p)) with p the per-unit mean clipped to [1e-3, 1 - 1e-3] (Bernoulli),
    the per-unit mean (Gaussian); zeros otherwise.

    Raises:
        ValueError: non-positive sizes, an unknown ``visible``, or data of another width.
        TypeError: a dtype other than float32/float64.

    Example:
        >>> from dlkit import rbm, random
        >>> params = rbm.init(random.key(0), 784, 64)
        >>> {n: (a.shape, str(a.dtype)) for n, a in params.items()}
        {'W': ((784, 64), 'float32'), 'vbias': ((784,), 'float32'), 'hbias': ((64,), 'float32')}
    """
    V = chk.positive_int(n_visible, "rbm.init n_visible")
    H = chk.positive_int(n_hidden, "rbm.init n_hidden")
    gaussian = _visible_kind(visible)
    dtype = np.dtype(dtype)
    if dtype.type not in chk.FLOATS:
        raise TypeError(f"rbm.init: dtype must be float32 or float64, got {dtype}")
    if not (isinstance(std, (int, float)) and std >= 0):
        raise ValueError(f"rbm.init: std must be a non-negative number, got {std!r}")
    W = (generator(key).standard_normal((V, H)) * std).astype(dtype)
    vb = np.zeros(V, dtype)
    if data is not None:
        x = _data(np.asarray(data, dtype), W, "rbm.init", gaussian, "data")
        p = x.mean(axis=0, dtype=np.float64)
        if not gaussian:
            p = np.clip(p, 1e-3, 1 - 1e-3)
            p = np.log(p / (1 - p))
        vb = p.astype(dtype)
    return {"W": W, "vbias": vb, "hbias": np.zeros(H, dtype)}


# ---------------------------------------------------------------- contrastive divergence
def _cd(W, vb, hb, v0, key, k, chain, sample_visible, gaussian, part=None):
    """cd_grads without the checks (inputs already validated).  part=(start, rows): v0 is
    rows start.. of a batch of ``rows`` rows, and gets that batch's random numbers, sliced
    (data-parallel CD draws what one process would)."""
    N, V = v0.shape
    H = W.shape[1]
    start, rows = (0, N) if part is None else part
    uh, nv = (np.ascontiguousarray(a[:, start:start + N])
              for a in _draws(key, k, rows, H, V, v0.dtype, sample_visible, gaussian))
    uh, nv = _where(W, uh, nv)
    persistent = chain is not None
    dW, db, dc, new_chain, _, err = _kernels(W).rbm_cd(
        v0, W, vb, hb, chain if persistent else device.empty((0, H), v0.dtype, W), k,
        persistent, gaussian, bool(sample_visible), uh, nv)
    stats = {"recon_error": None if persistent else float(_to_host(err).sum()) / N}
    return {"W": dW, "vbias": db, "hbias": dc}, (new_chain if persistent else None), stats


def _cd_mean(params, xb, start, rows, key, k, sample_visible, gaussian):
    """Under MPI: the CD-k gradient and reconstruction error of a batch of ``rows`` rows of
    which this rank holds ``xb``, from row ``start`` on, averaged over the ranks (one fused
    allreduce)."""
    if len(xb):
        grads, _, stats = _cd(params["W"], params["vbias"], params["hbias"], xb, key, k, None,
                              sample_visible, gaussian, part=(start, rows))
        err = stats["recon_error"] * len(xb)
    else:               # a last batch with fewer rows than ranks: this rank adds nothing
        grads, err = tree.map(np.zeros_like, params), 0.0
    grads, (err,) = distributed.allreduce(grads, len(xb) / rows, extra=[err])
    return grads, {"recon_error": err / rows}


def _agree(params, opt_state, X, key, batch_size, epochs, on_dev, persistent):
    """Under MPI, before any step: refuse what fit cannot split (device arrays, PCD's
    per-batch chain, a batch smaller than the number of ranks), check that the ranks agree
    (DistributedError naming the rank and both values) and return rank 0's params and
    optimizer state."""
    if on_dev or persistent:
        raise distributed.DistributedError(
            "rbm.fit: data-parallel training over MPI takes CD (persistent=False) on host "
            f"arrays; got {'device arrays' if on_dev else 'persistent=True (PCD)'}")
    distributed.check_batch("rbm.fit", batch_size)
    distributed.check_same("rbm.fit", data=(tuple(X.shape), X.dtype.str),
                           batch_size=int(batch_size), epochs=int(epochs), key=tuple(key),
                           params=distributed.signature(params),
                           opt_state=distributed.signature(opt_state))
    return distributed.broadcast(params), distributed.broadcast(opt_state)


def cd_grads(params: Params, v0: NDArray, key: Key, k: int = 1, chain: NDArray | None = None,
             *, sample_visible: bool = True,
             visible: str = "bernoulli") -> tuple[Params, NDArray | None, dict[str, Any]]:
    """Contrastive-divergence gradient (CD-k, or PCD-k with a chain); see the module docstring.

    v0 (N, n_visible) a batch of data in params' dtype; chain None (CD) or (N, n_hidden)
    (PCD).  Returns (grads, new_chain or None, stats): grads = dLoss/dθ with params' keys,
    shapes and dtypes, so any dlkit optimizer applies them.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> grads, chain, stats = rbm.cd_grads(params, X, random.key(2), k=1)
        >>> grads["W"].shape, chain, stats["recon_error"] > 0
        ((6, 4), None, True)
    """
    what = "rbm.cd_grads"
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, what)
    k = _k(k, what)
    v0 = _data(v0, W, what, gaussian)
    if chain is not None:
        chain = _chain(chain, v0.shape[0], W.shape[1], W, what)
    generator(key)                                       # checks the key
    return _cd(W, vb, hb, v0, key, k, chain, sample_visible, gaussian)


def init_chain(params: Params, v: NDArray, key: Key, *, visible: str = "bernoulli") -> NDArray:
    """A PCD chain started at data: h ~ P(h | v), shape (N, n_hidden), 0/1 in params' dtype.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> chain = rbm.init_chain(params, X, random.key(2))
        >>> chain.shape, sorted(set(chain.ravel().tolist())) <= [0.0, 1.0]
        ((20, 4), True)
    """
    W, vb, hb = check_params(params, "rbm.init_chain")
    return _sample_hidden(W, hb, _data(v, W, "rbm.init_chain", _visible_kind(visible)), key)


def _sample_hidden(W, hb, v, key):
    """h ~ P(h | v) with uniforms from key.  Device arrays: P(h | v) on the device, sampled
    on the host, the chain copied up (once per chain: not a per-step cost)."""
    p = _to_host(_kernels(W).rbm_hidden(v, W, hb))
    h = (uniform(key, p.shape, p.dtype) < p).astype(p.dtype)
    return h if type(W) is np.ndarray else device.upload(h)


def _rows(X, idx):
    """X[idx] (rows); on the device a gather kernel (the embedding lookup) over device idx."""
    if type(X) is np.ndarray:
        return X[idx]
    return device.kernels("embedding", idx, X).embedding_forward(idx, X)


# ---------------------------------------------------------------- inference and sampling
def transform(params: Params, v: NDArray, *, visible: str = "bernoulli") -> NDArray:
    """Hidden probabilities P(h = 1 | v), (N, n_hidden) (scikit-learn's transform): the
    features an RBM gives a classifier.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> rbm.transform(params, X).shape
        (20, 4)
    """
    W, vb, hb = check_params(params, "rbm.transform")
    return _kernels(W).rbm_hidden(_data(v, W, "rbm.transform", _visible_kind(visible)), W, hb)


def visible_mean(params: Params, h: NDArray, *, visible: str = "bernoulli") -> NDArray:
    """E[v | h] for hidden states (or probabilities) h (N, n_hidden): (N, n_visible).

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> rbm.visible_mean(params, np.ones((2, 4), np.float32)).shape
        (2, 6)
    """
    what = "rbm.visible_mean"
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, what)
    h = chk.floating(_array(h, f"{what} h"), f"{what} h")
    chk.ndim(h, 2, f"{what} h", "batch, n_hidden")
    if h.shape[1] != W.shape[1] or h.dtype != W.dtype:
        raise ValueError(f"{what}: h must be (N, {W.shape[1]}) {W.dtype}, got {h.shape} "
                         f"{h.dtype}")
    if type(h) is not type(W):
        _same_place(what, W, h=h)
    return _kernels(W).rbm_visible(h, W, vb, gaussian)


def reconstruct(params: Params, v: NDArray, *, visible: str = "bernoulli") -> NDArray:
    """Mean-field reconstruction E[v | h = P(h | v)], (N, n_visible).

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> rbm.reconstruct(params, X).shape
        (20, 6)
    """
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, "rbm.reconstruct")
    v = _data(v, W, "rbm.reconstruct", gaussian)
    K_ = _kernels(W)
    return K_.rbm_visible(K_.rbm_hidden(v, W, hb), W, vb, gaussian)


def reconstruction_error(params: Params, v: NDArray, *, visible: str = "bernoulli") -> float:
    """Mean over rows of the squared error |v - reconstruct(v)|^2 (a float).

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> isinstance(rbm.reconstruction_error(params, X), float)
        True
    """
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, "rbm.reconstruction_error")
    v = _data(v, W, "rbm.reconstruction_error", gaussian)
    if not len(v):
        return 0.0
    K_ = _kernels(W)
    r = K_.rbm_visible(K_.rbm_hidden(v, W, hb), W, vb, gaussian)
    if type(v) is np.ndarray:
        return float(np.sum((v - r) ** 2, dtype=np.float64)) / len(v)
    # on the device: the float64 sum of squares of v - r, 8 bytes back
    sq = device.kernels("_array", v).sum_squares([device.add(v, device.mul(r, -1))])
    return float(sq.copy_to_host()[0]) / len(v)


def gibbs(params: Params, v: NDArray, key: Key, n_steps: int = 1, *,
          visible: str = "bernoulli") -> tuple[NDArray, NDArray, NDArray]:
    """``n_steps`` of block Gibbs sampling v -> h -> v from v (N, n_visible).

    Returns (v_sample, v_mean, h_sample): the last visible sample, the visible mean it was drawn
    from (smoother for pictures), and the last hidden sample.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> v, v_mean, h = rbm.gibbs(params, X, random.key(2), n_steps=10)
        >>> v.shape, v_mean.shape, h.shape
        ((20, 6), (20, 6), (20, 4))
    """
    what = "rbm.gibbs"
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, what)
    v = _data(v, W, what, gaussian)
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise ValueError(f"{what}: n_steps must be an int >= 0, got {n_steps!r}")
    N, V = v.shape
    H = W.shape[1]
    uh, nv = _draws(key, n_steps, N, H, V, v.dtype, True, gaussian)
    return _kernels(W).rbm_gibbs(v, W, vb, hb, int(n_steps), gaussian, *_where(W, uh, nv))


def free_energy(params: Params, v: NDArray, *, visible: str = "bernoulli") -> NDArray:
    """F(v) per row, (N,): -v.vbias - sum_j softplus(hbias_j + v W_:j) (Bernoulli) or
    |v - vbias|^2 / 2 - sum_j softplus(...) (Gaussian).

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> rbm.free_energy(params, X).shape
        (20,)
    """
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, "rbm.free_energy")
    v = _data(v, W, "rbm.free_energy", gaussian)
    return _kernels(W).rbm_free_energy(v, W, vb, hb, gaussian)


def free_energy_grad(params: Params, v: NDArray, *, visible: str = "bernoulli") -> Params:
    """Gradient of mean_n F(v_n) with respect to the params (a dict like params).  The CD
    gradient is this at the data minus this at the negative samples.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> sorted(rbm.free_energy_grad(params, X))
        ['W', 'hbias', 'vbias']
    """
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, "rbm.free_energy_grad")
    v = _data(v, W, "rbm.free_energy_grad", gaussian)
    if not len(v):
        raise ValueError("rbm.free_energy_grad: needs at least one row")
    dW, db, dc = _kernels(W).rbm_free_energy_grad(v, W, vb, hb, gaussian)
    return {"W": dW, "vbias": db, "hbias": dc}


def pseudo_likelihood(params: Params, v: NDArray, key: Key) -> NDArray:
    """Stochastic pseudo-log-likelihood per row, (N,), as scikit-learn's
    BernoulliRBM.score_samples: flip one visible unit per row (index drawn from ``key`` with
    ``generator(key).integers(0, n_visible, N)``), PL = n_visible * log sigm(F(v') - F(v)).
    Bernoulli RBMs only (data meant to be binary, as in scikit-learn).

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> pl = rbm.pseudo_likelihood(params, X, random.key(2))
        >>> pl.shape, bool((pl <= 0).all())
        ((20,), True)
    """
    W, vb, hb = check_params(params, "rbm.pseudo_likelihood")
    v = _data(v, W, "rbm.pseudo_likelihood", False)
    idx = generator(key).integers(0, W.shape[0], v.shape[0], dtype=np.int64)
    return _kernels(W).rbm_pseudo_likelihood(v, W, vb, hb, *_where(W, idx))


# ---------------------------------------------------------------- training recipe
def weight_decay(grads: Params, params: Params, l2: float, l1: float = 0.0) -> Params:
    """grads with (l2 W + l1 sign(W)) added to grads["W"]: L2 and L1 weight decay on the
    weights only (the biases are not decayed, as in Hinton's practical guide; optim.sgd's own
    l2 / l1 would decay them too).  L1 decay drives most weights to about zero and gives
    localised receptive fields (practical guide, section 10).

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> g = {n: np.zeros_like(a) for n, a in params.items()}
        >>> d = rbm.weight_decay(g, params, 2e-4)
        >>> bool(np.allclose(d["W"], 2e-4 * params["W"])), bool((d["hbias"] == 0).all())
        (True, True)
    """
    return _decayed(grads, params, l2, l1)


def _decayed(grads, params, l2, l1):
    if not l2 and not l1:
        return grads
    W, g = params["W"], grads["W"]
    if type(W) is not np.ndarray or type(g) is not np.ndarray:   # the same arithmetic
        O = device.kernels("optim", g, W, what="rbm.weight_decay")
        return dict(grads, W=O.penalise(g.reshape(-1), W.reshape(-1), l2, l1).reshape(W.shape))
    t = W.dtype.type
    g = g + t(l2) * W
    if l1:
        g = g + t(l1) * np.sign(W)
    return dict(grads, W=g)


def hinton_sgd(lr: float = 0.1, momentum: float = 0.5) -> "optim.Optimizer":
    """``optim.sgd(lr, momentum)``: the optimizer of Hinton's practical guide (and Hinton &
    Salakhutdinov's rbm.m) for use with ``cd_grads``: lr 0.1 on batch-mean gradients, momentum
    0.5 for the first epochs then 0.9 (make a new ``hinton_sgd(lr, 0.9)``; the state carries
    over), weight cost 2e-4 on W only (``weight_decay``).  ``fit`` runs the same arithmetic fused
    into the CD kernel.

    Example:
        >>> from dlkit import rbm
        >>> opt = rbm.hinton_sgd()
        >>> opt.name, opt.hyperparams["lr"], opt.hyperparams["momentum"]
        ('sgd', 0.1, 0.5)
    """
    return optim.sgd(lr, momentum=momentum)


class FitResult(NamedTuple):
    """What ``rbm.fit`` returns: the trained params, the optimizer state and the PCD chain
    (None for CD), to continue from, and the per-epoch history lists."""

    params: dict
    opt_state: dict
    chain: object           # the PCD chain (None for CD)
    history: dict


def _number(x, what, lo=0.0):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating)) or not x >= lo \
            or not np.isfinite(x):
        raise ValueError(f"rbm.fit: {what} must be a finite number >= {lo}, got {x!r}")
    return float(x)


def _sgd_state(state, params, what):
    """The built-in SGD's state must be optim.sgd's: {"step": int, "v": like params}."""
    if not isinstance(state, dict) or set(state) != {"step", "v"} \
            or not isinstance(state["v"], dict) or set(state["v"]) != set(PARAMS):
        raise ValueError(f"{what}: opt_state for the built-in SGD must be optim.sgd's state "
                         f"{{'step', 'v': {{'W', 'vbias', 'hbias'}}}}, got "
                         f"{state if not isinstance(state, dict) else sorted(state)}")
    for n, a in state["v"].items():
        p = params[n]
        if not chk.is_array(a) or a.shape != p.shape or a.dtype != p.dtype \
                or device.on_device(a) != device.on_device(p):
            where = "on the device" if device.on_device(p) else "on the host"
            raise ValueError(f"{what}: opt_state['v'][{n!r}] must be {p.shape} {p.dtype} "
                             f"{where}, got {getattr(a, 'shape', type(a).__name__)} "
                             f"{getattr(a, 'dtype', '')} ({type(a).__name__})")


def _placed_data(a, W, what, gaussian, name):
    """_data, on W's side: host data for device params is checked on the host and uploaded
    (once, for fit's X and monitor and dbn's data)."""
    if type(W) is not np.ndarray and type(a) is np.ndarray:
        like = np.empty((W.shape[0], 0), W.dtype)
        return device.upload(_data(a, like, what, gaussian, name))
    return _data(a, W, what, gaussian, name)


def fit(params: Params, X: NDArray, key: Key, *, epochs: int = 1, batch_size: int = 100,
        k: int = 1, persistent: bool = False, sample_visible: bool = False,
        lr: float | Callable[[int], float] = 0.1, momentum: float = 0.5,
        final_momentum: float | None = 0.9, momentum_switch: int = 5,
        weight_decay: float = 2e-4, l1: float = 0.0, optimizer: "optim.Optimizer | None" = None,
        visible: str = "bernoulli", opt_state: dict | None = None, chain: NDArray | None = None,
        start_epoch: int = 0, monitor: NDArray | None = None,
        callback: Callable[[int, "FitResult"], Any] | None = None, progress: bool = False,
        desc: str = "rbm", log: Callable[[str], Any] | None = None) -> FitResult:
    """Train an RBM by CD-k / PCD-k on X (n, n_visible), epochs start_epoch .. epochs - 1.

    The defaults are Hinton's practical-guide recipe: SGD with lr 0.1 (a number or a schedule
    ``fn(step)``), momentum 0.5 switched to ``final_momentum`` 0.9 from epoch
    ``momentum_switch`` on, weight decay 2e-4 on W only (``l1`` adds an L1 penalty on W too:
    sparse, localised filters), visible means in the negative phase (``sample_visible=False``;
    True samples them, as textbook CD and scikit-learn).  This
    built-in SGD runs fused into the CD kernel (``kernels.cpu.rbm.rbm_cd_sgd``): the same
    arithmetic as ``optim.sgd(lr, momentum)`` after ``weight_decay`` on ``cd_grads``, bit for bit,
    without materialising the gradient.  With params on the device (``device.to_device``) it
    runs as exactly that: ``cd_grads``, ``weight_decay`` and ``optim.sgd`` on kernels.cuda; X
    (and monitor) given on the host are uploaded once, each epoch's order once, and a step
    copies only its uniforms up and (CD) its per-row reconstruction errors back.
    ``optimizer``: any other dlkit optimizer instead (then lr / momentum / final_momentum are
    not used); grads come from ``cd_grads`` and ``weight_decay`` still applies to W.
    opt_state: an optimizer state to continue from (the built-in SGD's is ``optim.sgd``'s:
        {"step", "v"}); chain: a PCD chain to continue from.
    Batches: epoch e visits X in the order ``generator(fold_in(key, 2*e)).permutation(n)``;
        batch b draws its random numbers from ``fold_in(fold_in(key, 2*e + 1), b)``, so a run
        resumed at start_epoch with the returned params / opt_state / chain continues exactly.
        PCD drops the last partial batch (its chain needs a fixed batch size) and, unless given
        a chain, starts it from the first batch's hidden samples.
    monitor: an optional (n_m, n_visible) array evaluated after each epoch: its mean-field
        reconstruction error and (Bernoulli) mean pseudo-likelihood go into the history.
    callback(epoch, FitResult): after each epoch (epoch counts from 1), with copies.
    Under MPI (``mpiexec -n N``, see ``dlkit.distributed``; CD only, host arrays): every rank
        calls fit alike; the ranks are checked to agree (data shape, batch size, epochs, key,
        params) and start from rank 0's params and opt_state; each batch is split across the
        ranks (``distributed.shard``), each rank drawing the rows of the batch's random
        numbers that one process would give its rows, and the CD statistics are averaged over
        ranks, weighted by rows, in one fused allreduce with the batch's reconstruction error
        (so N ranks give one process's params to float32 rounding); the built-in SGD then runs as
        ``weight_decay`` + ``optim.sgd`` (the fused kernel's arithmetic).  Every rank ends
        with the same params; only rank 0 logs.
    Returns FitResult(params, opt_state, chain, history) with history lists "epoch",
    "recon_error" (mean of the batches' CD reconstruction errors; None for PCD), "seconds", and
    "monitor_recon_error", "monitor_pseudo_likelihood" when monitor is given.

    Example:
        >>> import numpy as np
        >>> from dlkit import rbm, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> params = rbm.init(random.key(0), 6, 4, data=X)
        >>> result = rbm.fit(params, X, random.key(2), epochs=3, batch_size=10)
        >>> result.history["epoch"], result.params["W"].shape
        ([1, 2, 3], (6, 4))
    """
    what = "rbm.fit"
    gaussian = _visible_kind(visible)
    W, vb, hb = check_params(params, what)
    k = _k(k, what)
    batch_size = chk.positive_int(batch_size, f"{what} batch_size")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"{what}: epochs must be an int >= 0, got {epochs!r}")
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, (int, np.integer)) \
            or not 0 <= start_epoch <= epochs:
        raise ValueError(f"{what}: start_epoch must be an int in [0, epochs], got "
                         f"{start_epoch!r}")
    l2 = _number(weight_decay, "weight_decay")
    l1 = _number(l1, "l1")
    fused = optimizer is None
    if fused:
        if not callable(lr):
            _number(lr, "lr")
        mom0 = _number(momentum, "momentum")
        mom1 = mom0 if final_momentum is None else _number(final_momentum, "final_momentum")
    elif not hasattr(optimizer, "update"):
        raise TypeError(f"{what}: optimizer must be a dlkit optimizer (optim.sgd(...), "
                        f"optim.adam(...), ...), got {type(optimizer).__name__}")
    X = _placed_data(X, W, what, gaussian, "X")
    world = distributed.setup()
    if monitor is not None:
        monitor = _placed_data(monitor, W, what, gaussian, "monitor")
    n = len(X)
    n_batches = n // batch_size if persistent else -(-n // batch_size)
    if n_batches < 1:
        raise ValueError(f"{what}: PCD needs at least one full batch of {batch_size} rows, "
                         f"X has {n}")
    if chain is not None:
        if not persistent:
            raise ValueError(f"{what}: a chain was given but persistent=False (CD keeps none)")
        chain = _chain(chain, batch_size, W.shape[1], W, what)
    # the fused CPU kernel updates params and opt_state in place: on private copies, so the
    # caller's arrays stay as they are.  On the device nothing is updated in place.
    on_dev = type(W) is not np.ndarray
    in_place = fused and not on_dev and world.size == 1
    params = {"W": W.copy(), "vbias": vb.copy(), "hbias": hb.copy()} if in_place else \
        {"W": W, "vbias": vb, "hbias": hb}
    opt = optim.sgd(1.0, momentum=mom0) if fused else optimizer
    if opt_state is None:
        opt_state = opt.init(params)
    else:
        if fused:
            _sgd_state(opt_state, params, what)
        if in_place:
            opt_state = {s: (v if s == "step" else {n_: np.array(a, copy=True)
                                                     for n_, a in v.items()})
                         for s, v in opt_state.items()}
    if world.size > 1:
        params, opt_state = _agree(params, opt_state, X, key, batch_size, epochs, on_dev,
                                   persistent)
        log = log if world.rank == 0 else None
        progress = progress and world.rank == 0
    step = int(opt_state["step"])
    dtype = W.dtype
    H, V = W.shape[1], W.shape[0]
    history = {"epoch": [], "recon_error": [], "seconds": []}
    if monitor is not None:
        history.update(monitor_recon_error=[], monitor_pseudo_likelihood=[])
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=(epochs - start_epoch) * n_batches, desc=desc, leave=False,
                   mininterval=0.5)
    empty = np.empty((0, H), dtype)
    for e in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = generator(fold_in(key, 2 * e)).permutation(n)
        if on_dev:
            order = device.to_device(order)     # device X: its rows gathered on the device
        bkey = fold_in(key, 2 * e + 1)
        mu = (mom0 if e < momentum_switch else mom1) if fused else None
        if fused and not in_place:        # the recipe as optim.sgd (device, MPI)
            opt = optim.sgd(lr if callable(lr) else optim.constant(lr), momentum=mu)
        err_sum = 0.0
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb = _rows(X, idx if world.size == 1 else distributed.shard(idx))
            if persistent and chain is None:
                chain = _sample_hidden(params["W"], params["hbias"], xb,
                                       fold_in(key, 1 << 30))
            if in_place:
                N = len(xb)
                uh, nv = _draws(fold_in(bkey, b), k, N, H, V, dtype, sample_visible, gaussian)
                rate = float(lr(step)) if callable(lr) else lr
                v = opt_state["v"]
                new_chain, _, err = _kernels(params["W"]).rbm_cd_sgd(
                    xb, params["W"], params["vbias"], params["hbias"],
                    chain if persistent else empty, k, persistent, gaussian,
                    bool(sample_visible), uh, nv, rate, mu, l2, l1, v["W"], v["vbias"],
                    v["hbias"])
                chain = new_chain if persistent else None
                step += 1
                if not persistent:
                    err_sum += float(err.sum()) / N
            else:
                if world.size == 1:
                    grads, chain, stats = _cd(params["W"], params["vbias"], params["hbias"],
                                              xb, fold_in(bkey, b), k,
                                              chain if persistent else None, sample_visible,
                                              gaussian)
                else:
                    start = sum(distributed.shares(len(idx), world.size)[:world.rank])
                    grads, stats = _cd_mean(params, xb, start, len(idx), fold_in(bkey, b), k,
                                            sample_visible, gaussian)
                grads = _decayed(grads, params, l2, l1)
                if getattr(opt, "step", None) is not None:   # update + apply in one pass
                    params, opt_state = opt.step(grads, opt_state, params)
                else:
                    updates, opt_state = opt.update(grads, opt_state, params)
                    params = optim.apply_updates(params, updates)
                if not persistent:
                    err_sum += stats["recon_error"]
            if bar is not None:
                bar.update(1)
                if not persistent and b % 50 == 49:
                    bar.set_postfix_str(f"epoch {e + 1} recon {err_sum / (b + 1):.2f}",
                                        refresh=False)
        if in_place:
            opt_state["step"] = np.array(step, np.int64)
        history["epoch"].append(e + 1)
        history["recon_error"].append(None if persistent else err_sum / n_batches)
        history["seconds"].append(time.perf_counter() - t0)
        msg = f"{desc} epoch {e + 1}/{epochs}"
        if not persistent:
            msg += f": recon error {err_sum / n_batches:.3f}"
        if monitor is not None:
            r = reconstruction_error(params, monitor, visible=visible)
            history["monitor_recon_error"].append(r)
            pl = None if gaussian else float(np.mean(_to_host(pseudo_likelihood(
                params, monitor, fold_in(key, (1 << 30) + 1 + e))), dtype=np.float64))
            history["monitor_pseudo_likelihood"].append(pl)
            msg += f" | monitor recon {r:.3f}" + ("" if pl is None else f" pseudo-LL {pl:.2f}")
            if bar is not None:
                bar.set_postfix_str(f"epoch {e + 1} recon {r:.2f}"
                                    + ("" if pl is None else f" PL {pl:.1f}"), refresh=False)
        msg += f" | {history['seconds'][-1]:.2f} s"
        if log is not None:
            if bar is not None:
                with bar.external_write_mode():     # the message above the bar, not inside it
                    log(msg)
            else:
                log(msg)
        if callback is not None:
            import copy
            mine = copy.deepcopy if in_place else (lambda a: a)     # device: never in place
            callback(e + 1, FitResult(mine(params), mine(opt_state),
                                      None if chain is None else mine(chain),
                                      copy.deepcopy(history)))
    if bar is not None:
        bar.close()
    return FitResult(params, opt_state, chain, history)
