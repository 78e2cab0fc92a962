"""fit: the training loop, with progress bar, validation, history, checkpoints and resume.

    result = fit(model, params, opt, (X, Y), key=key, epochs=10, batch_size=128,
                 val=(Xv, Yv), prepare=lambda xb: xb.reshape(len(xb), -1) / 255,
                 checkpoint_dir="runs/mlp", resume=True)
    result.params, result.opt_state, result.history

Each step: x = prepare(X[idx]), forward (train=True, key = fold_in(key, step)), loss,
backward, a finiteness check of loss and grads (FloatingPointError naming the step and the
tensor, raised before the update so params stay finite and no checkpoint is written for that
step or after), the optimizer update, then a finiteness check of the updated params
(FloatingPointError naming the step and the param; the params and optimizer state of before
the step are kept, no checkpoint is written).  batch_size < 1, epochs < 0 and an empty
training set are ValueErrors, raised before any work.  The batch order of epoch e is
``data.permutation(fold_in(key, EPOCH_SALT + e), n)``.  Checkpoints (``dlkit.checkpoint``)
store params, optimizer state, the step, epoch, batch and running epoch sums, so a run resumed
from any checkpoint ends bit for bit where an uninterrupted run with the same seed ends.

``evaluate(model, params, X, Y, loss_fn=..., prepare=...)`` -> (loss, accuracy, predictions).
``predict(model, params, X, prepare=...)`` -> the model's outputs (eval mode), batch by batch.

Models with state (``layers.base.StatefulLayer``, e.g. BatchNorm's running statistics): pass
the state init returned, ``fit(..., state=state)``, ``evaluate(..., state=)``, ``predict(...,
state=)``.  Each step's new state is adopted only when the step succeeds (a FloatingPointError
keeps params, optimizer state and model state of before the step); the optimizer, weight
decay, ``grad_transform`` and the finiteness checks never see it; checkpoints save it (its own
tree, ``state/...``) and resume restores it, bit for bit; validation and evaluate/predict run
in eval mode with the current state and never change it; ``result.state`` is the final state.
A stateful model without state=, or a stateless one with it, is a ValueError.
``fit(..., augment=fn)``: each training batch becomes ``fn(prepare(xb), key)`` (see
``dlkit.data.augment``); ``fit(..., callbacks=[...])``: ``Callback`` objects called after each
step and epoch, which may stop the run.

Data-parallel training: launched under ``mpiexec -n N`` (``dlkit.distributed``), every rank
calls fit with the same arguments; fit checks that the ranks agree (data size, sample shape,
batch size, epochs, key, params' names, shapes and dtypes) and that the batch has at least N
rows, starts from rank 0's params, optimizer state and model state, and each step computes the
gradient of the rank's share of the global batch of ``batch_size`` rows
(``distributed.epoch_shards``) and averages it over the ranks with one fused allreduce (weighted by rows, so the step is the
single-process step to float32 rounding; without dropout the params match a one-process run to
float32 tolerance, and two runs with the same N match bit for bit).  The loss and the count of
correct predictions ride in the same buffer, and so does a stateful model's new state, averaged
over the ranks weighted by rows as the gradients (its float leaves; other leaves, such as
counters, are each rank's own), so all ranks hold identical state.  Normalisation statistics
are therefore per-rank batch statistics (each rank normalises with its shard's mean and
variance, as PyTorch's plain BatchNorm under DistributedDataParallel), not synchronized
BatchNorm; only the running statistics are averaged.  A forward pass that draws random numbers
(dropout) uses ``fold_in(fold_in(key, step), rank)`` on each rank.  Only rank 0 logs, shows
progress and writes checkpoints; on resume rank 0 reads the checkpoint and sends it to every
rank, so a run resumes with any number of ranks.  Host arrays only (device params under MPI are
refused).

Device training: pass params moved with ``dlkit.device.to_device`` and the whole loop runs on
the GPU (the backend follows the arrays).  Each batch is prepared on the host and copied to
the device; per step the host reads back the loss, a one-byte finiteness flag of the
gradients and the outputs for the accuracy; checkpoints are written from host copies, and
the result's params and optimizer state stay on the device.  A model state goes with the params:
it is moved to the device with them (``dlkit.device.to_device``) and saved from host copies.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import device, distributed, logs, losses, nn, tree
from .optim import Optimizer, apply_updates
from .data import batching
from .layers.base import is_stateful
from .random import Key, fold_in

EPOCH_SALT = 1 << 20
AUGMENT_SALT = 1 << 40
"""The augmentation key of step s is ``fold_in(key, AUGMENT_SALT + s)``: distinct from the
dropout keys ``fold_in(key, s)`` (s < 2**40) and the epoch orders ``fold_in(key, EPOCH_SALT +
e)``."""


class Callback:
    """Base class for ``fit``'s callbacks (optional: any object with either method works).

    ``on_step_end(step, logs)`` runs after each optimizer step: ``step`` is the 0-based index
    of the step just taken (as in fit's error messages), ``logs`` a dict with ``loss`` (the
    batch's mean loss), ``accuracy`` (the batch's), ``lr`` (None where unknown), ``epoch``
    (1-based) and ``batch`` (0-based, within the epoch).  ``on_epoch_end(epoch, logs)`` runs
    after each epoch's validation: ``epoch`` is 1-based and ``logs`` the history row (the CSV's
    columns).  Returning True from either stops training: after that step (a checkpoint of it is
    written when checkpoint_dir is set, so the checkpoint and the result agree) or after that
    epoch (its usual epoch-end checkpoint).  Under MPI every rank calls its callbacks with the
    same (allreduced) values, so a callback that decides from them alone stops every rank at the
    same step.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, optim, random, train
        >>> class StopBelow(train.Callback):
        ...     def on_step_end(self, step, logs):
        ...         return logs["loss"] < 0.5
        >>> X = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
        >>> Y = (X[:, 0] > 0).astype(np.int64)
        >>> model = nn.serial(("fc", L.Dense(2)))
        >>> _, params = model.init(random.key(0), (2,))
        >>> r = train.fit(model, params, optim.adam(0.1), (X, Y), key=random.key(1), epochs=50,
        ...               batch_size=16, callbacks=[StopBelow()], progress=False,
        ...               log=lambda msg: None)
        >>> len(r.history["epoch"]) < 50
        True
    """

    def on_step_end(self, step: int, logs: dict) -> bool | None:
        """After step ``step`` (0-based); return True to stop.  The base does nothing."""
        return None

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        """After epoch ``epoch`` (1-based) with its history row; return True to stop."""
        return None


class _FitFields(NamedTuple):
    params: dict
    opt_state: dict
    history: dict


class FitResult(_FitFields):
    """What ``fit`` returns: the trained ``params``, the optimizer state ``opt_state`` (pass
    both to another ``fit`` to continue), ``history``, a dict of per-epoch lists (``epoch``,
    ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``...), and ``state``,
    the model state after the last step for a model with state (a ``StatefulLayer``: pass it
    to evaluate, predict or another fit), None for a stateless model.

    A NamedTuple of three fields, so ``params, opt_state, history = fit(...)`` keeps working;
    ``state`` is an attribute beside them (``_replace`` drops it)."""

    state: dict | None = None       # the class default; __new__ sets the instance's

    def __new__(cls, params, opt_state, history, state=None):
        result = super().__new__(cls, params, opt_state, history)
        result.state = state
        return result


def _model_state(model, state, what):
    """ValueError unless ``state`` is given exactly when ``model`` has state."""
    if is_stateful(model) and state is None:
        raise ValueError(f"{what}: the model has state (a StatefulLayer, e.g. BatchNorm's "
                         "running statistics); pass state=, the state its init returned "
                         "(out_shape, params, state = model.init(...)) or fit's result.state")
    if not is_stateful(model) and state is not None:
        raise ValueError(f"{what}: state= was given but the model has no state (a Layer, not "
                         "a StatefulLayer); leave state out")


def _forward_eval(model, params, x, state):
    """The model's outputs in eval mode (state, if any, used and not changed)."""
    if state is None:
        return model.forward(params, x, train=False)[0]
    return model.forward(params, x, state=state, train=False)[0]


