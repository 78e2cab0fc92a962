#!/usr/bin/env python
"""Data-parallel figures (docs/scaling.md): run under mpiexec, not by asv.

    mpiexec -n 2 python benchmarks/mpi_scaling.py allreduce   # fused vs one Allreduce per array
    mpiexec -n 2 python benchmarks/mpi_scaling.py latency     # alpha (8 B) and bandwidth (64 MiB)
    python benchmarks/mpi_scaling.py step                     # 1 rank x all threads
    mpiexec -n 2 python benchmarks/mpi_scaling.py step        # 2 ranks x cores/2 threads
    mpiexec -n 2 python benchmarks/mpi_scaling.py step 2      # 2 ranks x 2 threads each
    python benchmarks/mpi_scaling.py predict ALPHA_US GBIT_S  # the ring model, docs/scaling.md

allreduce: for the gradient tree of each zoo model (and the IMDb LSTM), the median time of
``dlkit.distributed.allreduce`` (one buffer: pack, one in-place Allreduce, views back) against
one in-place Allreduce per array.  step: the median of a whole training step (forward, loss,
backward, the allreduce, Adam) on the model's default global batch split across the ranks, its
allreduce's share, and the throughput in samples/s.  Rank 0 prints.  Threads per rank are
dlkit.distributed's rule (cores // ranks on the node, capped by NUMBA_NUM_THREADS).
predict: times each model's step in this one process (compute c per sample at its default
batch B) and prints the ring-allreduce model's efficiency for 2..64 nodes with a per-message
latency ALPHA_US and a link of GBIT_S: t_comm(N) = 2(N-1) alpha + 2(N-1)/N * bytes / beta;
strong scaling (global batch B, B/N per node, as --batch-size does) E = c B/N / (c B/N +
t_comm), weak scaling (B per node) E = c B / (c B + t_comm), and the per-node batch
t_comm(64) / c above which an allreduce overlapped with backward would hide entirely.
"""
import sys
import time

import numpy as np


def models():
    """name -> (model, in_shape, input dtype, classes, global batch): the zoo and IMDb's LSTM."""
    from dlkit import layers as L, nn
    from dlkit.zoo import DEFAULT_BATCH, MODELS
    out = {}
    for name in ("mlp", "cnn", "cnn-deep", "lstm"):
        model, _, in_shape = MODELS[name]("fashion-mnist")
        out[name] = (model, in_shape, np.float32, 10, DEFAULT_BATCH[name])
    imdb = nn.serial(("embed", L.Embedding(10000, 128)), ("lstm", L.LSTM(100)),
                     ("out", L.Dense(1)))
    out["imdb-lstm"] = (imdb, (200,), np.int64, 1, 64)
    return out


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_allreduce(comm, reps=200):
    from dlkit import distributed as dist, random, tree
    from mpi4py import MPI
    for name, (model, in_shape, *_rest) in models().items():
        _, params = model.init(random.key(0), in_shape)
        flat = list(tree.flatten(params).values())

        def per_array():
            for a in flat:
                comm.Allreduce(MPI.IN_PLACE, a)
        comm.Barrier()
        fused = median_time(lambda: dist.allreduce(params, 0.5), reps)
        comm.Barrier()
        each = median_time(per_array, reps)
        if comm.rank == 0:
            print(f"{name:10s} {tree.size(params):>9,} floats in {len(flat):2d} arrays: fused "
                  f"{fused * 1e3:7.3f} ms, per array {each * 1e3:7.3f} ms "
                  f"({each / fused:.2f}x)", flush=True)


