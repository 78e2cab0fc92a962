#!/usr/bin/env python
"""Side-by-side epoch timing (and, with --quality, feature quality) of dlkit's RBM and
scikit-learn's BernoulliRBM on Fashion-MNIST.

    python benchmarks/compare_sklearn_rbm.py                 # timing, 3 alternating rounds
    python benchmarks/compare_sklearn_rbm.py --rounds 5 --epochs 2
    python benchmarks/compare_sklearn_rbm.py --quality       # + logistic regression accuracy

The work: one epoch over the 60,000 training images (784 visible units in [0, 1], float32),
500 hidden units, batch 100, learning rate 0.1, no momentum, no weight decay, visible units
sampled in the negative phase: scikit-learn's BernoulliRBM.fit with n_iter=1 (its algorithm is
persistent CD-1, "stochastic maximum likelihood"); dlkit's ``rbm.fit`` with CD-1 and with
PCD-1 (the SGD step fused into the kernel), and also the plain user loop ``rbm.cd_grads`` +
``optim.sgd`` + ``optim.apply_updates``.  The timed region is the epoch only (data already in
memory as float32; compilation and BLAS warm-up done before).

Method: each contender runs in its own process (thread pools slow each other down when they
share a process); the processes alternate for ``--rounds`` rounds; each process reports the
best of ``--epochs`` timed epochs, the table the best over all rounds, and the ratio is
dlkit / scikit-learn (below 1: dlkit is faster).  Both get 2 threads (``--threads``):
scikit-learn through its BLAS (OpenBLAS via numpy; numpy's BLAS threads are what its GEMMs
use), dlkit through Numba with BLAS pinned to one thread.  scikit-learn is also tried with
glibc's malloc tuned (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ = 1e9) and with one BLAS
thread; the ratio is taken against its fastest setting.  dlkit runs with Numba's default
OpenMP settings, and again with OMP_WAIT_POLICY=passive (idle worker threads sleep at once
instead of spinning): slightly slower on an idle machine, far faster on a busy one, where
spinning threads steal the cores the working ones need.

--quality trains 10 epochs each (scikit-learn: the settings above; dlkit: Hinton's recipe,
rbm.fit's defaults, and the same with the L1 weight cost 1e-4 of scripts/train_dbn.py) and fits scikit-learn's LogisticRegression on the hidden probabilities
P(h|v) of the training set, reporting test accuracy, next to the same regression on raw pixels.
scikit-learn is a benchmark extra: ``pip install 'dlkit[bench]'``.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
PASSIVE = {"OMP_WAIT_POLICY": "passive"}    # idle OpenMP threads sleep instead of spinning
N_HIDDEN, BATCH, LR = 500, 100, 0.1

CONTENDERS = {
    # name: (framework, description, extra environment, BLAS threads or None = --threads)
    "sklearn": ("sklearn", "scikit-learn BernoulliRBM (PCD-1), 2 BLAS threads", {}, None),
    "sklearn-malloc": ("sklearn", "scikit-learn, malloc tuned", MALLOC, None),
    "sklearn-1thread": ("sklearn", "scikit-learn, 1 BLAS thread", {}, 1),
    "dlkit-cd1": ("dlkit", "dlkit rbm.fit CD-1 (fused SGD)", {}, None),
    "dlkit-pcd1": ("dlkit", "dlkit rbm.fit PCD-1 (fused SGD)", {}, None),
    "dlkit-cd1-loop": ("dlkit", "dlkit cd_grads + optim.sgd loop, CD-1", {}, None),
    "dlkit-cd1-passive": ("dlkit", "dlkit CD-1, OMP_WAIT_POLICY=passive", PASSIVE, None),
    "dlkit-pcd1-passive": ("dlkit", "dlkit PCD-1, OMP_WAIT_POLICY=passive", PASSIVE, None),
}


def load(data_dir=None):
    """Fashion-MNIST as float32 in [0, 1], (N, 784), through dlkit.data (driver process only:
    importing dlkit pins BLAS to one thread, so the workers read a .npy the driver wrote)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from dlkit import data
    (xtr, ytr), (xte, yte) = data.load_mnist("fashion-mnist", data_dir=data_dir,
                                             progress=False)
    f = lambda x: (x.reshape(len(x), -1) / np.float32(255)).astype(np.float32)  # noqa: E731
    return f(xtr), ytr, f(xte), yte