def predictions(out: NDArray) -> NDArray[np.int64]:
    """Class predictions from model outputs: argmax of (N, C) logits, or logit > 0 for (N,)
    / (N, 1) binary outputs.  Returns (N,) integer labels (host arrays only).

    Example:
        >>> import numpy as np
        >>> from dlkit import train
        >>> train.predictions(np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]))
        array([1, 0])
        >>> train.predictions(np.array([[-0.5], [0.5]]))
        array([0, 1])
    """
    if out.ndim == 2 and out.shape[1] > 1:
        return out.argmax(axis=1)
    return (out.reshape(-1) > 0).astype(np.int64)


def evaluate(model: nn.Layer, params: dict, X: NDArray, Y: NDArray, *,
             loss_fn: Callable[[Any, Any], tuple[float, Any]] = losses.softmax_cross_entropy,
             prepare: Callable[[NDArray], NDArray] | None = None,
             batch_size: int = 1000,
             state: dict | None = None) -> tuple[float, float, NDArray[np.int64]]:
    """Mean loss, accuracy and predictions of ``model`` on (X, Y), in eval mode (no dropout).

    Args:
        model: a ``Layer`` (e.g. ``nn.serial(...)``).
        params: its params (numpy, or on the device: batches are then copied up).
        X: (N, ...) inputs; Y: (N,) labels (or targets for ``loss_fn``).
        loss_fn: ``loss_fn(out, y) -> (loss, dout)``, as in ``dlkit.losses``.
        prepare: ``fn(X[idx]) -> model input``, e.g. scaling uint8 images to float32.
        batch_size: examples per forward pass.
        state: the model state of a ``StatefulLayer`` model (required for one, refused for a
            stateless model); used in eval mode, never changed.

    Returns:
        ``(loss, accuracy, predictions)``: floats and (N,) predicted labels.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, random, train
        >>> model = nn.serial(("fc", L.Dense(3)))
        >>> _, params = model.init(random.key(0), (4,))
        >>> X, Y = np.zeros((10, 4), np.float32), np.zeros(10, np.int64)
        >>> loss, acc, preds = train.evaluate(model, params, X, Y)
        >>> round(loss, 4), acc, preds.shape          # zero inputs: uniform logits
        (1.0986, 1.0, (10,))
    """
    _model_state(model, state, "evaluate")
    return _evaluate(model, params, X, Y, loss_fn, prepare, batch_size, {}, state)[:3]


