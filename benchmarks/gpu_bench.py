"""Time every CUDA kernel family on the GPU and print achieved GFLOP/s or GB/s against the card's
peak.  Skips cleanly (exit status 0, a message saying why) without a GPU, and refuses the CUDA
simulator (its timings mean nothing).

    python benchmarks/gpu_bench.py            # all kernels
    python benchmarks/gpu_bench.py --quick    # smaller shapes, fewer repeats

Each kernel runs once to compile, then ``--repeat`` times between CUDA events; the best time is
reported.  Peaks: FP32 FMA throughput (multiprocessors x FP32 lanes per multiprocessor for the
compute capability x 2 x clock) and DRAM bandwidth (2 x memory clock x bus width); nvidia's
clock attributes are the boost clocks, so the peaks are upper bounds.  Compute-bound kernels
(GEMMs, convolutions) report GFLOP/s, the others GB/s of compulsory traffic (each input read
once, each output written once).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# FP32 lanes per multiprocessor by compute capability (CUDA C Programming Guide, "Arithmetic
# Instructions"); 64 for anything unknown.
_FP32_LANES = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64,
               (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128, (10, 0): 128,
               (12, 0): 128}


def gpu_or_reason():
    """(numba.cuda, None) with a usable GPU, else (None, why)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return None, "NUMBA_ENABLE_CUDASIM is set: simulator timings are meaningless"
    from dlkit import device
    ok, why = device.available()
    if not ok:
        return None, why
    from numba import cuda
    return cuda, None


def peaks(cuda):
    dev = cuda.get_current_device()
    cc = tuple(dev.compute_capability)
    sms = dev.MULTIPROCESSOR_COUNT
    gflops = sms * _FP32_LANES.get(cc, 64) * 2 * dev.CLOCK_RATE * 1e3 / 1e9
    gbs = 2 * dev.MEMORY_CLOCK_RATE * 1e3 * dev.GLOBAL_MEMORY_BUS_WIDTH / 8 / 1e9
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return name, cc, sms, gflops, gbs


def best_ms(cuda, fn, repeat):
    fn()
    cuda.synchronize()
    start, stop = cuda.event(), cuda.event()
    best = float("inf")
    for _ in range(repeat):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, cuda.event_elapsed_time(start, stop))
    return best


