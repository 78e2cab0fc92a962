"""Optimizers in the optax style, over parameter trees.

    opt = optim.adam(1e-3)                 # or sgd, adamw, rmsprop
    state = opt.init(params)               # a tree of arrays: {"step": int64 (), "m": ..., ...}
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)
    params, state = opt.step(grads, state, params)    # the same two lines in one pass

Nothing is modified in place: update returns new arrays, so a caller's old params and state
survive any error.  grads, state and params are checked for matching keys, shapes and dtypes
before any kernel runs.  ``lr`` is a number or a schedule ``fn(step) -> lr`` (step = updates
done so far): ``constant``, ``step_decay``, ``cosine``.  ``l2`` adds l2*p to the gradient
(classic weight decay), ``l1`` adds l1*sign(p); AdamW's ``weight_decay`` is decoupled.

Params, grads and state on the GPU (``dlkit.device.to_device``) run kernels.cuda.optim (the
backend follows the arrays); the step counter stays a host scalar, so an update makes no host
copies.
"""
import math
from typing import Any, Callable, NamedTuple, TypeAlias

import numpy as np

from . import device, tree
from .tree import Tree

Schedule: TypeAlias = Callable[[int], float]
"""A learning-rate schedule: ``fn(step) -> lr``, step = the number of updates done so far."""


class Optimizer(NamedTuple):
    """An optimizer: a NamedTuple of pure functions and its settings (optax's interface).

    ``init(params) -> state``; ``update(grads, state, params) -> (updates, state)``;
    ``step(grads, state, params) -> (params, state)``, update and apply_updates fused
    (optional: a hand-made Optimizer may leave it None, and train.fit then uses update +
    apply_updates).  ``name`` and ``hyperparams`` describe it (checkpoints and logs record
    them).  state is a tree of arrays: ``{"step": int64 (), slot: tree like params, ...}``.

    Example:
        >>> import numpy as np
        >>> from dlkit import optim
        >>> params = {"fc": {"W": np.ones(2, np.float32)}}
        >>> opt = optim.sgd(0.1)
        >>> state = opt.init(params)
        >>> grads = {"fc": {"W": np.array([1.0, -1.0], np.float32)}}
        >>> updates, state = opt.update(grads, state, params)
        >>> optim.apply_updates(params, updates)["fc"]["W"], int(state["step"])
        (array([0.9, 1.1], dtype=float32), 1)
    """
    init: Callable
    update: Callable
    name: str
    hyperparams: dict
    step: Callable = None
    # learning_rate(step) -> the learning rate the update of that step (0-based, counted by the
    # state's "step") uses; None where unknown.  train.fit logs it (history["lr"], CSV, and
    # TensorBoard).
    learning_rate: Callable = None


# ---------------------------------------------------------------- learning-rate schedules
def constant(lr: float) -> Schedule:
    """The schedule that is ``lr`` at every step (what a plain number ``lr`` means).

    Example:
        >>> from dlkit import optim
        >>> optim.constant(0.1)(1000)
        0.1
    """
    return lambda step: lr


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """The schedule ``lr * gamma ** (step // step_size)`` (torch's StepLR, counted in updates).

    Example:
        >>> from dlkit import optim
        >>> s = optim.step_decay(1.0, 100, gamma=0.5)
        >>> s(0), s(99), s(100), s(250)
        (1.0, 1.0, 0.5, 0.25)
    """
    return lambda step: lr * gamma ** (step // step_size)


def cosine(lr: float, total_steps: int, final_lr: float = 0.0,
           warmup_steps: int = 0) -> Schedule:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``final_lr`` at
    ``total_steps`` (and ``final_lr`` after it).

    Example:
        >>> from dlkit import optim
        >>> s = optim.cosine(1.0, 100, warmup_steps=10)
        >>> s(0), s(9), s(55), s(100)
        (0.1, 1.0, 0.5, 0.0)
    """
    def schedule(step):
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_lr + 0.5 * (lr - final_lr) * (1 + math.cos(math.pi * t))
    return schedule


def _schedule(lr):
    if callable(lr):
        return lr
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"learning rate must be a positive number or a schedule, got {lr!r}")
    return constant(float(lr))


# ---------------------------------------------------------------- checks and plumbing
def _check_like(what, tree_, params, path=""):
    """tree_ must have params' nested keys, and arrays of the same shapes and dtypes."""
    if isinstance(params, dict):
        if not isinstance(tree_, dict) or tree_.keys() != params.keys():
            fp = tree.flatten(params)
            ft = tree.flatten(tree_) if isinstance(tree_, dict) else {}
            missing = sorted(path + k for k in fp.keys() - ft.keys())
            extra = sorted(path + k for k in ft.keys() - fp.keys())
            raise ValueError(f"{what} do not match params: missing {missing}, extra {extra}")
        for k in params:
            _check_like(what, tree_[k], params[k], f"{path}{k}/")
        return
    a, p = tree_, params
    is_array = isinstance(a, np.ndarray) or device.is_device_array(a)
    if not is_array or a.shape != p.shape or a.dtype != p.dtype:
        got = f"{a.shape} {a.dtype}" if is_array else type(a).__name__
        raise ValueError(f"{what}[{path[:-1]!r}]: expected shape {p.shape} dtype {p.dtype}, "
                         f"got {got}")


def _same_layout(params, trees):
    """Fast path of the checks: every tree in ``trees`` has params' keys, shapes and dtypes
    (one walk for all of them; _check_like explains a failure)."""
    if isinstance(params, dict):
        keys = params.keys()
        return all(isinstance(t, dict) and t.keys() == keys for t in trees) and \
            all(_same_layout(params[k], [t[k] for t in trees]) for k in keys)
    shape, dtype = params.shape, params.dtype
    return all((type(t) is np.ndarray or device.is_device_array(t)) and t.shape == shape
               and t.dtype == dtype for t in trees)


def _leaves(params, trees, out):
    """Append (p, *tree_leaves) for each leaf of params, in the key order of params."""
    if isinstance(params, dict):
        for k in params:
            _leaves(params[k], [t[k] for t in trees], out)
    else:
        out.append((params, *trees))
    return out


def _rebuild(params, it):
    """A tree shaped as params whose leaves come, in order, from the iterator ``it``."""
    if isinstance(params, dict):
        return {k: _rebuild(params[k], it) for k in params}
    return next(it)


def _check_state(state, params, slots, name):
    if not isinstance(state, dict) or set(state) != {"step", *slots}:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{name} state must be a dict with keys {sorted(['step', *slots])} "
                         f"(from opt.init); got {got}")
    for s in slots:
        _check_like(f"{name} state[{s!r}]", state[s], params)


