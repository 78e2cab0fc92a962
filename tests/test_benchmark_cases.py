"""The peer-comparison cases (benchmarks/peer_*.py) still build against today's API.

`asv check` imports the asv suites but runs nothing, and benchmarks/compare_torch.py is run by
hand, so a change to the API a case builds on (a script's parse_args, a layer's arguments)
would only show when someone next times it.  Each dlkit side is built and run once here on its
own inputs; the PyTorch side is left to compare_torch (it needs torch, and its settings).
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compare_torch import all_cases  # noqa: E402

CASES = {name: case for name, case in all_cases().items() if not case.needs_data}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dlkit_side_builds_and_runs_once(name):
    CASES[name].dlkit()()