def bench_latency(comm):
    from mpi4py import MPI
    for n_bytes, reps in ((8, 2000), (1 << 20, 200), (64 << 20, 10)):
        buf = np.ones(n_bytes // 4, np.float32)
        comm.Barrier()
        t = median_time(lambda: comm.Allreduce(MPI.IN_PLACE, buf), reps)
        if comm.rank == 0:
            # ring model: t = 2(N-1) alpha + 2(N-1)/N * bytes / beta
            n = comm.size
            bw = 2 * (n - 1) / n * n_bytes / t if n_bytes > 8 else float("nan")
            print(f"Allreduce of {n_bytes:>9,} B: {t * 1e6:9.1f} us"
                  + (f"  (bus bandwidth {bw / 1e9:.2f} GB/s)" if n_bytes > 8 else
                     f"  (alpha ~ {t / (2 * (n - 1)) * 1e6:.1f} us)"), flush=True)


def ring_seconds(n_nodes, n_bytes, alpha, beta):
    """Ring allreduce: 2(N-1) latencies and 2(N-1)/N of the bytes over a link of beta B/s."""
    return 2 * (n_nodes - 1) * alpha + 2 * (n_nodes - 1) / n_nodes * n_bytes / beta


def predict(alpha_us, gbit_s, reps=20):
    from dlkit import losses, nn, optim, random, tree
    alpha, beta = alpha_us * 1e-6, gbit_s * 1e9 / 8
    nodes = (2, 4, 8, 16, 32, 64)
    print(f"alpha {alpha_us} us, link {gbit_s} Gb/s; E strong (global batch B) | E weak "
          "(B per node) | per-node batch that hides t_comm(64)")
    for name, (model, in_shape, dtype, classes, batch) in models().items():
        _, params = model.init(random.key(0), in_shape)
        rng = np.random.default_rng(0)
        x = rng.integers(1, 10000, (batch,) + in_shape) if dtype == np.int64 else \
            rng.standard_normal((batch,) + in_shape).astype(dtype)
        y = rng.integers(0, max(2, classes), batch)
        loss_fn = losses.softmax_cross_entropy if classes > 1 else \
            losses.sigmoid_binary_cross_entropy
        y = y if classes > 1 else y.astype(np.float32)
        fn, opt = nn.value_and_grad(model, loss_fn), optim.adam(1e-3)
        state = [params, opt.init(params)]

        def step():
            _, _, g = fn(state[0], x, y, key=random.key(1))
            state[:] = opt.step(g, state[1], state[0])
        step()
        t = median_time(step, reps)
        n_bytes = 4 * tree.size(params)
        comm = [ring_seconds(n, n_bytes, alpha, beta) for n in nodes]
        strong = " ".join(f"{t / n / (t / n + c):.2f}" for n, c in zip(nodes, comm))
        weak = " ".join(f"{t / (t + c):.2f}" for c in comm)
        print(f"{name:10s} B={batch:3d} step {t * 1e3:6.2f} ms, {n_bytes / 1e6:5.2f} MB, "
              f"t_comm(64) {comm[-1] * 1e3:6.3f} ms | strong {strong} | weak {weak} | "
              f"hides at {comm[-1] / (t / batch):6.0f} rows/node", flush=True)


def bench_step(threads=None, reps=30):
    """threads: override the rule (to measure oversubscribed cores)."""
    from dlkit import distributed as dist, losses, nn, optim, random
    w = dist.setup()
    import numba
    if threads:
        numba.set_num_threads(threads)
    for name, (model, in_shape, dtype, classes, batch) in models().items():
        _, params = model.init(random.key(0), in_shape)
        rng = np.random.default_rng(0)
        mine = dist.shard(np.arange(batch))
        x = rng.integers(1, 10000, (len(mine),) + in_shape) if dtype == np.int64 else \
            rng.standard_normal((len(mine),) + in_shape).astype(dtype)
        loss_fn = losses.sigmoid_binary_cross_entropy if classes == 1 else \
            losses.softmax_cross_entropy
        y = rng.integers(0, 2 if classes == 1 else classes, len(mine))
        if classes == 1:
            y = y.astype(np.float32)
        fn = nn.value_and_grad(model, loss_fn)
        opt = optim.adam(1e-3)
        state = [params, opt.init(params)]
        share = [0.0]

        def step():
            p, s = state
            _, _, g = fn(p, x, y, key=random.key(1))
            t0 = time.perf_counter()
            g, _ = dist.allreduce(g, len(mine) / batch)
            share[0] += time.perf_counter() - t0
            state[:] = opt.step(g, s, p)
        for _ in range(3):
            step()
        dist.barrier()
        share[0] = 0.0
        t = median_time(step, reps)
        if w.rank == 0:
            print(f"{name:10s} {w.size} rank(s) x {numba.get_num_threads()} thread(s), batch "
                  f"{batch}: step {t * 1e3:7.2f} ms, {batch / t:8.0f} samples/s, allreduce "
                  f"{share[0] / reps * 1e3:.3f} ms ({share[0] / reps / t:.1%})", flush=True)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "step"
    if what == "step":
        return bench_step(int(sys.argv[2]) if len(sys.argv) > 2 else None)
    if what == "predict":
        return predict(float(sys.argv[2]), float(sys.argv[3]))
    from dlkit import distributed as dist
    w = dist.setup()
    if w.size < 2:
        sys.exit(f"{what} needs MPI: mpiexec -n 2 python benchmarks/mpi_scaling.py {what}")
    (bench_allreduce if what == "allreduce" else bench_latency)(w.comm)


if __name__ == "__main__":
    main()
