#!/usr/bin/env python
"""Side-by-side timing of dlkit and PyTorch (CPU) on the same work, in one run.

    python benchmarks/compare_torch.py                 # every case
    python benchmarks/compare_torch.py -k dense mlp    # cases whose name contains a word
    python benchmarks/compare_torch.py --list
    python benchmarks/compare_torch.py -k step --memory   # also the peak memory of each step

Method (DESIGN.md, "Benchmarks"): each framework runs in its own process (their thread pools
slow each other down when they share one), with the same thread count (``--threads``, default
2); the processes alternate for ``--rounds`` rounds; each process warms up, then reports the
best of ``--repeat`` timings; the table shows the best over all rounds.  PyTorch gets every
setting a case lists (its default; glibc malloc tuned with MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_ = 1e9; channels-last or flush-denormal where they apply) and the ratio
is taken against its fastest.  Ratio = dlkit time / PyTorch time: below 1 means dlkit is faster.

Memory (``--memory``): each worker process, after its timings, starts the kernel's count of
its peak resident size again (/proc/self/clear_refs, Linux) and runs the work once more; the
table gives that peak (the interpreter, the framework, the model, its optimizer state,
activations and workspace) and the peak less the process's size just after importing the
framework (what the work itself holds), for dlkit and for PyTorch's fastest setting.

``--json FILE`` writes the results with the commit, date and BLAS kernels they were measured
at; ``--json benchmarks/results/reference/peers.json`` gives the dashboard its PyTorch ratios
(benchmarks/publish.py).

Cases live in ``benchmarks/peer_*.py``: each defines ``CASES``, a dict name -> Case.
"""
import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks.peer_*`` importable
    sys.path.insert(0, str(ROOT))
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


class Case(NamedTuple):
    """dlkit(): returns a zero-argument function doing the work once.
    torch(setting): the same for PyTorch under ``setting`` (one of ``settings``).
    settings: PyTorch settings to try, besides "malloc" which is added to each."""
    description: str
    dlkit: Callable
    torch: Callable
    settings: tuple = ("default",)
    repeat: int = 20
    needs_data: bool = False


def all_cases():
    cases = {}
    for m in sorted(pkgutil.iter_modules([str(ROOT / "benchmarks")]), key=lambda m: m.name):
        if m.name.startswith("peer_"):
            cases.update(importlib.import_module(f"benchmarks.{m.name}").CASES)
    return cases


def best_time(fn, repeat):
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def reset_peak_memory():
    """Make the process's peak resident size (VmHWM, and getrusage's ru_maxrss, which asv's
    ``peakmem_`` reads) start again from the current size, so what follows is measured on its
    own, without the JIT compilation or warm-up before it.  Linux only (/proc/self/clear_refs);
    elsewhere the peak keeps counting from process start."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def resident_bytes(field):
    """VmRSS (now) or VmHWM (peak) of this process from /proc/self/status; 0 elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
    except (OSError, StopIteration):
        return 0