def cases(cuda, quick):
    """(name, fn, flops or None, bytes) for every kernel family."""
    from kernels.cuda import activations as A
    from kernels.cuda import conv as C
    from kernels.cuda import dense as D
    from kernels.cuda import losses as Ls
    from kernels.cuda import optim as O
    from kernels.cuda import pool as P
    rng = np.random.default_rng(0)

    def dev(*shape, scale=1.0):
        return cuda.to_device((rng.standard_normal(shape) * scale).astype(np.float32))

    out = []
    s = 1024 if quick else 4096
    A1, B1 = dev(s, s), dev(s, s)
    out.append((f"gemm {s}^3", lambda: D.gemm(A1, B1), 2 * s ** 3, 3 * 4 * s * s))
    for (n, i, o) in [(128, 784, 128), (1024, 1024, 1024), (8192, 1024, 1024)][:2 if quick else 3]:
        x, W, b, dy = dev(n, i), dev(i, o), dev(o), dev(n, o)
        y = D.dense_forward(x, W, b, D.ACT_RELU)
        out.append((f"dense_forward relu {n}x{i}x{o}",
                    lambda x=x, W=W, b=b: D.dense_forward(x, W, b, D.ACT_RELU),
                    2 * n * i * o, 4 * (n * i + i * o + n * o)))
        out.append((f"dense_backward relu {n}x{i}x{o}",
                    lambda x=x, W=W, y=y, dy=dy: D.dense_backward(x, W, y, dy, D.ACT_RELU, True),
                    4 * n * i * o, 4 * (2 * n * i + 2 * i * o + 3 * n * o)))
    n = 1 << (20 if quick else 24)
    x, dy = dev(n), dev(n)
    y = A.activation_forward(x, A.TANH, 0.0)
    out.append((f"activation_forward tanh n={n}", lambda: A.activation_forward(x, A.TANH, 0.0),
                None, 8 * n))
    out.append((f"activation_backward tanh n={n}",
                lambda: A.activation_backward(x, y, dy, A.TANH, 0.0), None, 16 * n))
    keep = cuda.to_device((rng.random(n) > 0.2).astype(np.uint8))
    out.append((f"dropout_forward n={n}", lambda: A.dropout_forward(x, keep, 1.25), None, 9 * n))
    N, Cl = (4096, 1000)
    z = dev(N, Cl)
    lab = cuda.to_device(rng.integers(0, Cl, N))
    out.append((f"softmax_forward {N}x{Cl}", lambda: A.softmax_forward(z, False), None,
                8 * N * Cl))
    out.append((f"softmax_cross_entropy {N}x{Cl}", lambda: Ls.softmax_cross_entropy(z, lab),
                None, 8 * N * Cl + 8 * N))
    g, p, m, v = dev(n), dev(n), dev(n), dev(n, scale=0.0)
    out.append((f"adam_update n={n}",
                lambda: O.adam_update(g, p, m, v, 1e-3, 0.9, 0.999, 1e-8, 1, 0.0, 0.0, 0.0),
                None, 28 * n))
    for (N, Ci, H, Co, K, st) in [(128, 1, 28, 32, 3, 1), (128, 32, 28, 64, 3, 1),
                                  (64, 64, 56, 64, 3, 1), (128, 128, 16, 128, 3, 2)][
                                      :2 if quick else 4]:
        pad = K // 2
        OH = (H + 2 * pad - K) // st + 1
        x, W, b = dev(N, Ci, H, H), dev(Co, Ci, K, K, scale=0.1), dev(Co)
        y = C.conv2d_forward(x, W, b, st, st, pad, pad, 1, 1, 1, OH, OH, C.ACT_RELU)
        dyc = dev(N, Co, OH, OH)
        fl = 2 * N * Co * OH * OH * Ci * K * K
        tag = f"{N}x{Ci}x{H}x{H} -> {Co} {K}x{K}/{st}"
        out.append((f"conv2d_forward {tag}",
                    lambda x=x, W=W, b=b, st=st, pad=pad, OH=OH: C.conv2d_forward(
                        x, W, b, st, st, pad, pad, 1, 1, 1, OH, OH, C.ACT_RELU),
                    fl, 4 * (x.size + W.size + y.size)))
        out.append((f"conv2d_backward {tag}",
                    lambda x=x, W=W, y=y, dyc=dyc, st=st, pad=pad: C.conv2d_backward(
                        x, W, y, dyc, st, st, pad, pad, 1, 1, 1, C.ACT_RELU, True),
                    2 * fl, 4 * (2 * x.size + 2 * W.size + 2 * y.size)))
    x = dev(128, 64, 56, 56)
    arg = cuda.device_array((128, 64, 28, 28), np.uint8)
    out.append(("maxpool2d_forward 128x64x56x56 2x2/2",
                lambda: P.maxpool2d_forward(x, 2, 2, 2, 2, 0, 0, 28, 28, arg), None,
                4 * x.size + 5 * x.size // 4))
    out.append(("global_avgpool2d_forward 128x64x56x56",
                lambda: P.global_avgpool2d_forward(x), None, 4 * x.size))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args(argv)
    cuda, why = gpu_or_reason()
    if cuda is None:
        print(f"gpu_bench: skipped: {why}")
        return 0
    name, cc, sms, pf, pb = peaks(cuda)
    print(f"{name}: compute capability {cc[0]}.{cc[1]}, {sms} SMs, peak FP32 {pf:,.0f} GFLOP/s, "
          f"DRAM {pb:,.0f} GB/s")
    repeat = args.repeat or (3 if args.quick else 10)
    print(f"{'kernel':<52} {'ms':>9} {'achieved':>16} {'of peak':>8}")
    for label, fn, flops, nbytes in cases(cuda, args.quick):
        ms = best_ms(cuda, fn, repeat)
        if flops:
            rate, peak, unit = flops / ms / 1e6, pf, "GFLOP/s"
        else:
            rate, peak, unit = nbytes / ms / 1e6, pb, "GB/s"
        print(f"{label:<52} {ms:9.3f} {rate:>8,.0f} {unit:<7} {100 * rate / peak:7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
