"""Shared test fixtures.  Data-set tests find the data through $DLKIT_DATA (.ci/run sets it to
../shared/data); without it they skip with a reason that says how to provide it.

Peers (PyTorch, scikit-learn) that some tests compare against come from the ``test`` extra's
``peers`` companion (``pip install -e ".[test,peers]"``).  ``need("torch")`` imports one: outside
CI a missing peer skips the test; with the environment variable ``CI`` set (.ci/run sets it) a
missing peer FAILS the test, so a CI run can never pass while quietly skipping every comparison
with a trusted framework."""
import importlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

import dlkit  # noqa: F401  (pins BLAS, checks the kernels package)


@pytest.fixture
def data_dir():
    d = os.environ.get("DLKIT_DATA")
    if not d or not os.path.isdir(d):
        pytest.skip("data set tests need DLKIT_DATA=<folder with fashion-mnist/, aclImdb.tar.gz, "
                    "tinyshakespeare/>; .ci/run points it at ../shared/data")
    return d


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def in_ci():
    """True when the environment variable CI is set to anything but '', '0' or 'false'."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


_PEER_TESTS = {}     # nodeid -> peer module, for the closing summary


def need(module):
    """Import and return a peer module (``"torch"``, ``"sklearn.neural_network"``).  Missing:
    skip outside CI, fail in CI (where .ci/run installs the ``peers`` extra)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
    _PEER_TESTS[test] = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        msg = (f"this test compares with {module}, which is not installed ({e}); "
               'pip install -e ".[test,peers]"')
        if in_ci():
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)


def pytest_terminal_summary(terminalreporter):
    """One line per peer comparison with its outcome, so a CI log shows them ran and passed."""
    if not _PEER_TESTS:
        return
    outcome = {}
    for key in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(key, []):
            if getattr(rep, "nodeid", None) in _PEER_TESTS:
                if key != "passed" or outcome.get(rep.nodeid) is None:
                    outcome[rep.nodeid] = key
    terminalreporter.section("comparisons with peers (tests/conftest.py need())")
    for test, peer in sorted(_PEER_TESTS.items()):
        terminalreporter.line(f"{outcome.get(test, '?').upper():8s} {peer:8s} {test}")


@pytest.fixture(name="need")
def need_fixture():
    """The ``need`` function as a fixture, for test modules anywhere under tests/."""
    return need


def run_threads(fn, args):
    """Run fn(a) for every a in args, each in its own thread, all at once; returns the
    exceptions they raised (a list, empty when all succeeded)."""
    import threading
    errors = []

    def work(a):
        try:
            fn(a)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.fixture(name="run_threads")
def run_threads_fixture():
    """The ``run_threads`` function as a fixture."""
    return run_threads


# ---------------------------------------------------------------------------------------------
# docs/errors.md: with DLKIT_ERROR_TABLE=<path>, every exception a test expects through
# `with pytest.raises(...)` is recorded (test, type, message) and written as a markdown table.
#   DLKIT_ERROR_TABLE=docs/errors.md python -m pytest -q tests/api tests/test_training.py
_TABLE = os.environ.get("DLKIT_ERROR_TABLE")
_RECORDS = []

if _TABLE:
    _raises = pytest.raises

    class _Recorder:
        def __init__(self, cm):
            self.cm = cm

        def __enter__(self):
            return self.cm.__enter__()

        def __exit__(self, *exc):
            handled = self.cm.__exit__(*exc)
            if exc[0] is not None and handled:
                test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
                _RECORDS.append((test, exc[0].__name__, str(exc[1])))
            return handled

    def _recording_raises(*args, **kwargs):
        cm = _raises(*args, **kwargs)
        return _Recorder(cm) if len(args) == 1 else cm

    pytest.raises = _recording_raises

    # what differs from machine to machine and run to run, so the table does not churn
    _VOLATILE = [(re.compile(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+"), "<tmp>"),
                 (re.compile(r"/tmp/[^/\s]*tmp[^/\s]*"), "<tmp>"),
                 (re.compile(re.escape(str(Path(__file__).resolve().parent.parent))), "<repo>"),
                 (re.compile(r"\b[0-9a-f]{32,64}\b"), "<hash>"),
                 (re.compile(r"\b0x[0-9a-f]{6,}\b"), "0x..")]
    if os.environ.get("DLKIT_DATA"):
        _VOLATILE.append((re.compile(re.escape(os.environ["DLKIT_DATA"].rstrip("/"))),
                          "$DLKIT_DATA"))

    def pytest_sessionfinish(session):
        def cell(s):
            for pattern, repl in _VOLATILE:
                s = pattern.sub(repl, s)
            s = " ".join(s.split()).replace("|", "\\|")
            return s if len(s) < 300 else s[:297] + "..."
        lines = ["# Errors for bad input", "",
                 "Every bad-input case the test suite checks, with the exception it raises and "
                 "its message (generated by the tests themselves: `DLKIT_ERROR_TABLE=docs/"
                 "errors.md python -m pytest -q tests/api tests/test_training.py`). All are "
                 "raised on the host before any kernel runs; the tests also check that params "
                 "and optimizer state are unchanged afterwards where a call could change them.",
                 "", "| test (case) | exception | message |", "|---|---|---|"]
        seen = set()
        for test, name, msg in _RECORDS:
            if (test, msg) not in seen:
                seen.add((test, msg))
                lines.append(f"| `{cell(test)}` | {name} | {cell(msg)} |")
        with open(_TABLE, "w") as f:
            f.write("\n".join(lines) + "\n")
