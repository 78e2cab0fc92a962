"""Data-parallel training over MPI (mpi4py); inert without it.

    from dlkit import distributed as dist
    dist.rank(), dist.size(), dist.is_main()      # 0, 1, True in a plain process
    dist.setup()                                  # pin threads, abort the job on an error
    params = dist.broadcast(params)               # rank 0's values on every rank
    grads, (loss_sum,) = dist.allreduce(grads, weight=n_mine / n_batch, extra=[loss * n_mine])
    for batch_rows, mine in dist.epoch_shards(key, n, batch_size): xb = X[mine] ...

Detection: a process runs data-parallel when it was started by an MPI launcher (``mpiexec``,
``srun``: the launcher's environment variables, or mpi4py already imported) and mpi4py's
``COMM_WORLD`` has more than one rank.  Otherwise mpi4py is not even imported, every function
here is the identity, and ``rank() == 0``, ``size() == 1``.  ``DLKIT_DISTRIBUTED=0`` turns
detection off.

The scheme (Horovod's, on MPI): every rank holds the whole model; rank 0's initial params are
broadcast; each step, each rank computes the gradient of its share of the global batch and one
in-place ``Allreduce`` over one contiguous buffer per dtype (the whole gradient tree, "tensor
fusion"; float32 models send one message per step) sums ``weight * grad`` with weight = the
rank's rows / the batch's rows, so every rank gets the single-process batch mean and applies
the same update.  The global batch is what the caller asks for, whatever the number of ranks.

Shards: batch b of epoch e is the same rows as in one process (``data.permutation(key, n)``,
sliced by the batch size); rank r takes the r-th of ``size`` contiguous, as-equal-as-possible
parts of it (the first ``rows % size`` ranks one row more).  The union over ranks of the shards
is exactly the single-process epoch, in the same batches, for any number of ranks, which is why
a run can resume with another number of ranks.

Faults: ``setup`` replaces ``sys.excepthook``: an uncaught exception on any rank prints its
traceback (prefixed by the rank) and calls ``COMM_WORLD.Abort``, which ends every rank within
seconds instead of leaving the others blocked in a collective.  A rank killed by a signal is
ended by the launcher (MPICH's and Open MPI's ``mpiexec`` kill the job).  Ranks other than 0
wait a second before printing, so an error every rank raises is printed once, by rank 0.

Threads: ``setup`` gives each rank ``cores // ranks on this node`` Numba threads (at least 1,
at most ``NUMBA_NUM_THREADS``), or all the cores of its CPU mask when the launcher bound it to
fewer cores than the machine has (``srun --cpus-per-task``, ``mpiexec --bind-to``).  BLAS stays
at one thread (dlkit pins it at import).
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
from numpy.typing import NDArray

from . import tree
from .data import batching
from .random import Key

# variables that MPI launchers set in every process they start: MPICH/Hydra and Intel MPI
# (PMI_*), Open MPI (OMPI_*), PMIx launchers, Slurm's srun (with an MPI plugin)
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
                  "MPI_LOCALNRANKS")


class DistributedError(ValueError):
    """A configuration the ranks cannot train with (raised on every rank alike): ranks that
    disagree on the data, the settings or the params, or a batch smaller than the number of
    ranks.  The message names the rank and both values."""


class World(NamedTuple):
    """This process's place in the job: ``comm`` (mpi4py's COMM_WORLD, or None in a single
    process), ``rank`` (0-based) and ``size`` (the number of ranks)."""

    comm: object        # mpi4py's COMM_WORLD, or None in a single process
    rank: int
    size: int


_world = None
_setup_done = False


def world() -> World:
    """The (comm, rank, size) of this process; (None, 0, 1) unless launched under MPI with
    more than one rank.  Computed once.

    Example:
        >>> from dlkit import distributed
        >>> distributed.world()                    # a plain process
        World(comm=None, rank=0, size=1)
    """
    global _world
    if _world is None:
        _world = World(None, 0, 1)
        launched = any(v in os.environ for v in _LAUNCHER_VARS) or "mpi4py.MPI" in sys.modules
        if launched and os.environ.get("DLKIT_DISTRIBUTED", "1") != "0":
            try:
                from mpi4py import MPI
            except ImportError:
                MPI = None
            if MPI is not None and MPI.COMM_WORLD.Get_size() > 1:
                comm = MPI.COMM_WORLD
                _world = World(comm, comm.Get_rank(), comm.Get_size())
    return _world


def rank() -> int:
    """This process's rank: 0 in a single process, 0 .. size() - 1 under ``mpiexec -n N``.

    Example:
        >>> from dlkit import distributed
        >>> distributed.rank()
        0
    """
    return world().rank


def size() -> int:
    """The number of ranks: 1 in a single process, N under ``mpiexec -n N``.

    Example:
        >>> from dlkit import distributed
        >>> distributed.size()
        1
    """
    return world().size


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that prints and writes files.

    Example:
        >>> from dlkit import distributed
        >>> distributed.is_main()
        True
    """
    return world().rank == 0


