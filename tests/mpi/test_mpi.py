"""Data-parallel training over MPI (dlkit.distributed): each test launches
``mpiexec -n 2`` or ``-n 3`` (3 ranks oversubscribe a 2-core machine: uneven shares) on
tests/mpi/worker.py and checks what the ranks wrote.  Without mpi4py or mpiexec the tests skip
(``pip install -e ".[mpi]"``); with CI set they fail instead (tests/conftest.py need())."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import in_ci

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def mpiexec():
    """The mpiexec command, or skip (fail in CI) when mpi4py or mpiexec is missing."""
    from conftest import need
    need("mpi4py")
    exe = shutil.which("mpiexec")
    if exe is None:
        msg = 'mpiexec is not on PATH; pip install -e ".[mpi]" (the mpich wheel brings one)'
        if in_ci():
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)
    return exe


def launch(mpiexec, n, *args, timeout=120, script=WORKER):
    """Run ``script args`` under ``mpiexec -n n`` (n=None: one plain process); returns the
    CompletedProcess (stdout and stderr together)."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(script), *map(str, args)]
    if n is not None:
        cmd = [mpiexec, "-n", str(n)] + cmd
    return subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def ok(mpiexec, n, *args):
    p = launch(mpiexec, n, *args)
    assert p.returncode == 0, p.stdout[-3000:]
    return p


def params(out, rank=0):
    with np.load(Path(out) / f"rank{rank}.npz") as z:
        return dict(z)


def info(out, rank=0):
    return json.loads((Path(out) / f"rank{rank}.json").read_text())


def assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def fits(mpiexec, tmp_path_factory):
    """fit on 202 rows, batch 25, 2 epochs: one process, twice with 2 ranks, twice with 3."""
    root = tmp_path_factory.mktemp("fits")
    runs = {}
    for name, n in (("one", None), ("two", 2), ("two_again", 2), ("three", 3),
                    ("three_again", 3)):
        ok(mpiexec, n, "fit", root / name)
        runs[name] = root / name
    return runs


def test_fit_with_n_ranks_equals_one_process(fits):
    one = params(fits["one"])
    for name, n in (("two", 2), ("three", 3)):
        for r in range(n):
            assert_close(params(fits[name], r), one)
        assert info(fits[name])["history"]["loss"] == pytest.approx(
            info(fits["one"])["history"]["loss"], rel=1e-5)


def test_fit_is_bit_identical_across_ranks_and_runs(fits):
    for name, n in (("two", 2), ("three", 3)):
        digests = {info(fits[name], r)["digest"] for r in range(n)}
        digests |= {info(fits[name + "_again"], r)["digest"] for r in range(n)}
        assert len(digests) == 1, (name, digests)


def test_shards_partition_each_batch_and_epoch(fits):
    one = info(fits["one"])["shards"]                 # one process: the whole batches
    for name, n in (("two", 2), ("three", 3)):
        per_rank = [info(fits[name], r)["shards"] for r in range(n)]
        for b, batch in enumerate(one):
            parts = [per_rank[r][b] for r in range(n)]
            assert sum(parts, []) == batch            # contiguous, in rank order, no overlap
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert sorted(sum(one, [])) == list(range(202))


def test_stateful_model_ends_with_identical_state_on_every_rank(mpiexec, tmp_path):
    """The model state (per-rank batch statistics) is averaged over the ranks every step:
    2 ranks end with the same state and params, bit for bit, and the state has moved."""
    ok(mpiexec, 2, "fit_state", tmp_path)
    states = []
    for r in (0, 1):
        with np.load(tmp_path / f"state{r}.npz") as z:
            states.append(dict(z))
    assert states[0].keys() == {"bn/mean"} == states[1].keys()
    assert states[0]["bn/mean"].tobytes() == states[1]["bn/mean"].tobytes()
    assert np.abs(states[0]["bn/mean"]).max() > 0
    assert info(tmp_path, 0)["state"] == info(tmp_path, 1)["state"]
    assert info(tmp_path, 0)["digest"] == info(tmp_path, 1)["digest"]


def test_broadcast_gives_every_rank_rank0s_params(mpiexec, tmp_path):
    ok(mpiexec, 3, "broadcast", tmp_path, "--rank-init")
    first = params(tmp_path, 0)
    for r in (1, 2):
        assert info(tmp_path, r)["digest"] == info(tmp_path, 0)["digest"]
        assert params(tmp_path, r).keys() == first.keys()


