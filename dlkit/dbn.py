"""Deep belief nets: a stack of RBMs, bottom first, as a plain list of RBM param dicts
(``dlkit.rbm``); layer l's hidden units are layer l+1's visible units.

    init(key, sizes, *, std=0.01, data=None, visible="bernoulli", dtype=np.float32) -> stack
        sizes = [784, 500, 500] gives two RBMs, 784-500 and 500-500; ``data`` sets the first
        layer's visible bias as rbm.init does
    check(stack) -> [(n_visible, n_hidden), ...]   validates every layer and that each layer's
        hidden size equals the next layer's visible size (raises ValueError naming the layers)
    sizes(stack) -> [784, 500, 500]
    transform(stack, v, *, n_layers=None, visible=...) -> P(h|v) propagated up through the
        first n_layers layers (all by default), mean field
    pretrain(stack, X, key, *, epochs=10, ...) -> (stack, history)
        greedy layer-wise training: layer 0 by CD-k / PCD-k on X, layer l on the hidden
        probabilities of layer l-1 (Hinton, Osindero & Teh 2006; Hinton & Salakhutdinov 2006)
    to_mlp(stack, n_classes, key, *, flatten=False) -> (model, params)
        an ``nn.serial`` MLP "fc1" .. "fcL" = Dense(n_hidden_l, "sigmoid") initialised from the
        RBMs (W, hbias) and a fresh "out" = Dense(n_classes) whose logits go to
        ``losses.softmax_cross_entropy`` (the softmax output layer), for fine-tuning by
        backpropagation, e.g. with ``dlkit.train.fit``
    generate(stack, key, n_samples, *, n_steps=1000, init=None, visible=...) -> (v, v_top)
        block Gibbs sampling in the top RBM (from random binary states, or from the up-pass of
        ``init`` data), then one mean-field down-pass through the lower layers' generative
        weights: v (n_samples, n_visible) visible means, v_top the top RBM's visible samples

The first layer's visible units may be Gaussian (``visible="gaussian"``); upper layers are
Bernoulli (their data are hidden probabilities).  Nothing is modified in place.

On the device: a stack moved with ``dlkit.device.to_device`` runs everything above on
kernels.cuda (``rbm``'s device path): host data given to ``pretrain`` or ``generate`` is
uploaded once, every layer's data stays on the device, ``transform`` and ``generate`` return
device arrays, and ``to_mlp`` returns device params (the fc layers share the RBMs' device
arrays, which nothing updates in place; "out" is initialised on the host and uploaded).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, TypeAlias

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _check as chk
from . import device, nn, rbm
from . import layers as L
from .random import Key, fold_in, generator

Stack: TypeAlias = list[dict[str, Any]]
"""A DBN: a list of RBM param dicts (``dlkit.rbm.Params``), bottom layer first."""


def check(stack: Stack, what: str = "dbn") -> list[tuple[int, int]]:
    """Validate a stack; returns the per-layer (n_visible, n_hidden).

    Raises:
        TypeError: not a non-empty list, mixed dtypes, or host and device layers mixed.
        ValueError: a bad layer, or a layer whose hidden size is not the next visible size.

    Example:
        >>> import numpy as np
        >>> from dlkit import dbn, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> stack = dbn.init(random.key(0), [6, 5, 3], data=X)
        >>> dbn.check(stack)
        [(6, 5), (5, 3)]
    """
    if not isinstance(stack, (list, tuple)) or not stack:
        raise TypeError(f"{what}: a DBN is a non-empty list of RBM param dicts, got "
                        f"{type(stack).__name__}" + ("" if stack else " (empty)"))
    shapes = []
    for i, p in enumerate(stack):
        W, _, _ = rbm.check_params(p, f"{what} layer {i}")
        shapes.append(W.shape)
        if i and W.dtype != stack[0]["W"].dtype:
            raise TypeError(f"{what}: layer {i} is {W.dtype} but layer 0 is "
                            f"{stack[0]['W'].dtype}; use one dtype for the whole stack")
        if i and device.on_device(W) != device.on_device(stack[0]["W"]):
            raise TypeError(f"{what}: layer {i} is on the "
                            f"{'device' if device.on_device(W) else 'host'} but layer 0 is "
                            "not; move the whole stack with dlkit.device.to_device")
    for i in range(len(shapes) - 1):
        if shapes[i][1] != shapes[i + 1][0]:
            raise ValueError(
                f"{what}: layer sizes do not chain: layer {i} has {shapes[i][1]} hidden units "
                f"(W {shapes[i]}) but layer {i + 1} has {shapes[i + 1][0]} visible units "
                f"(W {shapes[i + 1]}); layer {i + 1}'s W must have shape "
                f"({shapes[i][1]}, n_hidden)")
    return shapes


def sizes(stack: Stack) -> list[int]:
    """The layer sizes ``[n_visible, n_hidden_1, ..., n_hidden_L]`` of a (validated) stack.

    Example:
        >>> import numpy as np
        >>> from dlkit import dbn, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> stack = dbn.init(random.key(0), [6, 5, 3], data=X)
        >>> dbn.sizes(stack)
        [6, 5, 3]
    """
    shapes = check(stack)
    return [shapes[0][0]] + [s[1] for s in shapes]


def init(key: Key, sizes_: Sequence[int], *, std: float = 0.01, data: NDArray | None = None,
         visible: str = "bernoulli", dtype: DTypeLike = np.float32) -> Stack:
    """A new stack for layer sizes [n_visible, n_hidden_1, ..., n_hidden_L] (L >= 1).

    Layer i is ``rbm.init(fold_in(key, i), ...)``; ``data`` (N, n_visible) sets the first
    layer's visible bias, ``visible`` its visible units ("bernoulli" or "gaussian").

    Raises:
        ValueError: fewer than two sizes, or as ``rbm.init``.

    Example:
        >>> from dlkit import dbn, random
        >>> stack = dbn.init(random.key(0), [784, 500, 250])
        >>> [p["W"].shape for p in stack]
        [(784, 500), (500, 250)]
    """
    if not isinstance(sizes_, (list, tuple)) or len(sizes_) < 2:
        raise ValueError(f"dbn.init: sizes must list at least two layer sizes "
                         f"[n_visible, n_hidden, ...], got {sizes_!r}")
    stack = []
    for i in range(len(sizes_) - 1):
        stack.append(rbm.init(fold_in(key, i), sizes_[i], sizes_[i + 1], std=std,
                              data=data if i == 0 else None,
                              visible=visible if i == 0 else "bernoulli", dtype=dtype))
    return stack


def transform(stack: Stack, v: NDArray, *, n_layers: int | None = None,
              visible: str = "bernoulli", batch_size: int = 10000) -> NDArray:
    """Mean-field up-pass: P(h|v) through the first ``n_layers`` layers (default all).

    v (N, n_visible) -> (N, n_hidden of layer n_layers), in rows of ``batch_size`` on the host.

    Example:
        >>> import numpy as np
        >>> from dlkit import dbn, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> stack = dbn.init(random.key(0), [6, 5, 3], data=X)
        >>> dbn.transform(stack, X).shape, dbn.transform(stack, X, n_layers=1).shape
        ((20, 3), (20, 5))
    """
    check(stack, "dbn.transform")
    n = len(stack) if n_layers is None else int(n_layers)
    if not 0 <= n <= len(stack):
        raise ValueError(f"dbn.transform: n_layers must be in [0, {len(stack)}], got {n_layers}")
    if n == 0:
        return v if chk.is_array(v) else np.asarray(v)
    if device.on_device(stack[0]["W"]):         # one pass: the device holds the whole set
        for i in range(n):
            v = rbm.transform(stack[i], v, visible=visible if i == 0 else "bernoulli")
        return v
    v = np.asarray(v)
    out = []
    for s in range(0, max(1, len(v)), batch_size):
        h = v[s:s + batch_size]
        for i in range(n):
            h = rbm.transform(stack[i], h, visible=visible if i == 0 else "bernoulli")
        out.append(h)
    return np.concatenate(out) if len(out) > 1 else out[0]


def pretrain(stack: Stack, X: NDArray, key: Key, *, epochs: int | Sequence[int] = 10,
             monitor_size: int = 1000, visible: str = "bernoulli", start_layer: int = 0,
             callback: Callable[[int, "rbm.FitResult"], Any] | None = None,
             **fit_options: Any) -> tuple[Stack, list[dict]]:
    """Greedy layer-wise pretraining; returns (new stack, history).

    Layer l is trained by ``rbm.fit`` for ``epochs`` epochs (an int, or one per layer) on the
    hidden probabilities of the trained layers below (layer 0 on X), with key
    ``fold_in(key, l)``; ``fit_options`` go to ``rbm.fit`` for every layer (batch_size, k,
    persistent, lr, momentum, weight_decay, optimizer, sample_visible, progress, log, ...;
    its defaults are Hinton's recipe).  ``optimizer`` may also be a function
    ``fn(layer_index) -> optimizer``.  The first ``monitor_size`` rows of each layer's data are
    its monitor set (reconstruction error and pseudo-likelihood after every epoch).
    start_layer: layers below it are taken as trained already (resuming: they are kept and
    only used to transform the data).  callback(l, fit_result) runs after each layer trained.
    history: one ``rbm.fit`` history per layer trained.

    Example:
        >>> import numpy as np
        >>> from dlkit import dbn, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> stack = dbn.init(random.key(0), [6, 5, 3], data=X)
        >>> trained, history = dbn.pretrain(stack, X, random.key(2), epochs=2, batch_size=10)
        >>> len(trained), [h["epoch"] for h in history]
        (2, [[1, 2], [1, 2]])
    """
    check(stack, "dbn.pretrain")
    n_layers = len(stack)
    ep = list(epochs) if isinstance(epochs, (list, tuple)) else [epochs] * n_layers
    if len(ep) != n_layers:
        raise ValueError(f"dbn.pretrain: epochs lists {len(ep)} values for {n_layers} layers")
    if isinstance(start_layer, bool) or not isinstance(start_layer, (int, np.integer)) \
            or not 0 <= start_layer <= n_layers:
        raise ValueError(f"dbn.pretrain: start_layer must be an int in [0, {n_layers}], got "
                         f"{start_layer!r}")
    for bad in ("monitor", "desc", "chain", "opt_state", "start_epoch", "callback"):
        if bad in fit_options:
            raise TypeError(f"dbn.pretrain: {bad!r} is set per layer by pretrain")
    optimizer = fit_options.pop("optimizer", None)
    if device.on_device(stack[0]["W"]):     # host X for a device stack: checked, copied up once
        X = rbm._placed_data(X, stack[0]["W"], "dbn.pretrain", visible == "gaussian", "X")
    data = transform(stack, X, n_layers=start_layer, visible=visible)
    new, history = [dict(p) for p in stack[:start_layer]], []
    for l in range(start_layer, n_layers):
        vis = visible if l == 0 else "bernoulli"
        opt = optimizer(l) if callable(optimizer) and not hasattr(optimizer, "update") \
            else optimizer
        res = rbm.fit(stack[l], data, fold_in(key, l), epochs=ep[l], optimizer=opt,
                      visible=vis, monitor=data[:monitor_size] if monitor_size else None,
                      desc=f"rbm {l + 1}/{n_layers}", **fit_options)
        new.append(res.params)
        history.append(res.history)
        if callback is not None:
            callback(l, res)
        if l + 1 < n_layers:
            data = transform([res.params], data, visible=vis)
    return new, history


def to_mlp(stack: Stack, n_classes: int, key: Key, *,
           flatten: bool = False) -> tuple[L.Layer, dict[str, dict[str, Any]]]:
    """(model, params): Dense+sigmoid layers from the RBMs and a fresh Dense(n_classes) output.

    The layers are named "fc1".."fcL" (W = rbm W, b = rbm hbias, copied) and "out" (Dense's
    own init, glorot_uniform W and zero b, from ``key``).  With flatten=True a Flatten layer comes
    first, so (N, 28, 28) images go straight in.  The model outputs logits; train it with
    ``losses.softmax_cross_entropy``.  The RBMs' visible biases are not used (a
    discriminative net has none).

    Example:
        >>> import numpy as np
        >>> from dlkit import dbn, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> stack = dbn.init(random.key(0), [6, 5, 3], data=X)
        >>> model, params = dbn.to_mlp(stack, 10, random.key(3))
        >>> sorted(params), params["out"]["W"].shape
        (['fc1', 'fc2', 'out'], (3, 10))
        >>> model.forward(params, X)[0].shape
        (20, 10)
    """
    shapes = check(stack, "dbn.to_mlp")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 2:
        raise ValueError(f"dbn.to_mlp: n_classes must be an int >= 2, got {n_classes!r}")
    layers = [("flatten", L.Flatten())] if flatten else []
    for i, (_, h) in enumerate(shapes):
        layers.append((f"fc{i + 1}", L.Dense(h, activation="sigmoid")))
    out = L.Dense(int(n_classes))
    layers.append(("out", out))
    model = nn.serial(*layers)
    on_dev = device.on_device(stack[0]["W"])
    own = (lambda a: a) if on_dev else (lambda a: np.array(a, copy=True))
    params = {f"fc{i + 1}": {"W": own(p["W"]), "b": own(p["hbias"])}
              for i, p in enumerate(stack)}
    _, params["out"] = out.init(key, (shapes[-1][1],), stack[0]["W"].dtype)
    if on_dev:
        params["out"] = device.to_device(params["out"])
    return model, params


def generate(stack: Stack, key: Key, n_samples: int, *, n_steps: int = 1000,
             init: NDArray | None = None,
             visible: str = "bernoulli") -> tuple[NDArray, NDArray]:
    """Samples from the DBN's generative model.

    The top RBM runs ``n_steps`` of block Gibbs sampling from random binary visible states
    (P = 1/2), or from the up-pass of ``init`` (n_samples, n_visible) data; its visible sample
    then goes down through the lower layers as means, E[v_l | h_{l+1}].  Returns (v, top): the
    bottom-layer means (n_samples, n_visible) and the top RBM's visible samples.

    Example:
        >>> import numpy as np
        >>> from dlkit import dbn, random
        >>> X = (random.uniform(random.key(1), (20, 6)) < 0.5).astype(np.float32)
        >>> stack = dbn.init(random.key(0), [6, 5, 3], data=X)
        >>> v, top = dbn.generate(stack, random.key(2), 4, n_steps=10)
        >>> v.shape, top.shape
        ((4, 6), (4, 5))
    """
    shapes = check(stack, "dbn.generate")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < 1:
        raise ValueError(f"dbn.generate: n_samples must be an int >= 1, got {n_samples!r}")
    top = stack[-1]
    dtype = top["W"].dtype
    k_init, k_gibbs = fold_in(key, 0), fold_in(key, 1)
    on_dev = device.on_device(top["W"])
    if init is None:
        v = (generator(k_init).random((n_samples, shapes[-1][0])) < 0.5).astype(dtype)
        if on_dev:
            v = device.upload(v)
    else:
        init = init if chk.is_array(init) else np.asarray(init)
        if init.ndim != 2 or init.shape != (n_samples, shapes[0][0]):
            raise ValueError(f"dbn.generate: init must have shape ({n_samples}, "
                             f"{shapes[0][0]}) (n_samples, n_visible), got {init.shape}")
        if on_dev:
            init = rbm._placed_data(init, stack[0]["W"], "dbn.generate",
                                    visible == "gaussian", "init")
        v = transform(stack, init, n_layers=len(stack) - 1, visible=visible)
    top_vis = visible if len(stack) == 1 else "bernoulli"
    x, m, _ = rbm.gibbs(top, v, k_gibbs, n_steps, visible=top_vis)
    out = m if len(stack) == 1 else x
    for l in range(len(stack) - 2, -1, -1):
        out = rbm.visible_mean(stack[l], out, visible=visible if l == 0 else "bernoulli")
    return out, x
