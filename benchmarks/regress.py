#!/usr/bin/env python
"""Did a commit make anything slower?  A regression check for a noisy, shared machine.

    python benchmarks/regress.py                      # HEAD against its parent
    python benchmarks/regress.py main my-branch       # any two commits (base, then head)
    python benchmarks/regress.py -b 'Dense|ZooStep'   # only benchmarks matching a regex
    python benchmarks/regress.py --self-test 5        # false alarms and a planted slowdown

Run it before submitting a kernel change (not in CI: its machine is shared).  It times the asv
suites of this checkout (``time_`` benchmarks; the compile, data-loading, RBM-on-Fashion-MNIST
and CUDA suites left out) against the dlkit of each commit, exported from git.

How it avoids crying wolf:

* **Interleaved.**  One worker process per commit, both alive at once; for each benchmark both
  run its ``setup``, then the parent asks them for timings in turn, A B, B A, A B..., for
  ``--rounds`` rounds, so a burst of load from elsewhere falls on both sides.  Each side's
  figure is its fastest sample (load only ever adds time).
* **A factor, not a p-value.**  A benchmark is suspect when head / base >= ``--factor``
  (default 1.3).
* **Confirmed before reported.**  Every suspect is timed again, twice, each time in two fresh
  workers with twice the rounds; only a suspect still >= the factor both times is reported.

Output: one line per confirmed regression (benchmark, base and head time, ratio), then a
summary "N compared, K suspect, M confirmed".  Exit status 1 when something is confirmed.

``--self-test N`` measures the check itself on HEAD: N runs of HEAD against HEAD (every alarm
is a false alarm), then N runs against a copy of HEAD whose ``losses.softmax_cross_entropy``
wrapper sleeps 1 ms per call (every benchmark using it must be flagged, every time).
"""
import argparse
import importlib
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIRMATIONS = 2        # fresh re-runs a suspect must stay slower in before it is reported
SKIP = r"Compile|FirstStep|DataLoading|RBMFashion|Cuda"
SLOWED = """

import time as _time
_unslowed_softmax_cross_entropy = softmax_cross_entropy


def softmax_cross_entropy(*args, **kwargs):     # planted by regress.py --self-test
    _time.sleep(1e-3)
    return _unslowed_softmax_cross_entropy(*args, **kwargs)
"""


# ------------------------------------------------------------------ the worker (one commit)

def _suites():
    """{name: (class, method name, params)} for every ``time_`` benchmark of this checkout's
    benchmarks package, imported as a package without putting the checkout on sys.path."""
    spec = importlib.util.spec_from_file_location(
        "benchmarks", ROOT / "benchmarks" / "__init__.py",
        submodule_search_locations=[str(ROOT / "benchmarks")])
    sys.modules["benchmarks"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["benchmarks"])
    found = {}
    for path in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        for cname, cls in vars(module).items():
            if (not isinstance(cls, type) or cls.__module__ != module.__name__
                    or cname.startswith("_")):          # asv skips "_" names too
                continue
            for mname in sorted(m for m in dir(cls) if m.startswith("time_")):
                for combo in itertools.product(*getattr(cls, "params", [])):
                    args = ", ".join(map(repr, combo))
                    found[f"{path.stem}.{cname}.{mname}({args})"] = (cls, mname, combo)
    return found


def worker():
    """Answer the parent's JSON-line requests: list, setup, time, teardown."""
    suites, bench = _suites(), None
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "list":
            import dlkit
            reply = {"dlkit": dlkit.__file__, "names": sorted(suites)}
        elif req["op"] == "setup":
            cls, mname, combo = suites[req["name"]]
            bench = (cls(), mname, combo)
            try:
                if hasattr(bench[0], "setup"):
                    bench[0].setup(*combo)
                getattr(bench[0], mname)(*combo)             # warm-up
                reply = "ok"
            except NotImplementedError as e:
                reply = f"skipped: {e}"
            except Exception as e:  # noqa: BLE001 - reported by the parent, the run goes on
                reply = f"failed: {type(e).__name__}: {e}"
        elif req["op"] == "time":
            obj, mname, combo = bench
            fn, number = getattr(obj, mname), req["number"]
            start = time.perf_counter()
            for _ in range(number):
                fn(*combo)
            reply = (time.perf_counter() - start) / number
        else:
            obj, _, combo = bench
            reply = "ok"
            try:
                if hasattr(obj, "teardown"):
                    obj.teardown(*combo)
            except Exception as e:  # noqa: BLE001 - after a failed setup, say so and go on
                reply = f"teardown failed: {type(e).__name__}: {e}"
            bench = None
        print(json.dumps(reply), flush=True)


# ------------------------------------------------------------------ the parent