def threads_per_rank() -> int:
    """Numba threads for this rank: its bound cores if the launcher bound it to fewer than the
    machine has, else the machine's cores divided by the ranks on this node; at least 1 and at
    most NUMBA_NUM_THREADS.

    Example:
        >>> import numba
        >>> from dlkit import distributed
        >>> 1 <= distributed.threads_per_rank() <= numba.config.NUMBA_NUM_THREADS
        True
    """
    import numba
    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    comm = world().comm
    local = 1 if comm is None else comm.Split_type(_mpi().COMM_TYPE_SHARED).Get_size()
    cores = mask if mask < (os.cpu_count() or mask) else mask // local
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS))


def _mpi():
    from mpi4py import MPI
    return MPI


def _abort_hook(kind, value, tb):
    """sys.excepthook under MPI: print the traceback (a DistributedError: its one line; rank
    > 0 after a second, so an error all ranks raise is printed once, by rank 0) and abort the
    whole job."""
    w = world()
    if w.rank:
        time.sleep(1.0)
    text = f"error: {value}\n" if issubclass(kind, DistributedError) else \
        "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write(f"[rank {w.rank} of {w.size}] {text}")
    _abort(w, 1)


def _abort(w, code):
    """Flush, give the launcher half a second to relay what this rank printed (MPICH's
    mpiexec could drop it on a loaded machine when Abort came at once), then Abort."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.5)
    w.comm.Abort(code)


def setup() -> World:
    """Under MPI (size > 1, once per process): pin this rank's Numba threads
    (``threads_per_rank``) and make an uncaught exception abort the job.  Returns the World.
    In a single process it changes nothing.

    Example:
        >>> from dlkit import distributed
        >>> distributed.setup().size
        1
    """
    global _setup_done
    w = world()
    if w.size > 1 and not _setup_done:
        import numba
        numba.set_num_threads(threads_per_rank())
        sys.excepthook = _abort_hook
        _setup_done = True
    return w


def run(main: Callable[..., Any], *args: Any) -> Any:
    """Run a script's ``main(*args)``.  Under MPI: ranks other than 0 print nothing to stdout
    (it goes to os.devnull; stderr stays), and a ``sys.exit`` with an error (code not 0 or
    None) ends the whole job like an exception does: its message printed once, then Abort.
    Returns what ``main`` returns.

    Example:
        >>> from dlkit import distributed
        >>> distributed.run(lambda n: n + 1, 41)     # a script ends with run(main, argv)
        42
    """
    w = setup()
    if w.rank:
        sys.stdout = open(os.devnull, "w")
    try:
        return main(*args)
    except SystemExit as e:
        if w.size == 1 or e.code in (None, 0):
            raise
        if w.rank:
            time.sleep(1.0)
        print(e.code if isinstance(e.code, str) else f"exit status {e.code}", file=sys.stderr)
        _abort(w, e.code if isinstance(e.code, int) else 1)


def barrier() -> None:
    """Wait until every rank gets here (MPI Barrier); returns at once in a single process.

    Example:
        >>> from dlkit import distributed
        >>> distributed.barrier()
    """
    comm = world().comm
    if comm is not None:
        comm.Barrier()


def check_same(what: str, **values: Any) -> None:
    """Raise DistributedError on every rank if any rank's ``values`` (small, comparable with
    ==: ints, strings, tuples) differ from rank 0's, naming the rank, the value and both
    sides.

    Example:
        >>> from dlkit import distributed
        >>> distributed.check_same("fit", batch_size=128, epochs=5)   # one process: agrees
    """
    comm = world().comm
    if comm is None:
        return
    every = comm.allgather(values)
    for r, theirs in enumerate(every[1:], 1):
        for name in every[0]:
            if theirs.get(name) != every[0][name]:
                raise DistributedError(
                    f"{what}: rank {r} of {len(every)} disagrees with rank 0 on {name}: "
                    f"rank 0 has {every[0][name]!r}, rank {r} has {theirs.get(name)!r}")


def from_main(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)`` run on rank 0 only, its result (or exception) sent to every rank:
    every rank returns the same value or raises the same exception.  For reading a checkpoint
    or a run folder that only rank 0 may see.

    Example:
        >>> from dlkit import distributed
        >>> distributed.from_main(max, 3, 7)
        7
    """
    comm = world().comm
    if comm is None:
        return fn(*args, **kw)
    result = error = None
    if comm.Get_rank() == 0:
        try:
            result = fn(*args, **kw)
        except Exception as e:      # sent to the other ranks, raised on all
            error = e
    result, error = comm.bcast((result, error), root=0)
    if error is not None:
        raise error
    return result