def worker(name, framework, setting, threads):
    case = all_cases()[name]
    if framework == "dlkit":
        import numba

        import dlkit  # noqa: F401
        numba.set_num_threads(threads)
        imported = resident_bytes("VmRSS")
        fn = case.dlkit()
    else:
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        imported = resident_bytes("VmRSS")
        fn = case.torch(setting)
    seconds = best_time(fn, case.repeat)
    reset_peak_memory()
    fn()
    peak = resident_bytes("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "imported_bytes": imported}))


def run_worker(name, framework, setting, threads):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    base = setting
    if setting.endswith("+malloc"):
        env.update(MALLOC)
        base = setting[:-len("+malloc")]
    r = subprocess.run([sys.executable, "-m", "benchmarks.compare_torch", "--worker", framework,
                        "--case", name, "--setting", base, "--threads", str(threads)],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{framework} worker for {name} ({setting}) failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def blas_kernels():
    """Which kernels scipy's and numpy's OpenBLAS run here (threadpoolctl), and any
    OPENBLAS_CORETYPE that forces them: dlkit's GEMMs, and scikit-learn's, depend on it (on an
    AVX-512 CPU the AVX2 "Haswell" kernels run float32 GEMMs about 1.8x slower than "SkylakeX")."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's OpenBLAS, the one Numba calls)
    from threadpoolctl import threadpool_info
    libs = ", ".join(f"{Path(d['filepath']).parent.name.split('.')[0]} OpenBLAS {d['version']} "
                     f"{d['architecture']}" for d in threadpool_info()
                     if d["internal_api"] == "openblas")
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return f"BLAS kernels: {libs or 'no OpenBLAS'}" + (
        f" (forced by OPENBLAS_CORETYPE={forced})" if forced else "")


def fmt(s):
    return f"{s * 1e3:9.3f} ms" if s < 1 else f"{s:9.3f} s "


def mib(b):
    return f"{b / 2**20:7.1f} MiB"


def commit_and_date():
    r = subprocess.run(["git", "log", "-1", "--format=%H %cI"], cwd=ROOT, capture_output=True,
                       text=True)
    return tuple(r.stdout.split()) if r.returncode == 0 else ("", "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", nargs="*", default=[], help="only cases whose name contains a word")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--list", action="store_true")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--memory", action="store_true",
                   help="also print each case's peak resident memory (see the docstring)")
    p.add_argument("--worker", choices=["dlkit", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--setting", default="default", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.case, a.worker, a.setting, a.threads)
    cases = {n: c for n, c in all_cases().items() if not a.k or any(w in n for w in a.k)}
    if a.list:
        for n, c in cases.items():
            print(f"{n:28s} {c.description}")
        return
    if any(c.needs_data for c in cases.values()) and not os.environ.get("DLKIT_DATA"):
        print("note: cases that need data look in $DLKIT_DATA, ~/.cache/dlkit, "
              "/usr/share/datasets")
    print(f"dlkit vs PyTorch, {a.threads} threads, best of {a.rounds} alternating rounds")
    print(blas_kernels() + "; PyTorch: its own MKL/oneDNN\n")
    print(f"{'case':28s} {'dlkit':>12s} {'torch best':>12s}  {'ratio':>6s}  torch setting "
          "(all settings)")
    results, memory = {}, []
    for name, case in cases.items():
        settings = [s for base in case.settings for s in (base, base + "+malloc")]
        best = {"dlkit": None, **{s: None for s in settings}}
        for _ in range(a.rounds):
            for s in ["dlkit", *settings]:
                r = run_worker(name, "dlkit" if s == "dlkit" else "torch",
                               "default" if s == "dlkit" else s, a.threads)
                if best[s] is None or r["seconds"] < best[s]["seconds"]:
                    best[s] = r
        tset = min(settings, key=lambda s: best[s]["seconds"])
        ratio = best["dlkit"]["seconds"] / best[tset]["seconds"]
        others = ", ".join(f"{s} {fmt(best[s]['seconds']).strip()}" for s in settings)
        print(f"{name:28s} {fmt(best['dlkit']['seconds'])} {fmt(best[tset]['seconds'])}  "
              f"{ratio:6.2f}  {tset} ({others})", flush=True)
        results[name] = {"dlkit": best["dlkit"]["seconds"],
                         "torch": {s: best[s]["seconds"] for s in settings},
                         "torch_best_setting": tset, "ratio": ratio,
                         "peak_bytes": {"dlkit": best["dlkit"]["peak_bytes"],
                                        "torch": best[tset]["peak_bytes"]},
                         "imported_bytes": {"dlkit": best["dlkit"]["imported_bytes"],
                                            "torch": best[tset]["imported_bytes"]}}
        memory.append((name, best["dlkit"], best[tset]))
    if a.memory:
        print(f"\npeak resident memory during one more run of the work, and that peak less the "
              f"size after importing the framework\n{'case':28s} {'dlkit peak':>11s} "
              f"{'torch peak':>11s}   {'dlkit work':>11s} {'torch work':>11s}")
        for name, d, t in memory:
            print(f"{name:28s} {mib(d['peak_bytes'])} {mib(t['peak_bytes'])}   "
                  f"{mib(d['peak_bytes'] - d['imported_bytes'])} "
                  f"{mib(t['peak_bytes'] - t['imported_bytes'])}")
    if a.json:
        commit, date = commit_and_date()
        Path(a.json).write_text(json.dumps(
            {"commit": commit, "date": date, "threads": a.threads, "rounds": a.rounds,
             "blas": blas_kernels(), "cases": results}, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