def test_rbm_cd_with_n_ranks_equals_one_process(mpiexec, tmp_path):
    ok(mpiexec, None, "rbm", tmp_path / "one", "--epochs", 3, "--batch-size", 20)
    ok(mpiexec, 3, "rbm", tmp_path / "three", "--epochs", 3, "--batch-size", 20)
    assert_close(params(tmp_path / "three", 2), params(tmp_path / "one"))
    assert info(tmp_path / "three")["history"]["recon_error"] == pytest.approx(
        info(tmp_path / "one")["history"]["recon_error"], rel=1e-5)


@pytest.mark.parametrize("first, then", [(None, 2), (2, None)], ids=["1->2", "2->1"])
def test_resume_with_another_number_of_ranks(mpiexec, fits, tmp_path, first, then):
    """Stopped mid-epoch (step 12 of 18) with one number of ranks, resumed with the other:
    the params of the uninterrupted one-process run; only rank 0 wrote checkpoints."""
    ckpt = tmp_path / "ckpt"
    ok(mpiexec, first, "fit", tmp_path / "a", "--ckpt", ckpt, "--every", 4, "--max-steps", 12)
    p = ok(mpiexec, then, "fit", tmp_path / "b", "--ckpt", ckpt, "--every", 4, "--resume")
    assert "resumed from" in p.stdout and "step 12" in p.stdout
    assert_close(params(tmp_path / "b"), params(fits["one"]))
    saves = (tmp_path / "a" / "saves.log").read_text().split()
    saves += (tmp_path / "b" / "saves.log").read_text().split()
    assert saves and set(saves) == {"0"}


def test_a_rank_that_raises_ends_the_job_with_its_error(mpiexec, tmp_path):
    t0 = time.monotonic()
    p = launch(mpiexec, 2, "raise", tmp_path, timeout=60)
    assert p.returncode != 0
    assert time.monotonic() - t0 < 30
    assert "[rank 1 of 2]" in p.stdout and "deliberate failure on rank 1" in p.stdout


def test_a_rank_killed_by_sigkill_ends_the_job_within_30s(mpiexec, tmp_path):
    t0 = time.monotonic()
    p = launch(mpiexec, 2, "fit", tmp_path, "--epochs", 1000, "--kill-after", 5, timeout=60)
    seconds = time.monotonic() - t0
    assert p.returncode != 0 and seconds < 30, (seconds, p.stdout[-2000:])
    assert "signal 9" in p.stdout.lower() or "killed" in p.stdout.lower(), p.stdout[-2000:]


@pytest.mark.parametrize("args, message", [
    (("--batch-size", 1), "the batch size 1 is smaller than the number of ranks 2"),
    (("--disagree",), "rank 1 of 2 disagrees with rank 0 on n_train: rank 0 has 202, "
                      "rank 1 has 201")], ids=["batch<N", "data-size"])
def test_bad_configuration_is_refused_before_training(mpiexec, tmp_path, args, message):
    p = launch(mpiexec, 2, "fit", tmp_path, *args, timeout=60)
    assert p.returncode != 0 and message in p.stdout, p.stdout[-2000:]
    assert "epoch 1/" not in p.stdout
    assert p.stdout.count(message) == 1           # printed once (by rank 0)


def test_train_mnist_under_mpiexec_writes_one_run_from_rank0(mpiexec, data_dir, tmp_path):
    """The README's command on 3000 Fashion-MNIST images: rank 0 prints once and writes the
    run; a second fresh run in the same folder is refused with one error line."""
    script = REPO / "scripts" / "train_mnist.py"
    args = ("--dataset", "fashion-mnist", "--train-subset", 3000, "--epochs", 1, "--out",
            tmp_path / "run", "--no-plots", "--quiet")
    p = launch(mpiexec, 2, *args, script=script)
    assert p.returncode == 0, p.stdout[-3000:]
    assert p.stdout.count("test accuracy") == 1 and p.stdout.count("epoch 1/1") == 1
    assert sorted(x.name for x in (tmp_path / "run").iterdir()) == \
        ["checkpoints", "history.csv", "history.json", "run.json"]
    p = launch(mpiexec, 2, *args, script=script)
    assert p.returncode != 0 and p.stdout.count("already holds a run") == 1, p.stdout[-2000:]
