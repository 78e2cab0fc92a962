"""fit's guards (issue 14, class 4): params made non-finite by an update are caught at that
step, before any checkpoint, with the params and optimizer state of before it kept; a bad
batch size, a negative epoch count or an empty data set is a clear ValueError before any work;
a resume whose batch size or data size differs from the checkpoint's is refused."""
import numpy as np
import pytest

from dlkit import checkpoint as C
from dlkit import layers as L
from dlkit import nn, optim, random, train, tree


def problem(n=120):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    Y = (X[:, 0] > 0).astype(np.int64)
    model = nn.serial(("fc1", L.Dense(8, activation="tanh")), ("fc2", L.Dense(2)))
    _, params = model.init(random.key(0), (6,))
    return model, params, X, Y


def exploding_sgd(at_step):
    """SGD whose learning rate overflows float32 at update number ``at_step``: the loss and the
    gradients of that step are finite, the updated params are not."""
    base = optim.sgd(lambda step: 1e39 if step == at_step else 1e-2)
    seen = []

    def update(grads, state, params):
        seen.append((tree.copy(params), tree.copy(state)))
        return base.update(grads, state, params)
    return base._replace(update=update, step=None), seen


def test_non_finite_params_after_an_update_name_that_step(tmp_path):
    model, params, X, Y = problem()
    opt, seen = exploding_sgd(3)
    with pytest.raises(FloatingPointError, match=r"in 'fc\d/[Wb]' after the update of step 3 "
                                                 r"\(epoch 1, batch 3\)"):
        train.fit(model, params, opt, (X, Y), key=random.key(1), epochs=2, batch_size=20,
                  checkpoint_dir=tmp_path, checkpoint_every=1, progress=False,
                  log=lambda m: None)
    c = C.restore(tmp_path)                   # the last checkpoint: before the bad update
    assert c.step == 3
    before_params, before_state = seen[3]
    assert tree.equal(c.params, before_params) and tree.equal(c.opt_state, before_state)
    assert [p.name for p in C.list_checkpoints(tmp_path)][-1] == "step-000000003"


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True, None])
def test_bad_batch_size(batch_size):
    model, params, X, Y = problem()
    with pytest.raises(ValueError, match=r"fit: batch_size must be an int >= 1, got "):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1),
                  batch_size=batch_size, progress=False, log=lambda m: None)


def test_negative_epochs():
    model, params, X, Y = problem()
    with pytest.raises(ValueError, match=r"fit: epochs must be an int >= 0, got -1"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1), epochs=-1,
                  progress=False, log=lambda m: None)


def test_empty_training_set():
    model, params, X, Y = problem()
    logs = []
    with pytest.raises(ValueError, match=r"fit: the training set is empty \(0 samples\)"):
        train.fit(model, params, optim.sgd(0.1), (X[:0], Y[:0]), key=random.key(1),
                  progress=False, log=logs.append)
    assert logs == []


def test_resume_with_another_batch_size_is_refused(tmp_path):
    model, params, X, Y = problem()
    kw = dict(key=random.key(1), epochs=1, progress=False, log=lambda m: None,
              checkpoint_dir=tmp_path)
    train.fit(model, params, optim.sgd(0.1), (X, Y), batch_size=20, **kw)
    with pytest.raises(ValueError, match=r"trained with batch_size 20 on 120 samples, this run "
                                         r"uses batch_size 30 on 120"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), batch_size=30, resume=True, **kw)
    with pytest.raises(ValueError, match=r"on 120 samples, this run uses batch_size 20 on 100"):
        train.fit(model, params, optim.sgd(0.1), (X[:100], Y[:100]), batch_size=20,
                  resume=True, **kw)


def test_resume_from_a_checkpoint_not_written_by_fit(tmp_path):
    model, params, X, Y = problem()
    C.save(tmp_path, 1, params, optim.sgd(0.1).init(params), meta={"history": {}})
    with pytest.raises(ValueError, match=r"was not written by fit: its meta lacks \['key'"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1),
                  checkpoint_dir=tmp_path, resume=True, progress=False, log=lambda m: None)