def _make(name, slots, kernel, hyper, lr):
    """An Optimizer whose per-array kernel maps (K, g, p, *slot_arrays, lr, step, apply) to
    (u or p + u, *new_slot_arrays) on flat arrays; K is kernels.cpu.optim or kernels.cuda.optim,
    whichever matches where the arrays live."""
    schedule = _schedule(lr)

    def init(params):
        state = {s: tree.map(device.zeros_like, params) for s in slots}
        state["step"] = np.zeros((), np.int64)
        return state

    def run(grads, state, params, apply):
        if not (isinstance(state, dict) and state.keys() == {"step", *slots}
                and _same_layout(params, [grads, *(state[s] for s in slots)])):
            _check_like("grads", grads, params)         # raises, naming the problem
            _check_state(state, params, slots, name)
        step = int(state["step"])
        rate = float(schedule(step))
        outs = []
        for p, g, *ss in _leaves(params, [grads, *(state[s] for s in slots)], []):
            K = device.kernels("optim", p, g, *ss, what=name)
            o = kernel(K, g.reshape(-1), p.reshape(-1), *(a.reshape(-1) for a in ss), rate,
                       step + 1, apply)
            outs.append([a.reshape(p.shape) for a in o])
        new = {s: _rebuild(params, (o[i] for o in outs)) for i, s in enumerate(slots, 1)}
        new["step"] = np.array(step + 1, np.int64)
        return _rebuild(params, (o[0] for o in outs)), new

    def update(grads, state, params):
        return run(grads, state, params, False)

    def step(grads, state, params):
        return run(grads, state, params, True)

    return Optimizer(init, update, name, dict(hyper, lr=lr if not callable(lr) else "schedule"),
                     step, schedule)


def apply_updates(params: Tree, updates: Tree) -> Tree:
    """``params + updates``, leaf by leaf (new arrays; numpy or device, where they live).

    Raises:
        ValueError: updates whose keys, shapes or dtypes differ from params'.

    Example:
        >>> import numpy as np
        >>> from dlkit import optim
        >>> optim.apply_updates({"W": np.ones(2)}, {"W": np.array([0.5, -0.5])})
        {'W': array([1.5, 0.5])}
    """
    _check_like("updates", updates, params)
    return tree.map(_add, params, updates)


def _add(p, u):
    if type(p) is np.ndarray and type(u) is np.ndarray:
        return p + u
    K = device.kernels("optim", p, u, what="apply_updates")
    return K.apply_update(p.reshape(-1), u.reshape(-1)).reshape(p.shape)


