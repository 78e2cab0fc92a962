#!/usr/bin/env bash
# Record benchmark results for commits into the kept history, benchmarks/results/<machine>/.
#
#   benchmarks/record.sh [-m MACHINE] [-b REGEX] [-r ROUNDS] COMMIT...
#
# Each COMMIT (a hash, a branch, HEAD~3; A..B means every commit of that range) is built as a
# wheel and installed in asv's virtualenv (.asv/env, the versions pinned in asv.conf.json), and
# the suite runs against it: the benchmarks of this checkout, the dlkit of that commit.  A
# commit already recorded for every selected benchmark is skipped.  Commit the new JSON files
# under benchmarks/results/ to keep them; then benchmarks/publish.py builds the dashboard.
#
#   -m MACHINE  the results folder's name: default "reference" (this project's reference
#               machine, 2 cores); on your own machine give it a name of its own (see
#               docs/benchmarking.md), so its figures never mix with another machine's
#   -b REGEX    only benchmarks whose name matches (asv --bench), e.g. 'bench_dense|ZooStep'
#   -r ROUNDS   asv rounds (default 2: each benchmark's processes interleave with the others')
#
# The machine's description (CPU, cores, memory, the OpenBLAS kernels in use) is written to
# benchmarks/results/<machine>/machine.json.  OPENBLAS_CORETYPE is unset here: the history
# records the BLAS kernels this machine really runs.  DLKIT_DATA defaults to ../shared/data
# when it exists (the data-loading benchmarks skip without it).
set -euo pipefail
cd "$(dirname "$0")/.."

machine=reference bench="" rounds=2
while getopts "m:b:r:h" opt; do
    case $opt in
        m) machine=$OPTARG ;;
        b) bench=$OPTARG ;;
        r) rounds=$OPTARG ;;
        *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    echo "record.sh: name at least one commit (e.g. HEAD, or main~15..main); -h for help" >&2
    exit 2
fi

hashes=$(mktemp)
trap 'rm -f "$hashes"' EXIT
for c in "$@"; do
    if [[ $c == *..* ]]; then
        git rev-list --reverse "$c"
    else
        git rev-parse --verify "$c^{commit}"
    fi
done >"$hashes"

unset OPENBLAS_CORETYPE
if [ -z "${DLKIT_DATA:-}" ] && [ -d ../shared/data ]; then
    export DLKIT_DATA="$(realpath ../shared/data)"
fi

python - "$machine" <<'EOF'
import os, platform, subprocess, sys
import scipy.linalg.cython_blas  # noqa: F401  (loads the OpenBLAS that Numba's GEMMs call)
from threadpoolctl import threadpool_info
blas = ", ".join(f"OpenBLAS {d['version']} {d['architecture']}" for d in threadpool_info()
                 if d["internal_api"] == "openblas") or "no OpenBLAS"
cpu = platform.processor() or platform.machine()
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", sys.argv[1],
                "--os", f"{platform.system()} {platform.release()}", "--arch", platform.machine(),
                "--cpu", f"{cpu}; BLAS: {blas}", "--num_cpu", str(os.cpu_count()),
                "--ram", f"{ram // 2**30} GiB"], check=True, stdout=subprocess.DEVNULL)
EOF

status=0
python -m asv run --machine "$machine" --skip-existing-successful --show-stderr \
    -a rounds="$rounds" ${bench:+--bench "$bench"} "HASHFILE:$hashes" || status=$?
echo "recorded $(wc -l <"$hashes") commit(s) in benchmarks/results/$machine/"
if [ $status -ne 0 ]; then
    echo "record.sh: some benchmarks failed (asv exit $status; see above): a benchmark newer" \
         "than a commit fails there and is left out of its graph" >&2
fi
exit $status