class Side:
    """A worker process for the dlkit exported to ``tree``."""

    def __init__(self, tree, cache):
        env = dict(os.environ, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(cache))
        env.pop("OPENBLAS_CORETYPE", None)      # time the BLAS kernels this machine really runs
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()),
                                      "--worker"], cwd=tree, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark worker died during {req}")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def export(rev, slowed=False):
    """The folder holding dlkit/ and kernels/ of commit ``rev`` (a git archive, made once and
    kept in ``$DLKIT_REGRESS_DIR``, default ~/.cache/dlkit/regress, with its Numba cache, so a
    second comparison of the same commit compiles nothing)."""
    root = Path(os.environ.get("DLKIT_REGRESS_DIR", Path.home() / ".cache" / "dlkit" / "regress"))
    dest = root / (rev + ("-slowed" if slowed else ""))
    if not dest.exists():
        root.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(dir=root, prefix=".part-"))
        archive = subprocess.run(["git", "archive", rev, "dlkit", "kernels"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(part)], input=archive, check=True)
        if slowed:
            with open(part / "dlkit" / "losses.py", "a") as f:
                f.write(SLOWED)
        part.rename(dest)
    return dest


def compare(a, b, names, rounds, min_sample, log=print):
    """{name: (base seconds, head seconds)}: interleaved timings of each benchmark (one that
    fails or skips on either side is left out, with a line saying why)."""
    out = {}
    for name in names:
        replies = [a.ask(op="setup", name=name), b.ask(op="setup", name=name)]
        for side, reply in zip(("base", "head"), replies):
            if reply != "ok" and not reply.startswith("skipped"):
                log(f"  {name} on {side}: {reply}")
        if all(r == "ok" for r in replies):
            one = a.ask(op="time", number=1)
            number = max(1, int(min_sample / max(one, 1e-9)))
            best = [float("inf"), float("inf")]
            for r in range(rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    best[i] = min(best[i], (a, b)[i].ask(op="time", number=number))
            out[name] = tuple(best)
        a.ask(op="teardown")
        b.ask(op="teardown")
    return out


def fmt(s):
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def check(base, head, pattern, rounds, factor, min_sample, slowed=False, log=print):
    """Compare two commits (full hashes); returns (number compared, suspects, confirmed:
    {name: (base seconds, head seconds)})."""
    trees = {"base": export(base), "head": export(head, slowed)}

    def pair():
        return (Side(trees["base"], trees["base"] / ".numba-cache"),
                Side(trees["head"], trees["head"] / ".numba-cache"))

    a, b = pair()
    for side, tree in ((a, trees["base"]), (b, trees["head"])):
        listing = side.ask(op="list")
        if not Path(listing["dlkit"]).is_relative_to(tree):
            raise RuntimeError(f"the worker imported {listing['dlkit']}, not the commit's "
                               f"dlkit in {tree}")
    names = [n for n in listing["names"] if re.search(pattern, n) and not re.search(SKIP, n)]
    first = compare(a, b, names, rounds, min_sample)
    a.close(), b.close()
    suspects = [n for n, (ta, tb) in first.items() if tb / ta >= factor]
    confirmed = {n: first[n] for n in suspects}
    for _ in range(CONFIRMATIONS):
        if not confirmed:
            break
        log(f"  {len(confirmed)} suspect(s), timing them again in fresh processes...")
        a, b = pair()
        again = compare(a, b, list(confirmed), 2 * rounds, min_sample, log)
        a.close(), b.close()
        confirmed = {n: t for n, t in again.items() if t[1] / t[0] >= factor}
    return len(first), suspects, confirmed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", nargs="?", help="the commit compared against (default: head's "
                   "parent)")
    p.add_argument("head", nargs="?", default="HEAD")
    p.add_argument("-b", "--bench", default="", help="only benchmarks matching this regex")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--factor", type=float, default=1.3)
    p.add_argument("--min-sample", type=float, default=0.02,
                   help="seconds per timing sample (calls are repeated to fill it)")
    p.add_argument("--self-test", type=int, metavar="N", default=0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker()
    head = rev_parse(a.head)
    base = rev_parse(a.base or f"{a.head}~1")
    if a.self_test:
        return self_test(head, a)
    print(f"regress: {head[:8]} against {base[:8]}, {a.rounds} interleaved rounds, "
          f"factor {a.factor}")
    t0 = time.time()
    n, suspects, confirmed = check(base, head, a.bench, a.rounds, a.factor, a.min_sample)
    for name, (ta, tb) in sorted(confirmed.items()):
        print(f"SLOWER  {name}: {fmt(ta)} -> {fmt(tb)} ({tb / ta:.2f}x)")
    print(f"{n} compared, {len(suspects)} suspect, {len(confirmed)} confirmed "
          f"({time.time() - t0:.0f} s)")
    return 1 if confirmed else 0


def rev_parse(rev):
    r = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"regress.py: {rev!r} is not a commit of {ROOT}")
    return r.stdout.strip()


def self_test(head, a):
    """N runs of head against itself, then N against head with a planted 1 ms sleep."""
    for slowed in (False, True):
        label = "planted 1 ms sleep in softmax_cross_entropy" if slowed else "against itself"
        for i in range(a.self_test):
            t0 = time.time()
            n, suspects, confirmed = check(head, head, a.bench, a.rounds, a.factor,
                                           a.min_sample, slowed)
            print(f"self-test, {head[:8]} {label}, run {i + 1}: {n} compared, {len(suspects)} "
                  f"suspect, {len(confirmed)} confirmed ({time.time() - t0:.0f} s)"
                  + "".join(f"\n    flagged {k} {v[1] / v[0]:.2f}x"
                            for k, v in sorted(confirmed.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
