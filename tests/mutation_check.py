#!/usr/bin/env python
"""Mutation check: plant deliberate bugs in a throw-away copy of the committed tree and confirm
the tests that guard each one fail.  Not part of the suite (the file name does not start with
test_) and not run by CI; run it by hand:

    DLKIT_DATA=../shared/data python tests/mutation_check.py [--keep] [NAME ...]

The copy is `git archive HEAD` unpacked in a temporary folder (the working tree, the index and
.git are never touched), with its own NUMBA_CACHE_DIR.  First the targeted tests run on the
unmutated copy (they must pass), then for each mutation: apply it (one exact text replacement
that must match once), run its tests, restore the file.  A mutation is CAUGHT when pytest
exits 1 (tests failed).  Prints one line per mutation and exits 1 if any survived.

The issue asked for "a biased variance": nothing in dlkit computes a variance (no batch norm
yet), so the statistics bug planted is its nearest relative, the wrong divisor of a batch mean:
softmax cross-entropy averaged over N - 1 examples instead of N.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (file, old text, new text, pytest arguments)
MUTATIONS = {
    "lstm-swap-g-o-gates": (
        "kernels/cpu/recurrent_lstm.py", "_u2, _u3 = _u(2), _u(3)", "_u2, _u3 = _u(3), _u(2)",
        ["tests/kernels/test_recurrent.py", "-k", "lstm"]),
    "dense-drop-bias-grad": (
        "kernels/cpu/dense.py", "db[j] += g[n, j]", "db[j] += 0 * g[n, j]",
        ["tests/kernels/test_dense.py"]),
    "conv-padding-off-by-one": (
        "dlkit/layers/conv.py", "        return pt, pl, OH, OW",
        "        return pt + 1, pl, OH, OW",
        ["tests/api/test_conv_layers.py"]),
    "loss-mean-divisor-n-minus-1": (
        "kernels/cpu/losses.py", "inv_n = logits.dtype.type(1.0 / N)",
        "inv_n = logits.dtype.type(1.0 / max(N - 1, 1))",
        ["tests/kernels/test_losses.py"]),
    "skip-the-shuffle": (
        "dlkit/data/batching.py",
        "return np.arange(n) if key is None else generator(key).permutation(n)",
        "return np.arange(n)",
        ["tests/api/test_data.py", "-k", "batches"]),
}


def run_tests(tree, args, env):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        *args], cwd=tree, env=env, capture_output=True, text=True)
    tail = [ln for ln in r.stdout.splitlines() if ln.strip()][-1:] or [r.stderr[-200:]]
    return r.returncode, tail[0], time.perf_counter() - t0


def main(argv):
    keep = "--keep" in argv
    names = [a for a in argv if not a.startswith("--")] or list(MUTATIONS)
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-mutants-"))
    tree, cache = tmp / "tree", tmp / "numba-cache"
    tree.mkdir()
    cache.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(tree), CI="")
    print(f"copy of HEAD in {tree}")
    try:
        all_args = []
        for n in names:
            all_args += [a for a in MUTATIONS[n][3] if a.startswith("tests/")]
        rc, tail, sec = run_tests(tree, sorted(set(all_args)), env)
        print(f"{'baseline':30s} rc={rc} {sec:6.1f} s  {tail}")
        if rc != 0:
            print("the unmutated copy fails its tests: nothing to learn from mutants")
            return 2
        survived = []
        for n in names:
            path, old, new, args = MUTATIONS[n]
            f = tree / path
            src = f.read_text()
            if src.count(old) != 1:
                print(f"{n:30s} cannot apply: the text occurs {src.count(old)} times in {path}")
                survived.append(n)
                continue
            f.write_text(src.replace(old, new))
            try:
                rc, tail, sec = run_tests(tree, args, env)
            finally:
                f.write_text(src)
            caught = rc == 1
            if not caught:
                survived.append(n)
            print(f"{n:30s} {'CAUGHT ' if caught else 'SURVIVED'} rc={rc} {sec:6.1f} s  {tail}")
        print(f"{len(names) - len(survived)} of {len(names)} mutations caught"
              + (f"; survived: {', '.join(survived)}" if survived else ""))
        return 1 if survived else 0
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
