"""Every CUDA kernel compiles with the real CUDA compiler (NVVM, sm_90) and float32 kernels
emit no float64 instructions: what the simulator cannot check.  Runs tests/cuda/ptx_check.py in
a subprocess without the simulator; skips where libnvvm is missing (numba-cuda installed
without its [cu12]/[cu13] toolkit extra), except in CI, which installs it; an import error in
the checker fails."""
import os
import subprocess
import sys

import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)


def test_every_kernel_compiles_to_ptx_in_its_dtype():
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ptx_check.py")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True,
                       timeout=900)
    if r.returncode == 77:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("CI installs numba-cuda[cu13], yet: " + r.stdout.strip(), pytrace=False)
        pytest.skip(r.stdout.strip())
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "0 problems, 0 launcher errors" in r.stdout