def signature(params: dict) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """(name, shape, dtype) of every leaf of a param tree: what ranks compare before training.

    Example:
        >>> import numpy as np
        >>> from dlkit import distributed
        >>> distributed.signature({"fc": {"W": np.zeros((2, 3), np.float32)}})
        (('fc/W', (2, 3), '<f4'),)
    """
    return tuple((k, tuple(np.shape(a)), np.asarray(a).dtype.str)
                 for k, a in tree.flatten(params).items())


def _groups(flat):
    """{dtype: [names]} in flatten order: one fused buffer per dtype."""
    groups = {}
    for name, a in flat.items():
        groups.setdefault(np.asarray(a).dtype, []).append(name)
    return groups


def broadcast(params: dict, root: int = 0) -> dict:
    """Rank ``root``'s values of a param tree on every rank (one Bcast per dtype); the ranks'
    trees must have the same names, shapes and dtypes (DistributedError otherwise).  A single
    process gets ``params`` back unchanged.

    Example:
        >>> import numpy as np
        >>> from dlkit import distributed
        >>> p = {"W": np.zeros(2)}
        >>> distributed.broadcast(p) is p
        True
    """
    comm = world().comm
    if comm is None:
        return params
    check_same("broadcast", params=signature(params))
    flat = tree.flatten(params)
    out = {}
    for dtype, names in _groups(flat).items():
        buf = np.concatenate([np.asarray(flat[k], dtype).ravel() for k in names]) \
            if comm.Get_rank() == root else np.empty(sum(np.size(flat[k]) for k in names), dtype)
        comm.Bcast(buf, root=root)
        _unpack(buf, names, flat, out)
    return tree.unflatten(out)


def _unpack(buf, names, flat, out):
    at = 0
    for k in names:
        n = int(np.size(flat[k]))
        out[k] = buf[at:at + n].reshape(np.shape(flat[k]))
        at += n
    return at