def _evaluate(model, params, X, Y, loss_fn, prepare, batch_size, metrics, state=None):
    """evaluate, plus {name: row-weighted mean of fn(out, y) over the batches} of ``metrics``."""
    total, preds = 0.0, []
    sums = dict.fromkeys(metrics, 0.0)
    on_dev = device.on_device_tree(params)
    for xb, yb in batching.batches(X, Y, batch_size):
        x = prepare(xb) if prepare else xb
        if on_dev:
            x = device.to_device(x)
        out = _forward_eval(model, params, x, state)
        total += loss_fn(out, yb)[0] * len(xb)
        host_out = device.to_host(out)
        preds.append(predictions(host_out))
        for name, fn in metrics.items():
            sums[name] += float(fn(host_out, yb)) * len(xb)
    preds = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    return (total / max(1, len(X)), float(np.mean(preds == np.asarray(Y).reshape(-1))), preds,
            {name: v / max(1, len(X)) for name, v in sums.items()})


def predict(model: nn.Layer, params: dict, X: NDArray, *, batch_size: int = 1000,
            prepare: Callable[[NDArray], NDArray] | None = None,
            state: dict | None = None) -> NDArray:
    """The outputs of ``model`` for X in eval mode (``train=False``: no dropout), computed
    ``batch_size`` rows at a time and concatenated on the host: what ``model.forward(params,
    prepare(X[i:j]), train=False)`` gives batch by batch, bit for bit.

    Args:
        model: a ``Layer``.
        params: its params (numpy, or on the device: each batch is copied up and its outputs
            copied back, as in ``evaluate``).
        X: (N, ...) inputs, no labels.
        batch_size: rows per forward pass, an int >= 1 (the last batch may be smaller).
        prepare: ``fn(X[i:j]) -> model input``.
        state: the model state of a ``StatefulLayer`` model (required for one, refused for a
            stateless model); used in eval mode, never changed.

    Returns:
        (N, ...) host array of outputs (e.g. (N, C) logits; ``predictions`` turns them into
        labels).

    Raises:
        ValueError: a batch_size that is not an int >= 1, an empty X (0 rows: the output's
            trailing shape is not known without a forward pass), or state= missing for a
            stateful model / given for a stateless one.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, random, train
        >>> model = nn.serial(("fc", L.Dense(3)), ("drop", L.Dropout(0.5)))
        >>> _, params = model.init(random.key(0), (4,))
        >>> X = np.ones((10, 4), np.float32)
        >>> out = train.predict(model, params, X, batch_size=4)
        >>> out.shape, bool((out == model.forward(params, X, train=False)[0]).all())
        ((10, 3), True)
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise ValueError(f"predict: batch_size must be an int >= 1, got {batch_size!r}")
    if len(X) == 0:
        raise ValueError("predict: X is empty (0 samples); expected at least one row")
    _model_state(model, state, "predict")
    on_dev = device.on_device_tree(params)
    outs = []
    for i in range(0, len(X), batch_size):
        x = X[i:i + batch_size]
        x = prepare(x) if prepare else x
        if on_dev:
            x = device.to_device(x)
        out = _forward_eval(model, params, x, state)
        outs.append(np.asarray(device.to_host(out)))
    return np.concatenate(outs)


def _check_finite(loss, grads, step, epoch, batch):
    bad = None
    if not np.isfinite(loss):
        bad = "the loss"
    else:
        flat = tree.flatten(grads)
        if not all(type(g) is np.ndarray for g in flat.values()) and \
                device.all_finite(flat.values()):
            return                          # device grads: one flag for all, one byte back
        for name, g in flat.items():
            if not device.all_finite([g]):
                bad = f"the gradient of {name!r}"
                break
    if bad:
        raise FloatingPointError(f"non-finite value (NaN or Inf) in {bad} at step {step} "
                                 f"(epoch {epoch + 1}, batch {batch}); params were not updated")


def _check_updated(params, step, epoch, batch):
    """Raise if the update of ``step`` made any param non-finite (the caller keeps the params
    and optimizer state of before the step, and writes no checkpoint)."""
    flat = tree.flatten(params)
    if device.all_finite(flat.values()):
        return
    name = next(k for k, p in flat.items() if not device.all_finite([p]))
    raise FloatingPointError(f"non-finite value (NaN or Inf) in {name!r} after the update of "
                             f"step {step} (epoch {epoch + 1}, batch {batch}); the params and "
                             "optimizer state of before that step were kept, no checkpoint "
                             "was written")


_RESUME_META = ("key", "epoch", "batch", "sums", "history", "best", "since_best",
                "batch_size", "n_train")


def fit(model: nn.Layer, params: dict, opt: Optimizer, train: tuple[NDArray, NDArray], *,
        key: Key, epochs: int = 1, batch_size: int = 128, opt_state: dict | None = None,
        loss_fn: Callable[[Any, Any], tuple[float, Any]] = losses.softmax_cross_entropy,
        prepare: Callable[[NDArray], NDArray] | None = None,
        val: tuple[NDArray, NDArray] | None = None,
        grad_transform: Callable[[dict], dict] | None = None,
        checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int | None = None,
        keep: int | None = 3, resume: bool = False, early_stopping: int | None = None,
        monitor: str = "val_accuracy", progress: bool = True,
        log: Callable[[str], Any] = print, max_steps: int | None = None,
        csv_log: str | os.PathLike | None = None,
        tensorboard_dir: str | os.PathLike | None = None,
        augment: Callable[[NDArray, Key], NDArray] | None = None,
        callbacks: Sequence[Any] = (),
        metrics: dict[str, Callable[[NDArray, NDArray], float]] | None = None,
        state: dict | None = None) -> FitResult:
    """Train ``model`` (a Layer) from ``params`` with optimizer ``opt`` on ``train = (X, Y)``.

    val: (X, Y) evaluated after each epoch.  grad_transform: fn(grads) -> grads applied before
    the update (e.g. ``dlkit.clip.clip_by_global_norm``).  checkpoint_dir: where to save at
    each epoch end and, if set, every ``checkpoint_every`` steps.  resume: continue from the
    newest valid checkpoint in checkpoint_dir (a fresh start if there is none).
    early_stopping: patience in epochs on ``monitor`` (higher is better for *accuracy*, lower
    for *loss*).  max_steps: stop after that many steps in total (for tests and profiling).

    augment: fn(x, key) -> x (e.g. ``dlkit.data.crop_and_flip(2)``) applied to each training
    batch after ``prepare``, on the host, with the key ``fold_in(key, AUGMENT_SALT + step)``
    (under MPI ``fold_in`` of that with the rank), a stream apart from the dropout keys and the
    epoch orders, so a resumed run augments exactly as an uninterrupted one.  Validation and
    ``evaluate`` never see it.  callbacks: ``Callback``-like objects whose ``on_step_end(step,
    logs)`` / ``on_epoch_end(epoch, logs)`` (either optional) run after each step and epoch;
    one returning True stops the run (see ``Callback`` for the logs and the stop rule).
    metrics: {name: fn(out, y) -> float} computed on each batch's host outputs and labels and
    averaged over the epoch weighted by rows (summed over the ranks under MPI, as the loss),
    and on ``val`` as ``val_<name>``; each becomes a history column (after ``accuracy`` and
    ``val_accuracy``), a CSV column, a TensorBoard scalar, a key of the callbacks' logs, and a
    possible ``monitor`` (lower is better unless the name holds "acc").  A resume must pass
    the same metric names as the checkpointed run.

    Logs, written as the run goes (rank 0 only under MPI): ``log`` gets a line per epoch and,
    once the first steps have been timed, the run's expected duration when it is over 30 s.
    ``csv_log``: a path; a CSV with one row per epoch, flushed as each epoch ends, columns
    epoch, loss, accuracy, [val_loss, val_accuracy,] [lr,] seconds (lr: the learning rate of
    the epoch's last step, where the optimizer tells it); on resume it is rewritten from the
    checkpoint's history first.  ``tensorboard_dir``: a folder for TensorBoard scalars
    (tensorboardX, the ``tensorboard`` extra; ImportError before any step without it):
    ``step/loss``, ``step/accuracy``, ``step/lr`` and ``step/seconds`` every step and
    ``epoch/*`` (the CSV's values) every epoch, all against the global step.  The history
    (``result.history``) has the CSV's columns as lists, ``lr`` always (None where unknown).

    state: the model state of a ``StatefulLayer`` model (``model.init`` returned it; required
    for one, a ValueError for a stateless model).  Each training step threads it through the
    model and the new state is adopted when the step succeeds; it is never seen by ``opt``
    (weight decay included), ``grad_transform`` or the finiteness checks; it is checkpointed
    and restored on resume; validation uses it in eval mode.  Under MPI the new state is
    averaged over the ranks every step (weighted by rows, see the module docstring).  With
    device params it is moved to the device.  ``result.state`` is the final state.

    Shapes: X (N, ...) of any dtype that ``prepare`` turns into the model's input (float32 by
    default, as the params), Y (N,) integer labels (or the targets ``loss_fn`` takes); params
    and opt_state are trees of arrays (``opt.init(params)`` when opt_state is None).

    Returns:
        ``FitResult(params, opt_state, history, state)`` (state None for a stateless model).

    Raises:
        ValueError: bad settings (batch_size < 1, epochs < 0, an empty training set, X and Y
            of different lengths, state= missing for a stateful model or given for a stateless
            one), raised before any work.
        FloatingPointError: a non-finite loss, gradient or updated param (naming the step and
            the tensor); params, optimizer state and model state stay those of before the
            step.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, nn, optim, random, train
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((256, 2)).astype(np.float32)
        >>> Y = (X[:, 0] > 0).astype(np.int64)              # a linearly separable toy task
        >>> model = nn.serial(("fc", L.Dense(2)))
        >>> _, params = model.init(random.key(0), (2,))
        >>> result = train.fit(model, params, optim.adam(0.05), (X, Y), key=random.key(1),
        ...                    epochs=5, batch_size=32, progress=False, log=lambda msg: None)
        >>> result.history["epoch"], result.history["accuracy"][-1] > 0.9
        ([1, 2, 3, 4, 5], True)
    """
    X, Y = train
    _model_state(model, state, "fit")
    if len(X) != len(Y):
        raise ValueError(f"fit: X and Y have different lengths, {len(X)} and {len(Y)}")
    if len(X) == 0:
        raise ValueError("fit: the training set is empty (0 samples); expected at least one")
    for name, value, low in (("batch_size", batch_size, 1), ("epochs", epochs, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"fit: {name} must be an int >= {low}, got {value!r}")
    for cb in callbacks:
        if not (callable(getattr(cb, "on_step_end", None))
                or callable(getattr(cb, "on_epoch_end", None))):
            raise TypeError(f"fit: a callback needs an on_step_end or on_epoch_end method, got "
                            f"{cb!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"fit: augment must be a function fn(x, key) -> x, got {augment!r}")
    metrics = dict(metrics or {})
    reserved = {"epoch", "loss", "accuracy", "lr", "seconds", "batch"}
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name.isidentifier() or name in reserved \
                or name.startswith("val_"):
            raise ValueError(f"fit: metric names must be identifiers other than "
                             f"{sorted(reserved)} not starting with 'val_', got {name!r}")
        if not callable(fn):
            raise TypeError(f"fit: metric {name!r} must be a function fn(out, y) -> float, got "
                            f"{fn!r}")
    names = list(metrics)
    step_cbs = [cb.on_step_end for cb in callbacks if callable(getattr(cb, "on_step_end", None))]
    epoch_cbs = [cb.on_epoch_end for cb in callbacks
                 if callable(getattr(cb, "on_epoch_end", None))]
    step_fn = nn.value_and_grad(model, loss_fn)
    on_dev = device.on_device_tree(params)
    opt_state = opt.init(params) if opt_state is None else opt_state
    stateful = state is not None
    if stateful and on_dev and not device.on_device_tree(state):
        state = device.to_device(state)
    world = distributed.setup()
    if world.size > 1:
        params, opt_state, state = _agree(params, opt_state, X, Y, key, batch_size, epochs,
                                          on_dev, state)
        log = log if world.rank == 0 else (lambda msg: None)
        progress = progress and world.rank == 0
    n_per_epoch = batching.n_batches(len(X), batch_size)
    history = {k: [] for k in ("epoch", "loss", "accuracy", *names, "val_loss", "val_accuracy",
                               *(f"val_{n}" for n in names), "lr", "seconds")}
    step = epoch = start_batch = 0
    zero_sums = [0.0, 0, 0] + [0.0] * len(names)
    sums = list(zero_sums)          # loss * n, correct, n, each metric * n  of the epoch
    best, since_best = None, 0
    if resume:
        if not checkpoint_dir:
            raise ValueError("fit: resume=True needs checkpoint_dir")
        c = distributed.from_main(ckpt.restore, checkpoint_dir,
                                  like=device.to_host(params) if on_dev else params,
                                  like_state=device.to_host(state) if stateful else None)
        if c is not None and on_dev:
            c = c._replace(params=device.to_device(c.params),
                           opt_state=device.to_device(c.opt_state),
                           state=device.to_device(c.state) if stateful else None)
        if c is not None:
            m = c.meta
            missing = [k for k in _RESUME_META if k not in m]
            if missing:
                raise ValueError(f"fit: checkpoint {c.path} was not written by fit: its meta "
                                 f"lacks {missing}")
            if (m["batch_size"], m["n_train"]) != (batch_size, len(X)):
                raise ValueError(f"fit: checkpoint {c.path} was trained with batch_size "
                                 f"{m['batch_size']} on {m['n_train']} samples, this run uses "
                                 f"batch_size {batch_size} on {len(X)}: its batch position "
                                 "would not resume the same order")
            if list(m.get("metrics", [])) != names:
                raise ValueError(f"fit: checkpoint {c.path} was trained with metrics "
                                 f"{list(m.get('metrics', []))}, this run passes {names}; "
                                 "pass the same metric names to resume")
            if tuple(m.get("key", ())) != tuple(key):
                raise ValueError(f"fit: checkpoint {c.path} was trained with key {m.get('key')}"
                                 f", this run uses {key}; pass the same --seed to resume")
            params, opt_state, step = c.params, c.opt_state, c.step
            if stateful:
                state = c.state
            epoch, start_batch, sums = m["epoch"], m["batch"], m["sums"]
            history, best, since_best = m["history"], m["best"], m["since_best"]
            history.setdefault("lr", [None] * len(history["epoch"]))   # older checkpoints
            log(f"resumed from {c.path} (step {step}, epoch {epoch + 1}, batch {start_batch})")
    lr_of = _learning_rate_of(opt, opt_state, step)
    csv, board = _open_logs(csv_log if world.rank == 0 else None,
                            tensorboard_dir if world.rank == 0 else None, history,
                            val is not None, lr_of is not None, step, names)
    to_go = epochs * n_per_epoch - step if max_steps is None else \
        min(epochs * n_per_epoch, max_steps) - step
    eta = logs.Estimate(to_go, None, what=f"{epochs - epoch} of {epochs} epochs, {to_go} steps",
                        extra=", plus validation" if val is not None else "")

    def save():
        if checkpoint_dir and world.rank == 0:
            meta = dict(
                key=list(key), epoch=epoch, batch=start_batch, sums=sums, history=history,
                best=best, since_best=since_best, monitor=monitor, optimizer=opt.name,
                hyperparams=opt.hyperparams, batch_size=batch_size, epochs=epochs,
                n_train=len(X), metrics=names,
                data_order=f"permutation(fold_in(key, {EPOCH_SALT}+epoch))")
            ckpt.save(checkpoint_dir, step, device.to_host(params), device.to_host(opt_state),
                      keep=keep, meta=meta,
                      state=device.to_host(state) if stateful else None)

    try:
        stop = False
        lr = None
        while epoch < epochs and not stop:
            t0 = time.perf_counter()
            order_key = fold_in(key, EPOCH_SALT + epoch)
            bar = tqdm(total=n_per_epoch, initial=start_batch,
                       desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False,
                       mininterval=0.5)
            for rows, mine in distributed.epoch_shards(order_key, len(X), batch_size,
                                                       start=start_batch):
                t_step = time.perf_counter()
                xb, yb = X[mine], Y[mine]
                if len(mine):
                    x = prepare(xb) if prepare else xb
                    if augment is not None:
                        aug_key = fold_in(key, AUGMENT_SALT + step)
                        x = augment(x, aug_key if world.size == 1 else
                                    fold_in(aug_key, world.rank))
                    yd = yb
                    if on_dev:
                        x, yd = device.to_device((x, yb))
                    step_key = fold_in(key, step) if world.size == 1 else \
                        fold_in(fold_in(key, step), world.rank)
                    if stateful:
                        loss, out, grads, new_mstate = step_fn(params, x, yd, state=state,
                                                               key=step_key)
                    else:
                        loss, out, grads = step_fn(params, x, yd, key=step_key)
                        new_mstate = None
                    host_out = device.to_host(out)
                    correct = int(np.sum(predictions(host_out) == np.asarray(yb).reshape(-1)))
                    values = [float(fn(host_out, yb)) for fn in metrics.values()]
                else:       # a last batch with fewer rows than ranks: this rank adds nothing
                    loss, correct, grads = 0.0, 0, tree.map(np.zeros_like, params)
                    values = [0.0] * len(names)
                    new_mstate = state          # weight 0 in the average below
                if world.size > 1:
                    grads, new_mstate, (loss_sum, correct, *value_sums) = _allreduce(
                        grads, new_mstate, len(mine) / rows,
                        [loss * len(mine), correct, *(v * len(mine) for v in values)])
                    loss, correct = loss_sum / rows, int(round(correct))
                    values = [v / rows for v in value_sums]
                _check_finite(loss, grads, step, epoch, start_batch)
                if grad_transform is not None:
                    grads = grad_transform(grads)
                if opt.step is not None:
                    new_params, new_state = opt.step(grads, opt_state, params)
                else:
                    updates, new_state = opt.update(grads, opt_state, params)
                    new_params = apply_updates(params, updates)
                _check_updated(new_params, step, epoch, start_batch)
                params, opt_state = new_params, new_state
                if stateful:
                    state = new_mstate
                if lr_of is not None:
                    lr = lr_of(step)
                if board is not None:
                    board.scalars(step + 1, **{
                        "step/loss": loss, "step/accuracy": correct / rows, "step/lr": lr,
                        "step/seconds": time.perf_counter() - t_step,
                        **{f"step/{n}": v for n, v in zip(names, values)}})
                said = eta.step()
                if said:
                    with bar.external_write_mode():     # above the bar, not inside it
                        log(said)
                step += 1
                start_batch += 1
                sums = [sums[0] + loss * rows, sums[1] + correct, sums[2] + rows,
                        *(a + v * rows for a, v in zip(sums[3:], values))]
                bar.update(1)
                if start_batch % 20 == 0:
                    bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}",
                                    acc=f"{sums[1] / sums[2]:.4f}", refresh=False)
                saved = bool(checkpoint_every and step % checkpoint_every == 0
                             and start_batch < n_per_epoch)
                if saved:
                    save()
                if step_cbs:
                    info = dict(loss=float(loss), accuracy=correct / rows, lr=lr,
                                epoch=epoch + 1, batch=start_batch - 1, **dict(zip(names, values)))
                    if any([bool(f(step - 1, dict(info))) for f in step_cbs]):
                        stop = True
                        if start_batch < n_per_epoch and not saved:
                            save()          # the checkpoint agrees with the result
                        break
                if max_steps is not None and step >= max_steps:
                    stop = True
                    break
            bar.close()
            if stop and start_batch < n_per_epoch:
                break
            history["epoch"].append(epoch + 1)
            history["loss"].append(sums[0] / max(1, sums[2]))
            history["accuracy"].append(sums[1] / max(1, sums[2]))
            for name, total in zip(names, sums[3:]):
                history[name].append(total / max(1, sums[2]))
            if val is not None:
                vl, va, _, vm = _evaluate(model, params, *val, loss_fn, prepare, 1000, metrics,
                                          state)
            else:
                vl = va = None
                vm = dict.fromkeys(names)
            history["val_loss"].append(vl)
            history["val_accuracy"].append(va)
            for name in names:
                history[f"val_{name}"].append(vm[name])
            history["lr"].append(lr)
            history["seconds"].append(time.perf_counter() - t0)
            row = {k: v[-1] for k, v in history.items()}
            if csv is not None:
                csv.write(row)
            if board is not None:
                board.scalars(step, **{f"epoch/{k}": v for k, v in row.items() if k != "epoch"})
                board.flush()
            msg = (f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f} "
                   f"acc {history['accuracy'][-1]:.4f}"
                   + "".join(f" {n} {history[n][-1]:.4f}" for n in names))
            if val is not None:
                msg += f" | val loss {vl:.4f} acc {va:.4f}" + "".join(
                    f" {n} {vm[n]:.4f}" for n in names)
            log(msg + f" | {history['seconds'][-1]:.2f} s")
            epoch, start_batch, sums = epoch + 1, 0, list(zero_sums)
            if early_stopping is not None and history[monitor][-1] is not None:
                value = history[monitor][-1]
                better = best is None or (value > best if "acc" in monitor else value < best)
                best, since_best = (value, 0) if better else (best, since_best + 1)
                if since_best >= early_stopping:
                    log(f"early stopping: {monitor} has not improved for {early_stopping} "
                        "epochs")
                    stop = True
            if epoch_cbs and any([bool(f(epoch, dict(row))) for f in epoch_cbs]):
                stop = True
            save()
        return FitResult(params, opt_state, history, state)
    finally:
        for w in (csv, board):
            if w is not None:
                w.close()


def _learning_rate_of(opt, opt_state, step):
    """fn(fit's step) -> the learning rate of that step's update, or None if ``opt`` does not
    say (an Optimizer without learning_rate, or a state without a step count)."""
    schedule = getattr(opt, "learning_rate", None)
    if schedule is None:
        return None
    try:
        offset = int(device.to_host(opt_state["step"])) - step
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return lambda s: float(schedule(s + offset))


def _open_logs(csv_log, tensorboard_dir, history, with_val, with_lr, step, names=()):
    columns = ["epoch", "loss", "accuracy", *names] \
        + (["val_loss", "val_accuracy", *(f"val_{n}" for n in names)] if with_val else []) \
        + (["lr"] if with_lr else []) + ["seconds"]
    board = None
    if tensorboard_dir is not None:
        board = logs.TensorBoardLog(tensorboard_dir, purge_step=step or None)
    csv = None
    if csv_log is not None:
        rows = [{k: history[k][i] for k in columns} for i in range(len(history["epoch"]))]
        csv = logs.CSVLog(csv_log, columns, rows)
    return csv, board


def _allreduce(grads, state, weight, extra):
    """Under MPI: the row-weighted sums over the ranks of the gradients and of the float
    leaves of the model state (None: no state), and the sums of ``extra``, in one fused
    allreduce.  The state's other leaves (counters) stay this rank's own."""
    if state is None:
        grads, sums = distributed.allreduce(grads, weight, extra=extra)
        return grads, None, sums
    flat = tree.flatten(state)
    floats = {k: a for k, a in flat.items() if np.issubdtype(np.asarray(a).dtype, np.floating)}
    both, sums = distributed.allreduce({"g": grads, "s": tree.unflatten(floats)}, weight,
                                       extra=extra)
    flat.update(tree.flatten(both.get("s", {})))
    return both.get("g", {}), _rebuild(state, flat), sums


def _rebuild(like, flat, prefix=""):
    """The tree ``like`` (empty dicts included) with its leaves taken from ``flat``."""
    return {k: _rebuild(v, flat, prefix + k + tree.SEP) if isinstance(v, dict)
            else flat[prefix + k] for k, v in like.items()}


def _agree(params, opt_state, X, Y, key, batch_size, epochs, on_dev, state=None):
    """Under MPI, before any step: refuse device params and a batch smaller than the number of
    ranks, check that every rank was given the same run (DistributedError naming the rank and
    both values otherwise), and return rank 0's params, optimizer state and model state."""
    if on_dev:
        raise distributed.DistributedError(
            "fit: data-parallel training over MPI takes host (NumPy) params; got device "
            "arrays. Run one process per GPU without mpiexec, or train on the host")
    distributed.check_batch("fit", batch_size)
    X0, Y0 = np.asarray(X[:1]), np.asarray(Y[:1])
    distributed.check_same("fit", n_train=len(X), sample=(X0.shape[1:], X0.dtype.str),
                           labels=(Y0.shape[1:], Y0.dtype.str), batch_size=int(batch_size),
                           epochs=int(epochs), key=tuple(key),
                           params=distributed.signature(params),
                           opt_state=distributed.signature(opt_state),
                           state=None if state is None else distributed.signature(state))
    return distributed.broadcast(params), distributed.broadcast(opt_state), \
        None if state is None else distributed.broadcast(state)
