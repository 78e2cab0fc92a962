"""dlkit.distributed in a plain process (no MPI needed): inert, and its sharding arithmetic.
The multi-rank behaviour is tested under mpiexec in tests/mpi/."""
import numpy as np
import pytest

from dlkit import distributed as dist, random, train
from dlkit.data import batching


def test_inert_without_mpi():
    assert (dist.rank(), dist.size(), dist.is_main()) == (0, 1, True)
    params = {"fc": {"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}}
    assert dist.broadcast(params) is params
    grads, extra = dist.allreduce(params, extra=[2.5, 3])
    assert grads is params and extra == [2.5, 3.0]
    half, _ = dist.allreduce(params, 0.5)
    assert half["fc"]["W"].dtype == np.float32 and np.all(half["fc"]["W"] == 0.5)
    assert dist.from_main(lambda a: a + 1, 1) == 2
    dist.check_same("test", anything=1)
    dist.check_batch("test", 1)
    dist.barrier()


@pytest.mark.parametrize("rows", [1, 2, 7, 25, 128])
@pytest.mark.parametrize("n_ranks", [1, 2, 3, 5])
def test_shares_split_a_batch_evenly(rows, n_ranks):
    s = dist.shares(rows, n_ranks)
    assert sum(s) == rows and max(s) - min(s) <= 1 and s == sorted(s, reverse=True)
    idx = np.arange(100, 100 + rows)
    parts = [dist.shard(idx, r, n_ranks) for r in range(n_ranks)]
    assert np.array_equal(np.concatenate(parts), idx)


@pytest.mark.parametrize("n_ranks", [1, 2, 3, 4])
def test_epoch_shards_partition_the_single_process_epoch(n_ranks):
    """Batch by batch, the ranks' shards put together are data.batches' batches (fit's order)."""
    key, n, bs = random.fold_in(random.key(7), train.EPOCH_SALT), 203, 25
    X = np.arange(n)
    single = [xb for xb, _ in batching.batches(X, X, bs, key=key)]
    per_rank = [list(dist.epoch_shards(key, n, bs, rank_=r, size_=n_ranks))
                for r in range(n_ranks)]
    for b, batch in enumerate(single):
        assert {per_rank[r][b][0] for r in range(n_ranks)} == {len(batch)}
        assert np.array_equal(np.concatenate([per_rank[r][b][1] for r in range(n_ranks)]),
                              batch)
    last = n_ranks - 1                                # resuming at batch 3: the same shards
    later = list(dist.epoch_shards(key, n, bs, start=3, rank_=last, size_=n_ranks))
    assert len(later) == len(single) - 3
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(later, per_rank[last][3:]))
