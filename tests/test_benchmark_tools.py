"""The benchmark tools a contributor runs by hand: benchmarks/record.sh's argument checks, and
benchmarks/regress.py catching a planted slowdown (its false-alarm rate is measured with
``--self-test 5``, docs/benchmarking.md; too slow for the suite)."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_record_needs_a_commit():
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "record.sh")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "name at least one commit" in r.stderr
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "record.sh"), "-h"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "-m MACHINE" in r.stdout


def test_regress_rejects_a_bad_commit():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "regress.py"), "no-such-rev"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "'no-such-rev' is not a commit" in r.stderr


def test_regress_flags_a_planted_slowdown(tmp_path):
    """HEAD against a copy of HEAD whose softmax_cross_entropy sleeps 1 ms per call: the
    20-microsecond (128, 10) case must be confirmed slower, with a ratio far above 1.3."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "regress.py"), "--self-test", "1",
         "--rounds", "3", "-b", r"SoftmaxCrossEntropy\.time_softmax_cross_entropy\(\(128, 10"],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DLKIT_REGRESS_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    planted = [line for line in r.stdout.splitlines() if "planted" in line]
    assert len(planted) == 1 and "1 compared" in planted[0] and "1 confirmed" in planted[0], \
        r.stdout
    ratio = float(re.search(r"flagged .* ([0-9.]+)x$", r.stdout, re.M).group(1))
    assert ratio > 5, r.stdout
