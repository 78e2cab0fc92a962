"""The program tests/mpi/test_mpi.py runs under ``mpiexec -n N`` (and as one plain process).

    python tests/mpi/worker.py SCENARIO OUT [options]

Every rank writes what the test checks into OUT: rank<r>.npz (params), rank<r>.json (shards,
history) and, for checkpoints, saves.log (the rank of every checkpoint.save call).
"""
import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import dlkit
from dlkit import checkpoint, distributed as dist, layers as L, nn, optim, random, rbm, train, tree
from dlkit.layers.base import StatefulLayer


def synthetic(n, d=12, classes=3):
    """A learnable classification set: labels from a fixed random linear map."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, np.argmax(X @ rng.standard_normal((d, classes)), axis=1).astype(np.int64)


def model():
    """A deterministic forward pass (no dropout), so N ranks reproduce one process."""
    return nn.serial(("fc1", L.Dense(16, activation="relu")), ("fc2", L.Dense(3)))


def save_rank(out, params, **info):
    r = dist.rank()
    np.savez(out / f"rank{r}.npz", **tree.flatten(params))
    (out / f"rank{r}.json").write_text(json.dumps(dict(info, size=dist.size(),
                                                       digest=tree.digest(params))))


def run_fit(out, a):
    X, Y = synthetic(a.n)
    if a.disagree and dist.rank() == 1:
        X, Y = X[:-1], Y[:-1]
    save = checkpoint.save

    def logged_save(*args, **kw):           # records which rank writes checkpoints
        with open(out / "saves.log", "a") as f:
            f.write(f"{dist.rank()}\n")
        return save(*args, **kw)
    checkpoint.save = logged_save
    init = model().init
    _, params = init(random.fold_in(random.key(1), dist.rank() if a.rank_init else 0), (12,))
    key = random.key(7)
    if a.kill_after is not None and dist.rank() == 1:
        def killing_opt(inner):
            def update(grads, state, params):
                if int(state["step"]) >= a.kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                return inner.update(grads, state, params)
            return optim.Optimizer(**dict(inner._asdict(), update=update, step=None))
        opt = killing_opt(optim.adam(1e-2))
    else:
        opt = optim.adam(1e-2)
    r = train.fit(model(), params, opt, (X, Y), key=key, epochs=a.epochs,
                  batch_size=a.batch_size, checkpoint_dir=a.ckpt, checkpoint_every=a.every,
                  resume=a.resume, max_steps=a.max_steps, progress=False)
    shards = [mine.tolist() for _, mine in dist.epoch_shards(
        random.fold_in(key, train.EPOCH_SALT), len(X), a.batch_size)]
    save_rank(out, r.params, shards=shards, history=r.history)


def center():
    """A stateful layer (x - batch mean in training, - running mean in eval; state {"mean"}),
    so fit threads and averages model state over the ranks."""
    def init(key, in_shape, dtype=np.float32):
        return tuple(in_shape), {}, {"mean": np.zeros(in_shape, dtype)}

    def forward(params, x, *, state, key=None, train=False):
        if not train:
            return x - state["mean"], None, state
        m = x.mean(axis=0)
        return x - m, None, {"mean": (0.5 * state["mean"] + 0.5 * m).astype(x.dtype)}

    def backward(params, cache, dy, *, need_dx=True):
        return (dy - dy.mean(axis=0) if need_dx else None), {}
    return StatefulLayer(init, forward, backward)


def run_fit_state(out, a):
    X, Y = synthetic(a.n)
    m = nn.serial(("fc1", L.Dense(16, activation="relu")), ("bn", center()), ("fc2", L.Dense(3)))
    _, params, state = m.init(random.key(1), (12,))
    r = train.fit(m, params, optim.adam(1e-2), (X, Y), key=random.key(7), epochs=a.epochs,
                  batch_size=a.batch_size, progress=False, state=state)
    np.savez(out / f"state{dist.rank()}.npz", **tree.flatten(r.state))
    save_rank(out, r.params, history=r.history, state=tree.digest(r.state))


def run_broadcast(out, a):
    _, params = model().init(random.fold_in(random.key(1), dist.rank()), (12,))
    save_rank(out, dist.broadcast(params))


def run_rbm(out, a):
    X = (synthetic(a.n, d=20)[0] > 0.3).astype(np.float32)
    params = rbm.init(random.key(3), 20, 8)
    r = rbm.fit(params, X, random.key(4), epochs=a.epochs, batch_size=a.batch_size)
    save_rank(out, r.params, history=r.history)


def run_raise(out, a):
    if dist.rank() == 1:
        raise RuntimeError("deliberate failure on rank 1")
    dist.barrier()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["fit", "fit_state", "broadcast", "rbm", "raise"])
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=202,
                   help="rows; 202 = 8 batches of 25 and one of 2, fewer rows than 3 ranks")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--every", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--rank-init", action="store_true", help="each rank its own initial params")
    p.add_argument("--disagree", action="store_true", help="rank 1 gets one row less")
    p.add_argument("--kill-after", type=int, default=None, help="rank 1 SIGKILLs itself")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    {"fit": run_fit, "fit_state": run_fit_state, "broadcast": run_broadcast, "rbm": run_rbm,
     "raise": run_raise}[
        a.scenario](a.out, a)


if __name__ == "__main__":
    dist.run(main)
