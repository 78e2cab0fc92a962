"""dlkit.threads: the threading settings import dlkit chooses, and the user's overrides.

Each case runs in a fresh process: the layer and OpenMP's waiting are fixed once Numba's pool
or libgomp has started."""
import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os
import numpy as np
import dlkit
from dlkit import layers as L, random, threads
model = L.Dense(4, activation="relu")
_, params = model.init(random.key(0), (8,))
y, _ = model.forward(params, np.ones((256, 8), np.float32))   # starts Numba's pool
import numba
print(json.dumps(dict(threads.configure(), running=numba.threading_layer(),
                      omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))))
"""


def probe(**env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    r = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def tbb_installed():
    from dlkit import threads
    return threads._tbb_loadable()


def test_default_is_tbb_where_installed_else_passive_openmp():
    got = probe()
    assert got["layer_by"] == "dlkit"
    if tbb_installed():
        assert got["running"] == got["layer"] == "tbb"
        assert got["omp_wait_policy"] is None     # left alone: other OpenMP libraries read it
    else:
        assert got["running"] == "omp"
        assert got["omp_wait_policy"] == "PASSIVE"


def test_tbb_is_installed_with_dlkit_on_linux_x86_64():
    import platform
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("the tbb wheel is a dependency on Linux and Windows x86-64 only")
    assert tbb_installed(), "setup.cfg's install_requires should have brought the tbb wheel"


def test_user_layer_is_kept_and_openmp_waits_passively():
    got = probe(NUMBA_THREADING_LAYER="omp")
    assert (got["layer"], got["layer_by"], got["running"]) == ("omp", "user", "omp")
    assert got["omp_wait_policy"] == "PASSIVE"
    assert (got["omp_wait"], got["omp_wait_by"]) == ("OMP_WAIT_POLICY=PASSIVE", "dlkit")


def test_user_openmp_waiting_is_kept():
    got = probe(NUMBA_THREADING_LAYER="omp", GOMP_SPINCOUNT="10000")
    assert got["omp_wait_policy"] is None
    assert (got["omp_wait"], got["omp_wait_by"]) == ("GOMP_SPINCOUNT=10000", "user")


def test_info_command_says_what_was_chosen():
    r = subprocess.run([sys.executable, "-m", "dlkit", "info"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("dlkit ")
    layer = next(line for line in lines if line.startswith("threading layer:"))
    assert layer.startswith("threading layer: workqueue (asked for 'workqueue', chosen by user")
    assert any(line.startswith("threads: ") for line in lines)
    assert any(line.startswith("BLAS: ") and "1 thread" in line for line in lines)
    bad = subprocess.run([sys.executable, "-m", "dlkit", "nonsense"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "invalid choice: 'nonsense'" in bad.stderr