def allreduce(grads: dict, weight: float = 1.0,
              extra: Sequence[float] = ()) -> tuple[dict, list[float]]:
    """The sum over ranks of ``weight * grads`` (each leaf), and the sum over ranks of the
    numbers in ``extra`` (not weighted), as one in-place Allreduce per dtype of the leaves over
    one contiguous buffer (``extra`` rides in the widest float group, or in float64 when there
    are no leaves).  With weight = this rank's rows / the batch's rows, the result is the
    batch-mean gradient of one process.  Returns (tree, list of floats); leaves are views of
    the buffer.  A single process returns ``weight * grads`` (``grads`` itself for weight 1)
    and ``extra`` as floats.

    Example:
        >>> import numpy as np
        >>> from dlkit import distributed
        >>> distributed.allreduce({"W": np.ones(2)}, weight=0.5, extra=[3])  # one process
        ({'W': array([0.5, 0.5])}, [3.0])
    """
    comm = world().comm
    if comm is None:
        if weight != 1.0:
            grads = tree.map(lambda g: g * np.asarray(weight, g.dtype), grads)
        return grads, [float(x) for x in extra]
    flat = tree.flatten(grads)
    groups = _groups(flat)
    floats = [d for d in groups if np.issubdtype(d, np.floating)]
    carrier = max(floats, key=lambda d: d.itemsize) if floats else np.dtype(np.float64)
    groups.setdefault(carrier, [])
    out, sums = {}, []
    for dtype, names in groups.items():
        n = sum(int(np.size(flat[k])) for k in names)
        tail = len(extra) if dtype == carrier else 0
        buf = np.empty(n + tail, dtype)
        at = 0
        for k in names:
            m = int(np.size(flat[k]))
            np.multiply(np.ravel(flat[k]), np.asarray(weight, dtype), out=buf[at:at + m])
            at += m
        buf[n:] = extra if tail else ()
        comm.Allreduce(_mpi().IN_PLACE, buf)
        _unpack(buf, names, flat, out)
        if tail:
            sums = [float(x) for x in buf[n:]]
    return tree.unflatten(out), sums


def shares(rows: int, n_ranks: int) -> list[int]:
    """Rows of each rank in a batch of ``rows``: as equal as possible, the first ranks one
    more (np.array_split's sizes).

    Example:
        >>> from dlkit import distributed
        >>> distributed.shares(10, 4)
        [3, 3, 2, 2]
    """
    q, r = divmod(int(rows), n_ranks)
    return [q + (i < r) for i in range(n_ranks)]


def shard(idx: NDArray, rank_: int | None = None, size_: int | None = None) -> NDArray:
    """This rank's contiguous part of the batch ``idx`` (see ``shares``); ``rank_`` and
    ``size_`` default to this process's.

    Example:
        >>> import numpy as np
        >>> from dlkit import distributed
        >>> distributed.shard(np.arange(10), rank_=1, size_=4)
        array([3, 4, 5])
    """
    w = world()
    rank_ = w.rank if rank_ is None else rank_
    size_ = w.size if size_ is None else size_
    s = shares(len(idx), size_)
    start = sum(s[:rank_])
    return idx[start:start + s[rank_]]


def epoch_shards(key: Key | None, n: int, batch_size: int, start: int = 0,
                 rank_: int | None = None, size_: int | None = None,
                 drop_last: bool = False) -> Iterator[tuple[int, NDArray]]:
    """Yield (batch_rows, my_idx) for the batches ``start``.. of the epoch whose order is
    ``data.permutation(key, n)`` (``data.batches``' order): the batch's row count and this
    rank's indices in it.

    Example:
        >>> from dlkit import distributed
        >>> [(rows, idx.tolist()) for rows, idx in distributed.epoch_shards(None, 5, 4,
        ...                                                                 rank_=0, size_=2)]
        [(4, [0, 1]), (1, [4])]
    """
    order = batching.permutation(key, n)
    for b in range(start, batching.n_batches(n, batch_size, drop_last)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield len(idx), shard(idx, rank_, size_)


def check_batch(what: str, batch_size: int) -> None:
    """DistributedError if the global batch cannot give every rank at least one row.

    Example:
        >>> from dlkit import distributed
        >>> distributed.check_batch("fit", 1)        # one process: any batch of >= 1 row
    """
    n = size()
    if batch_size < n:
        raise DistributedError(f"{what}: the batch size {batch_size} is smaller than the "
                               f"number of ranks {n}; expected a batch of at least {n} rows "
                               "(each rank takes a share of every batch)")
