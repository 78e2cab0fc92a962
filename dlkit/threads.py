"""dlkit's threading settings: chosen at import, so training stays fast on a busy machine.

dlkit's parallel kernels run on Numba's thread pool, which comes from one of three threading
layers: Intel TBB (``tbb``), OpenMP (``omp``, GNU libgomp on Linux) or Numba's own
``workqueue``.  Every parallel region ends when all its work is done; what its threads do while
they wait decides how a step fares when other processes compete for the cores.  Measured on
this project's 2-core machine (``benchmarks/busy_machine.py``, table in docs/performance.md):
with OpenMP's default waiting (spin about 300,000 times before sleeping) an idle worker keeps
spinning between regions, so dlkit's own threads wait whole scheduler slices behind a competing
process: beside a PyTorch training and a busy loop the CNN step took 6.2x its quiet time and
one MLP step in ten 44x.  OpenMP with passive waiting does not collapse but pays a futex
wake-up per region on a quiet machine (MLP step 0.92 instead of 0.58 ms).  TBB workers spin
briefly, then yield and sleep, and idle threads steal queued work: 2.9x and 5.3x under that
load, and the same quiet speed as OpenMP's default (0.59 ms).

So ``import dlkit`` (``configure()``), unless the user chose otherwise:

* asks Numba for the ``tbb`` layer when TBB is installed (dlkit depends on the ``tbb`` wheel
  where one exists: Linux and Windows on x86-64), else ``omp``, else ``workqueue``;
* for the ``omp`` layer, sets ``OMP_WAIT_POLICY=PASSIVE`` before libgomp starts (with TBB it
  leaves the variable alone: other OpenMP libraries in the process, PyTorch's for one, read it
  too).

What counts as the user's choice: ``NUMBA_THREADING_LAYER`` set (in the environment or in
``numba.config.THREADING_LAYER`` before importing dlkit) leaves the layer alone;
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set leaves OpenMP's waiting alone;
``NUMBA_NUM_THREADS`` (default: every core of the process's CPU mask) is never changed, and
under MPI each rank takes its share of the node's cores (``dlkit.distributed``).  Results do
not depend on any of this: kernels split their work into chunks whose number depends on the
problem size only, never on the thread count or on which thread runs which chunk.

``python -m dlkit info`` prints what was chosen, and why.
"""
from __future__ import annotations

import os

_CHOICE: dict = {}


def _tbb_loadable() -> bool:
    """Whether TBB's runtime can be loaded at a version Numba accepts (what Numba checks
    before it uses its tbb layer)."""
    try:
        from numba.np.ufunc.parallel import _check_tbb_version_compatible
        _check_tbb_version_compatible()
        from numba.np.ufunc import tbbpool  # noqa: F401
        return True
    except (ImportError, OSError, ValueError, RuntimeError):
        return False


def configure() -> dict:
    """Choose the threading layer and OpenMP's waiting (see the module docstring); called
    once by ``import dlkit``, before any kernel runs.  Returns what it chose:
    ``{"layer": ..., "layer_by": "dlkit" | "user", "omp_wait": ..., "omp_wait_by": ...}``.

    Example:
        >>> from dlkit import threads
        >>> sorted(threads.configure())
        ['layer', 'layer_by', 'omp_wait', 'omp_wait_by']
    """
    if _CHOICE:
        return dict(_CHOICE)
    import numba
    user_layer = os.environ.get("NUMBA_THREADING_LAYER") or \
        (numba.config.THREADING_LAYER if numba.config.THREADING_LAYER != "default" else None)
    if user_layer:
        layer, layer_by = user_layer, "user"
    else:
        layer, layer_by = ("tbb" if _tbb_loadable() else "omp"), "dlkit"
        numba.config.THREADING_LAYER = layer
    user_wait = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                 if k in os.environ}
    if user_wait:
        omp_wait, omp_wait_by = ", ".join(f"{k}={v}" for k, v in user_wait.items()), "user"
    elif layer != "omp":            # left alone: it would also slow other OpenMP libraries
        omp_wait, omp_wait_by = "libgomp's default", "dlkit"
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"    # read by libgomp when it starts
        omp_wait, omp_wait_by = "OMP_WAIT_POLICY=PASSIVE", "dlkit"
    _CHOICE.update(layer=layer, layer_by=layer_by, omp_wait=omp_wait, omp_wait_by=omp_wait_by)
    return dict(_CHOICE)


def info() -> str:
    """What dlkit's threads are doing, in a few lines (``python -m dlkit info``): Numba's
    layer and thread count and who chose them, OpenMP's waiting, BLAS threads and kernels,
    malloc tuning, MPI ranks.  Starts Numba's thread pool to ask which layer it loaded.

    Example:
        >>> from dlkit import threads
        >>> "threading layer" in threads.info()
        True
    """
    import numba
    import numpy as np
    from numba.np.ufunc import parallel
    from threadpoolctl import threadpool_info

    import dlkit
    from . import distributed
    choice = configure()
    try:
        parallel._launch_threads()
        running = numba.threading_layer()
    except (ValueError, AttributeError) as e:       # no layer could start
        running = f"none ({e})"
    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    who = "set by NUMBA_NUM_THREADS" if "NUMBA_NUM_THREADS" in os.environ else \
        f"default: the {mask} cores of this process's CPU mask"
    world = distributed.world()
    blas = [f"{d['internal_api']} {d.get('version')} {d.get('architecture', '')}, "
            f"{d['num_threads']} thread(s)" for d in threadpool_info()
            if d["user_api"] == "blas"]
    by_dlkit = {"layer": "; NUMBA_THREADING_LAYER overrides",
                "omp_wait": "; OMP_WAIT_POLICY or GOMP_SPINCOUNT override"}
    notes = {k: "" if choice[f"{k}_by"] == "user" else v for k, v in by_dlkit.items()}
    mpi = f"rank {world.rank} of {world.size}" if world.size > 1 else "not under mpiexec"
    lines = [
        f"dlkit {dlkit.__version__}: numba {numba.__version__}, numpy {np.__version__}",
        f"threading layer: {running} (asked for {choice['layer']!r}, chosen by "
        f"{choice['layer_by']}{notes['layer']})",
        f"threads: {numba.get_num_threads()} ({who})",
        f"OpenMP waiting: {choice['omp_wait']} (chosen by {choice['omp_wait_by']}"
        f"{notes['omp_wait']}{'' if running == 'omp' else '; unused by this layer'})",
        "BLAS: " + ("; ".join(blas) or "none loaded") + " (dlkit.blas_threads sets the count)"
        + (f"; OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} forces its kernels"
           if os.environ.get("OPENBLAS_CORETYPE") else ""),
        f"malloc tuning: {'off' if os.environ.get('DLKIT_MALLOC_TUNING') == '0' else 'on'}"
        " (DLKIT_MALLOC_TUNING=0 turns it off)",
        f"MPI: {mpi}",
    ]
    return "\n".join(lines)
