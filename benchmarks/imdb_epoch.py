#!/usr/bin/env python
"""One IMDb training epoch, dlkit against PyTorch's two settings, each in its own process.

    python benchmarks/imdb_epoch.py --rounds 2

compare_torch's ``imdb_epoch`` case times the same work but warms up with three whole epochs per
process; this script warms up on 5 batches instead (JIT compilation, allocator), then times
exactly one epoch: 25,000 reviews (the last 200 tokens of each, as scripts/train_imdb.py
prepares them), batch 64, the Keras model (Embedding 10000x128, SpatialDropout1D 0.4, LSTM
100, Dense 1), BCE, global-norm clipping 1.0, Adam 1e-3.  dlkit runs train.fit (progress bar
off) with the reviews' lengths; PyTorch runs the plain model over the padded batch, by default
and with ``torch.set_flush_denormal(True)``.  Every worker also runs with glibc's malloc tuned
(MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ = 1e9, as compare_torch gives PyTorch): the
recurrent kernels' biggest arrays are otherwise fresh mmaps whose pages fault on every step.
Workers alternate; the best of ``--rounds`` is reported, with dlkit's ratio to PyTorch's
fastest setting, malloc tuning applied to both sides or to neither.
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


def worker(framework, threads):
    sys.path.insert(0, str(ROOT))
    from benchmarks import peer_recurrent as P
    if framework == "dlkit":
        import numba
        numba.set_num_threads(threads)
        from dlkit import clip, losses, random, train
        model, prepare, params, opt, max_norm = P._imdb_dlkit()
        X, Y = P._imdb_ids()

        def epoch(n=None):
            train.fit(model, params, opt, (X[:n], Y[:n]), key=random.key(0), epochs=1,
                      batch_size=64, loss_fn=losses.sigmoid_binary_cross_entropy,
                      prepare=prepare, grad_transform=clip.by_global_norm(max_norm),
                      progress=False, log=lambda *a: None)
    else:
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        torch.set_flush_denormal(framework.startswith("torch-flush_denormal"))
        Xn, Yn = P._imdb_ids()
        X, Y = torch.from_numpy(Xn), torch.from_numpy(Yn).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def epoch(n=None):
            model, opt = P._imdb_torch()
            n = len(X) if n is None else n
            perm = torch.randperm(n)
            for i in range(0, n, 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                loss_fn(model(X[idx]), Y[idx]).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
    epoch(320)                                   # warm-up: 5 batches
    t = time.perf_counter()
    epoch()
    print(json.dumps({"seconds": time.perf_counter() - t}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.threads)
    if not os.environ.get("DLKIT_DATA"):
        print("note: the IMDb reviews are looked for in $DLKIT_DATA, ~/.cache/dlkit, "
              "/usr/share/datasets")
    names = ("dlkit", "torch-default", "torch-flush_denormal")
    runs = [(n, m) for n in names for m in (False, True)]
    best = {r: float("inf") for r in runs}
    base = dict(os.environ, NUMBA_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    for r in range(a.rounds):
        for n, malloc in runs:
            env = dict(base, **(MALLOC if malloc else {}))
            out = subprocess.run([sys.executable, __file__, "--worker", n, "--threads",
                                  str(a.threads)], env=env, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"{n} worker failed:\n{out.stderr[-2000:]}")
            s = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            best[(n, malloc)] = min(best[(n, malloc)], s)
            label = n + ("+malloc" if malloc else "")
            print(f"round {r + 1}: {label:29s} {s:7.1f} s", flush=True)
    print(f"\nIMDb epoch, {a.threads} threads, best of {a.rounds}:")
    for malloc in (False, True):
        tag = "+malloc" if malloc else ""
        faster = min(names[1:], key=lambda n: best[(n, malloc)])
        print(f"  dlkit{tag} {best[('dlkit', malloc)]:.1f} s; PyTorch default{tag} "
              f"{best[('torch-default', malloc)]:.1f} s, flush-denormal{tag} "
              f"{best[('torch-flush_denormal', malloc)]:.1f} s; ratio to the faster "
              f"({faster}{tag}) {best[('dlkit', malloc)] / best[(faster, malloc)]:.2f}")
    return best


if __name__ == "__main__":
    main()