def epoch_fn(name, X, seed):
    """A function running one epoch of contender ``name`` (warmed up)."""
    if name.startswith("sklearn"):
        from sklearn.neural_network import BernoulliRBM

        def run():
            BernoulliRBM(N_HIDDEN, learning_rate=LR, batch_size=BATCH, n_iter=1,
                         random_state=seed).fit(X)
        BernoulliRBM(N_HIDDEN, learning_rate=LR, batch_size=BATCH, n_iter=1,
                     random_state=seed).fit(X[:2000])
        return run
    from dlkit import optim, random, rbm
    key = random.key(seed)
    params = rbm.init(key, X.shape[1], N_HIDDEN)
    if name == "dlkit-cd1-loop":
        def run():
            p, opt = params, optim.sgd(LR)
            state = opt.init(p)
            order = random.generator(key).permutation(len(X))
            for b in range(len(X) // BATCH):
                xb = X[order[b * BATCH:(b + 1) * BATCH]]
                grads, _, _ = rbm.cd_grads(p, xb, random.fold_in(key, b))
                updates, state = opt.update(grads, state, p)
                p = optim.apply_updates(p, updates)
    else:
        def run():
            rbm.fit(params, X, key, epochs=1, batch_size=BATCH, persistent="pcd" in name,
                    sample_visible=True, lr=LR, momentum=0.0, final_momentum=None,
                    weight_decay=0.0)
    small = X[:2000]
    rbm.fit(params, small, key, epochs=1, persistent="pcd" in name, sample_visible=True)
    rbm.cd_grads(params, small[:BATCH], key)
    return run


def worker(name, epochs, x_path):
    import numpy as np
    X = np.load(x_path)
    fn = epoch_fn(name, X, 0)
    best = float("inf")
    for _ in range(epochs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"seconds": best}))


def run_worker(name, epochs, threads, x_path):
    framework, _, extra, blas = CONTENDERS[name]
    n = str(blas or threads)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=n,
               OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n, **extra)
    cmd = [sys.executable, __file__, "--worker", name, "--epochs", str(epochs), "--x", x_path]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise RuntimeError(f"{name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["seconds"]


def timing(args):
    import tempfile

    import numpy as np
    names = [n for n in CONTENDERS if not args.only or any(w in n for w in args.only)]
    best = {n: float("inf") for n in names}
    tmp = tempfile.TemporaryDirectory()
    x_path = os.path.join(tmp.name, "x.npy")
    np.save(x_path, load(args.data_dir)[0])
    for r in range(args.rounds):
        for n in names:
            s = run_worker(n, args.epochs, args.threads, x_path)
            best[n] = min(best[n], s)
            print(f"round {r + 1}/{args.rounds}  {n:<16} {s:7.2f} s", flush=True)
    sk = min((best[n] for n in names if n.startswith("sklearn")), default=None)
    print(f"\nOne epoch, 60000 x 784 -> {N_HIDDEN} hidden, batch {BATCH}, float32, "
          f"{args.threads} threads; best of {args.rounds} rounds x {args.epochs} epochs")
    from benchmarks.compare_torch import blas_kernels   # (load() put the repo on sys.path)
    print(blas_kernels())
    print(f"{'contender':<16} {'description':<48} {'s/epoch':>8} {'vs sklearn':>10}")
    for n in names:
        ratio = f"{best[n] / sk:10.2f}" if sk else ""
        print(f"{n:<16} {CONTENDERS[n][1]:<48} {best[n]:8.2f} {ratio}")
    return best


def quality(args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import BernoulliRBM

    import dlkit
    from dlkit import random, rbm
    X, y, Xt, yt = load(args.data_dir)
    dlkit.blas_threads(args.threads)        # scikit-learn's parts get their BLAS threads back

    def lr_acc(F, Ft):
        clf = LogisticRegression(max_iter=1000)
        clf.fit(F, y)
        return clf.score(Ft, yt)

    t = time.perf_counter()
    sk = BernoulliRBM(N_HIDDEN, learning_rate=LR, batch_size=BATCH, n_iter=10,
                      random_state=0).fit(X)
    t_sk = time.perf_counter() - t
    dlkit.blas_threads(1)
    fits = []
    for l1 in (0.0, 1e-4):
        t = time.perf_counter()
        res = rbm.fit(rbm.init(random.key(0), 784, N_HIDDEN, data=X), X, random.key(1),
                      epochs=10, batch_size=BATCH, l1=l1)
        fits.append((l1, time.perf_counter() - t, rbm.transform(res.params, X),
                     rbm.transform(res.params, Xt)))
    dlkit.blas_threads(args.threads)
    rows = [("raw pixels", None, lr_acc(X, Xt)),
            ("sklearn BernoulliRBM 10 epochs", t_sk, lr_acc(sk.transform(X), sk.transform(Xt)))]
    for l1, secs, F, Ft in fits:
        rows.append((f"dlkit rbm.fit 10 epochs (Hinton recipe{', L1 %g' % l1 if l1 else ''})",
                     secs, lr_acc(F, Ft)))
    print("\nLogisticRegression(max_iter=1000) test accuracy on Fashion-MNIST")
    for name, secs, acc in rows:
        print(f"  {name:<52} {acc * 100:6.2f}%" + ("" if secs is None else
                                                   f"   (RBM training {secs:.1f} s)"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="*", help="contenders whose name contains one of these")
    p.add_argument("--quality", action="store_true", help="also compare feature quality")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--x", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(ROOT))
        return worker(args.worker, args.epochs, args.x)
    if not args.no_timing:
        timing(args)
    if args.quality:
        quality(args)


if __name__ == "__main__":
    main()