# ---------------------------------------------------------------- the optimizers
def sgd(lr: float | Schedule, momentum: float = 0.0, nesterov: bool = False, l2: float = 0.0,
        l1: float = 0.0) -> Optimizer:
    """SGD with optional (Nesterov) momentum, as torch.optim.SGD; state slot ``v``.

    Args:
        momentum: the momentum factor (0: plain SGD).
        nesterov: Nesterov momentum.
        lr, l2, l1: as for ``adam``.

    Returns:
        An ``Optimizer``; params and errors as for ``adam``.

    Example:
        >>> import numpy as np
        >>> from dlkit import optim
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"W": np.zeros(2, np.float32)}
        >>> params, state = opt.step({"W": np.ones(2, np.float32)}, opt.init(params), params)
        >>> params["W"]
        array([-0.1, -0.1], dtype=float32)
    """
    def kernel(K, g, p, v, rate, step, apply):
        return K.sgd_update(g, p, v, rate, momentum, nesterov, l2, l1, apply)
    return _make("sgd", ("v",), kernel,
                 dict(momentum=momentum, nesterov=nesterov, l2=l2, l1=l1), lr)


def adam(lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         l2: float = 0.0, l1: float = 0.0, weight_decay: float = 0.0,
         name: str = "adam") -> Optimizer:
    """Adam (Kingma & Ba) as torch.optim.Adam; state slots ``m`` and ``v``.

    Args:
        lr: a positive number or a schedule ``fn(step) -> lr`` (``constant``,
            ``step_decay``, ``cosine``).
        b1, b2: the decay rates of the first and second moment estimates.
        eps: added to the root of the second moment.
        l2: adds ``l2 * p`` to the gradient (classic, coupled weight decay).
        l1: adds ``l1 * sign(p)`` to the gradient.
        weight_decay: > 0 gives AdamW's decoupled decay ``p -= lr * weight_decay * p``.
        name: the optimizer's name (as recorded in checkpoints).

    Returns:
        An ``Optimizer`` over float32/float64 params (numpy or CUDA device).

    Raises:
        ValueError: a learning rate that is neither a positive number nor a callable.

    Example:
        >>> import numpy as np
        >>> from dlkit import optim
        >>> opt = optim.adam(1e-3)
        >>> params = {"W": np.zeros(2, np.float32)}
        >>> updates, state = opt.update({"W": np.array([2.0, -3.0], np.float32)},
        ...                             opt.init(params), params)
        >>> np.round(updates["W"], 6)           # the first step moves by lr * sign(g)
        array([-0.001,  0.001], dtype=float32)
    """
    def kernel(K, g, p, m, v, rate, step, apply):
        return K.adam_update(g, p, m, v, rate, b1, b2, eps, step, weight_decay, l2, l1, apply)
    return _make(name, ("m", "v"), kernel,
                 dict(b1=b1, b2=b2, eps=eps, l2=l2, l1=l1, weight_decay=weight_decay), lr)


def adamw(lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2) -> Optimizer:
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as torch.optim.AdamW.

    The same as ``adam(lr, b1, b2, eps, weight_decay=weight_decay, name="adamw")``.

    Example:
        >>> from dlkit import optim
        >>> opt = optim.adamw(1e-3)
        >>> opt.name, opt.hyperparams["weight_decay"]
        ('adamw', 0.01)
    """
    return adam(lr, b1, b2, eps, weight_decay=weight_decay, name="adamw")


def rmsprop(lr: float | Schedule = 1e-2, rho: float = 0.99, eps: float = 1e-8,
            momentum: float = 0.0, l2: float = 0.0, l1: float = 0.0) -> Optimizer:
    """RMSprop as torch.optim.RMSprop (alpha=rho, centered=False); state slots ``s``, ``b``.

    Args:
        rho: the decay rate of the mean square.
        eps: added to the root mean square.
        momentum: the momentum factor.
        lr, l2, l1: as for ``adam``.

    Returns:
        An ``Optimizer``; params and errors as for ``adam``.

    Example:
        >>> from dlkit import optim
        >>> optim.rmsprop(1e-3).name
        'rmsprop'
    """
    def kernel(K, g, p, s, b, rate, step, apply):
        return K.rmsprop_update(g, p, s, b, rate, rho, eps, momentum, l2, l1, apply)
    return _make("rmsprop", ("s", "b"), kernel,
                 dict(rho=rho, eps=eps, momentum=momentum, l2=l2, l1=l1), lr)


def get(name: str, lr: float | Schedule, **kw: Any) -> Optimizer:
    """An optimizer by name (sgd, adam, adamw, rmsprop), built with ``lr`` and ``kw``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).

    Example:
        >>> from dlkit import optim
        >>> optim.get("sgd", 0.1, momentum=0.9).hyperparams["momentum"]
        0.9
    """
    table = {"sgd": sgd, "adam": adam, "adamw": adamw, "rmsprop": rmsprop}
    if name not in table:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(table)}")
    return table[name](lr, **kw)
