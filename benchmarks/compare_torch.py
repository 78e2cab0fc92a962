#!/usr/bin/env python
"""Side-by-side timing of dlkit and PyTorch (CPU) on the same work, in one run.

    python benchmarks/compare_torch.py                 # every case
    python benchmarks/compare_torch.py -k dense mlp    # cases whose name contains a word
    python benchmarks/compare_torch.py --list

Method (DESIGN.md, "Benchmarks"): each framework runs in its own process (their thread pools
slow each other down when they share one), with the same thread count (``--threads``, default
2); the processes alternate for ``--rounds`` rounds; each process warms up, then reports the
best of ``--repeat`` timings; the table shows the best over all rounds.  PyTorch gets every
setting a case lists (its default; glibc malloc tuned with MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_ = 1e9; channels-last or flush-denormal where they apply) and the ratio
is taken against its fastest.  Ratio = dlkit time / PyTorch time: below 1 means dlkit is faster.

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


def worker(name, framework, setting, threads):
    case = all_cases()[name]
    if framework == "dlkit":
        import numba
        numba.set_num_threads(threads)
        fn = case.dlkit()
    else:
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        fn = case.torch(setting)
    print(json.dumps({"seconds": best_time(fn, case.repeat)}))


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
    return json.loads(r.stdout.strip().splitlines()[-1])["seconds"]


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", nargs="*", default=[], help="only cases whose name contains a word")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--list", action="store_true")
    p.add_argument("--json", help="also write the results to this file")
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
    results = {}
    for name, case in cases.items():
        settings = [s for base in case.settings for s in (base, base + "+malloc")]
        best = {"dlkit": float("inf"), **{s: float("inf") for s in settings}}
        for _ in range(a.rounds):
            best["dlkit"] = min(best["dlkit"], run_worker(name, "dlkit", "default", a.threads))
            for s in settings:
                best[s] = min(best[s], run_worker(name, "torch", s, a.threads))
        tset = min(settings, key=best.get)
        ratio = best["dlkit"] / best[tset]
        others = ", ".join(f"{s} {fmt(best[s]).strip()}" for s in settings)
        print(f"{name:28s} {fmt(best['dlkit'])} {fmt(best[tset])}  {ratio:6.2f}  {tset} "
              f"({others})", flush=True)
        results[name] = {"dlkit": best["dlkit"], "torch": {s: best[s] for s in settings},
                         "torch_best_setting": tset, "ratio": ratio}
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
