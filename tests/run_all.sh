#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run runs the README's command, which runs
# this file).  Install first:  pip install -e ".[test]"   (pytest, the peers PyTorch and
# scikit-learn, mpi4py + mpich, numba-cuda with its CUDA 13 compiler libraries, asv).
#
#   DLKIT_DATA="$(realpath ../shared/data)" tests/run_all.sh [pytest options, e.g. -x]
#
# DLKIT_DATA: a folder holding fashion-mnist/, aclImdb.tar.gz and tinyshakespeare/; without it
# the data tests (training on real data, the tutorial) skip, saying so in one line each.
#
# Three steps; each runs even if an earlier one failed, and the exit status is 1 if any did:
#   1. python -m pytest -q tests      everything; without a GPU tests/cuda skips (one line)
#   2. the CUDA kernels under Numba's CUDA simulator (no GPU needed): the simulator runs each
#      GPU thread as Python, so two pytest-xdist workers use both cores (9 -> 4 min on 2 cores)
#   3. python -m asv check --python=same   the benchmark suites import, their params are valid
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
step() {
    local name=$1
    shift
    local t0=$SECONDS cmd="$*"
    echo "=== run_all: $name: ${cmd#selected }"
    if "$@"; then
        echo "=== run_all: $name passed ($((SECONDS - t0)) s)"
    else
        echo "=== run_all: $name FAILED ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}

if [ -z "${DLKIT_DATA:-}" ] || [ ! -d "$DLKIT_DATA" ]; then
    echo "=== run_all: DLKIT_DATA is not a folder (${DLKIT_DATA:-unset}): the data tests will skip"
fi
selected() {   # pytest, where "no tests selected" (exit 5) is a pass when options were given
    local rc=0
    "$@" || rc=$?
    [ "$rc" -eq 5 ] && [ "$EXTRA" -gt 0 ] && { echo "(no tests selected here)"; return 0; }
    return "$rc"
}
EXTRA=$#
step "1/3 tests" selected python -m pytest -q tests "$@"
step "2/3 CUDA simulator" selected env NUMBA_ENABLE_CUDASIM=1 python -m pytest -q -n 2 tests/cuda "$@"
step "3/3 asv check" python -m asv check --python=same

if [ ${#failed[@]} -gt 0 ]; then
    echo "=== run_all: FAILED: ${failed[*]} (total $SECONDS s)"
    exit 1
fi
echo "=== run_all: all passed (total $SECONDS s)"
