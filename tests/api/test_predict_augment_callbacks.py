"""train.predict (eval-mode outputs batch by batch), dlkit.data.augment (seeded crop and flip)
and fit's augment= and callbacks= hooks: bit-identical resume with augmentation, callbacks
seeing every step and epoch, and stopping from a callback."""
import numpy as np
import pytest

from dlkit import checkpoint as C
from dlkit import data
from dlkit import layers as L
from dlkit import nn, optim, random, train, tree
from dlkit.random import fold_in

QUIET = dict(progress=False, log=lambda m: None)


def dropout_model():
    model = nn.serial(("fc1", L.Dense(16, activation="tanh")), ("drop", L.Dropout(0.5)),
                      ("fc2", L.Dense(4)))
    _, params = model.init(random.key(0), (12,))
    return model, params


def small_problem(n=300):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 12)).astype(np.float32)
    Y = (X[:, :3].sum(1) > 0).astype(np.int64) + 2 * (X[:, 3] > 0)
    return X, Y


# --- predict ---------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_predict_matches_forward_batch_by_batch(batch_size):
    model, params = dropout_model()
    X, _ = small_problem(100)                  # 100 rows: uneven last batches for 7 and 64
    out = train.predict(model, params, X, batch_size=batch_size)
    assert out.shape == (100, 4) and out.dtype == np.float32
    for i in range(0, 100, batch_size):
        ref, _ = model.forward(params, X[i:i + batch_size], train=False)
        assert np.array_equal(out[i:i + batch_size], ref)
    train_mode, _ = model.forward(params, X[:batch_size], key=random.key(3), train=True)
    assert not np.array_equal(out[:batch_size], train_mode)   # eval mode: no dropout


def test_predict_applies_prepare():
    model, params = dropout_model()
    X, _ = small_problem(10)
    raw = (X * 10).astype(np.float64)
    out = train.predict(model, params, raw, batch_size=3,
                        prepare=lambda xb: (xb / 10).astype(np.float32))
    assert np.allclose(out, train.predict(model, params, X), atol=1e-6)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, None])
def test_predict_bad_batch_size(batch_size):
    model, params = dropout_model()
    with pytest.raises(ValueError, match=r"predict: batch_size must be an int >= 1, got "):
        train.predict(model, params, small_problem(4)[0], batch_size=batch_size)


def test_predict_empty_input_is_refused():
    model, params = dropout_model()
    with pytest.raises(ValueError, match=r"predict: X is empty \(0 samples\)"):
        train.predict(model, params, np.zeros((0, 12), np.float32))


# --- augmentation ----------------------------------------------------------------------------

def images(n=16, c=2, h=7, w=9):
    return np.random.default_rng(1).random((n, c, h, w), dtype=np.float32)


def reference_crop(x, offsets, p):
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(offsets):
        padded = np.pad(x[i], [(0, 0)] * (x.ndim - 3) + [(p, p), (p, p)])
        out[i] = padded[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]
    return out


@pytest.mark.parametrize("shape", [(16, 2, 7, 9), (16, 7, 9)])
def test_random_crop_is_a_seeded_padded_crop(shape):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    key = random.key(5)
    y = data.random_crop(x, key, 2)
    offsets = random.generator(key).integers(0, 5, size=(len(x), 2))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.array_equal(y, reference_crop(x, offsets, 2))
    assert np.array_equal(y, data.random_crop(x, key, 2))
    assert not np.array_equal(y, data.random_crop(x, random.key(6), 2))
    assert np.array_equal(data.random_crop(x, key, 0), x)


def test_random_crop_pads_with_fill():
    x = np.full((32, 1, 5, 5), 7.0, np.float32)
    key = random.key(5)
    y = data.random_crop(x, key, 2, fill=-0.8)
    assert set(np.unique(y)) <= {np.float32(7.0), np.float32(-0.8)}
    assert np.array_equal(y == np.float32(-0.8), data.random_crop(x, key, 2) == 0)
    z = data.crop_and_flip(2, fill=-0.8)(x, key)
    k1, k2 = random.split(key)
    assert np.array_equal(z, data.random_flip(data.random_crop(x, k1, 2, fill=-0.8), k2))


def test_random_flip_flips_about_half_and_nothing_else():
    x = images(n=200)
    y = data.random_flip(x, random.key(0))
    flipped = np.array([np.array_equal(y[i], x[i, ..., ::-1]) for i in range(len(x))])
    kept = np.array([np.array_equal(y[i], x[i]) for i in range(len(x))])
    assert (flipped | kept).all() and 70 < flipped.sum() < 130
    assert np.array_equal(y, data.random_flip(x, random.key(0)))
    assert not np.array_equal(y, data.random_flip(x, random.key(1)))
    x3 = x[:, 0]
    assert np.array_equal(data.random_flip(x3, random.key(0)), y[:, 0])


def test_crop_and_flip_is_crop_then_flip_with_split_keys():
    x = images()
    key = random.key(2)
    k1, k2 = random.split(key)
    got = data.crop_and_flip(1)(x, key)
    assert np.array_equal(got, data.random_flip(data.random_crop(x, k1, 1), k2))
    assert not np.shares_memory(got, x)


@pytest.mark.parametrize("call, error, match", [
    (lambda: data.random_crop(np.zeros((2, 3), np.float32), random.key(0), 1), ValueError,
     r"random_crop: x must be \(N, C, H, W\) or \(N, H, W\) images, got shape \(2, 3\)"),
    (lambda: data.random_crop(np.zeros((2, 4, 4), np.uint8), random.key(0), 1), TypeError,
     r"random_crop: x must be a float array .*got uint8"),
    (lambda: data.random_crop(np.zeros((2, 4, 4), np.float32), random.key(0), -1), ValueError,
     r"random_crop: padding must be an int >= 0, got -1"),
    (lambda: data.random_crop(np.zeros((2, 4, 4), np.float32), random.key(0), 1.5), ValueError,
     r"padding must be an int >= 0, got 1.5"),
    (lambda: data.random_flip(np.zeros((2, 4, 4), np.float32), 3), TypeError,
     r"expected a key"),
    (lambda: data.random_flip([[[0.0]]], random.key(0)), TypeError,
     r"random_flip: x must be a numpy array, got list"),
    (lambda: data.crop_and_flip(-2), ValueError, r"crop_and_flip: padding must be an int >= 0"),
    (lambda: data.crop_and_flip(2, fill=float("nan")), ValueError,
     r"crop_and_flip: fill must be a finite number, got nan"),
    (lambda: data.random_crop(np.zeros((2, 4, 4), np.float32), random.key(0), 1, fill="0"),
     ValueError, r"random_crop: fill must be a finite number, got '0'"),
    (lambda: data.crop_and_flip(2)(np.zeros((2, 4, 4), np.float32), (1, 2, 3)), TypeError,
     r"expected a key"),
])
def test_augment_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- fit(augment=...) ------------------------------------------------------------------------

def image_problem(n=96):
    rng = np.random.default_rng(0)
    X = rng.random((n, 1, 6, 6), dtype=np.float32)
    Y = (X[:, 0, :, :3].mean((1, 2)) > X[:, 0, :, 3:].mean((1, 2))).astype(np.int64)
    model = nn.serial(("flatten", L.Flatten()), ("fc1", L.Dense(8, activation="tanh")),
                      ("drop", L.Dropout(0.2)), ("fc2", L.Dense(2)))
    _, params = model.init(random.key(0), (1, 6, 6))
    return model, params, X, Y


def test_fit_augments_training_batches_only_with_the_documented_keys():
    model, params, X, Y = image_problem()
    aug = data.crop_and_flip(1)
    seen = []

    def recording(x, key):
        seen.append((x.copy(), key))
        return aug(x, key)
    key = random.key(4)
    r = train.fit(model, params, optim.sgd(0.1), (X, Y), key=key, epochs=2, batch_size=32,
                  val=(X[:10], Y[:10]), augment=recording, **QUIET)
    assert [k for _, k in seen] == [fold_in(key, train.AUGMENT_SALT + s) for s in range(6)]
    order = data.permutation(fold_in(key, train.EPOCH_SALT), len(X))
    assert np.array_equal(seen[0][0], X[order[:32]])          # after prepare, before augment
    assert train.AUGMENT_SALT > train.EPOCH_SALT and len(seen) == 6   # no validation batch
    plain = train.fit(model, params, optim.sgd(0.1), (X, Y), key=key, epochs=2, batch_size=32,
                      **QUIET)
    assert not tree.equal(r.params, plain.params)


def without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


@pytest.mark.parametrize("stop_at, saved_at", [(5, 5), (8, 6), (11, 10)])
def test_resume_with_augmentation_is_bit_identical(tmp_path, stop_at, saved_at):
    """Interrupted, then resumed from an epoch-end checkpoint (steps 5, 10: 5 batches an epoch)
    or a mid-epoch one (6): the augmentation keys follow the global step, so the end is the
    same."""
    model, params, X, Y = image_problem()
    run = dict(key=random.key(9), epochs=3, batch_size=20, augment=data.crop_and_flip(2),
               checkpoint_dir=tmp_path, checkpoint_every=3, **QUIET)
    train.fit(model, params, optim.adam(1e-2), (X, Y), max_steps=stop_at, **run)
    assert C.restore(tmp_path).step == saved_at
    resumed = train.fit(model, params, optim.adam(1e-2), (X, Y), resume=True, **run)
    run.pop("checkpoint_dir")
    whole = train.fit(model, params, optim.adam(1e-2), (X, Y), **run)
    assert tree.equal(resumed.params, whole.params)
    assert tree.equal(resumed.opt_state, whole.opt_state)
    assert without_seconds(resumed.history) == without_seconds(whole.history)


def test_fit_refuses_a_non_callable_augment():
    model, params, X, Y = image_problem()
    with pytest.raises(TypeError, match=r"fit: augment must be a function fn\(x, key\)"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1), augment=2,
                  **QUIET)


# --- fit(callbacks=...) ----------------------------------------------------------------------

class Recorder(train.Callback):
    def __init__(self, stop_step=None, stop_epoch=None):
        self.steps, self.epochs = [], []
        self.stop_step, self.stop_epoch = stop_step, stop_epoch

    def on_step_end(self, step, logs):
        self.steps.append((step, logs))
        return step == self.stop_step

    def on_epoch_end(self, epoch, logs):
        self.epochs.append((epoch, logs))
        return epoch == self.stop_epoch


def test_callbacks_see_every_step_and_epoch():
    X, Y = small_problem()
    model, params = dropout_model()
    rec, steps_only = Recorder(), []

    class OnlySteps:
        def on_step_end(self, step, logs):
            steps_only.append(step)

    r = train.fit(model, params, optim.adam(optim.cosine(1e-2, 30)), (X, Y),
                  key=random.key(1), epochs=3, batch_size=32, val=(X[:50], Y[:50]),
                  callbacks=[rec, OnlySteps()], **QUIET)
    assert [s for s, _ in rec.steps] == list(range(30)) == steps_only
    assert [(lg["epoch"], lg["batch"]) for _, lg in rec.steps] == \
        [(e + 1, b) for e in range(3) for b in range(10)]
    for e in range(3):                          # step logs add up to the epoch's history row
        rows = [32] * 9 + [300 - 9 * 32]
        logs = [lg for _, lg in rec.steps[10 * e:10 * e + 10]]
        loss = sum(lg["loss"] * n for lg, n in zip(logs, rows)) / 300
        acc = sum(lg["accuracy"] * n for lg, n in zip(logs, rows)) / 300
        assert loss == pytest.approx(r.history["loss"][e], rel=1e-12)
        assert acc == pytest.approx(r.history["accuracy"][e], rel=1e-12)
        assert logs[-1]["lr"] == r.history["lr"][e]
    assert [e for e, _ in rec.epochs] == [1, 2, 3]
    assert [lg for _, lg in rec.epochs] == [{k: v[e] for k, v in r.history.items()}
                                            for e in range(3)]


def test_a_callback_stops_at_its_step_with_a_matching_checkpoint(tmp_path):
    X, Y = small_problem()
    model, params = dropout_model()
    kw = dict(key=random.key(1), epochs=3, batch_size=32, **QUIET)
    rec = Recorder(stop_step=13)
    r = train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
                  callbacks=[rec], **kw)
    assert [s for s, _ in rec.steps][-1] == 13 and r.history["epoch"] == [1]
    ref = train.fit(model, params, optim.adam(1e-2), (X, Y), max_steps=14, **kw)
    assert tree.equal(r.params, ref.params) and tree.equal(r.opt_state, ref.opt_state)
    c = C.restore(tmp_path)
    assert c.step == 14 and tree.equal(c.params, r.params)
    full = train.fit(model, params, optim.adam(1e-2), (X, Y), **kw)
    resumed = train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
                        resume=True, **kw)
    assert tree.equal(resumed.params, full.params)


def test_a_callback_stops_after_its_epoch():
    X, Y = small_problem()
    model, params = dropout_model()
    rec = Recorder(stop_epoch=2)
    r = train.fit(model, params, optim.adam(1e-2), (X, Y), key=random.key(1), epochs=5,
                  batch_size=32, callbacks=[rec], **QUIET)
    assert r.history["epoch"] == [1, 2] and len(rec.steps) == 20


def test_fit_refuses_an_object_without_callback_methods():
    X, Y = small_problem()
    model, params = dropout_model()
    with pytest.raises(TypeError, match=r"fit: a callback needs an on_step_end or on_epoch_end "
                                        r"method, got 3"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1), callbacks=[3],
                  **QUIET)


def test_augment_takes_float64_and_strided_views_and_leaves_x_alone():
    x = np.random.default_rng(2).random((6, 3, 8, 10))
    view = x[:, ::2, :, 1:]                        # non-contiguous float64
    before = view.copy()
    key = random.key(7)
    k1, k2 = random.split(key)
    got = data.crop_and_flip(3)(view, key)
    assert got.dtype == np.float64 and got.shape == view.shape
    assert np.array_equal(got, data.random_flip(data.random_crop(before, k1, 3), k2))
    assert np.array_equal(view, before)
    assert data.random_crop(x[:0], key, 2).shape == (0, 3, 8, 10)


# --- fit(metrics=...) ------------------------------------------------------------------------

def mean_abs_logit(out, y):
    return float(np.abs(out).mean())


def error_rate(out, y):
    return float(np.mean(train.predictions(out) != y))


def test_metrics_are_row_weighted_epoch_means_in_history_csv_and_callbacks(tmp_path):
    X, Y = small_problem()
    model, params = dropout_model()
    rec = Recorder()
    metrics = {"mal": mean_abs_logit, "err": error_rate}
    r = train.fit(model, params, optim.adam(1e-2), (X, Y), key=random.key(1), epochs=2,
                  batch_size=32, val=(X[:50], Y[:50]), metrics=metrics, callbacks=[rec],
                  csv_log=tmp_path / "h.csv", **QUIET)
    h = r.history
    assert list(h) == ["epoch", "loss", "accuracy", "mal", "err", "val_loss", "val_accuracy",
                       "val_mal", "val_err", "lr", "seconds"]
    rows = [32] * 9 + [300 - 9 * 32]
    for e in range(2):
        logs = [lg for _, lg in rec.steps[10 * e:10 * e + 10]]
        assert sum(lg["mal"] * n for lg, n in zip(logs, rows)) / 300 == \
            pytest.approx(h["mal"][e], rel=1e-12)
        assert h["err"][e] == pytest.approx(1 - h["accuracy"][e], abs=1e-12)
    vl, va, preds = train.evaluate(model, r.params, X[:50], Y[:50])
    assert h["val_err"][-1] == pytest.approx(1 - va, abs=1e-12)
    out = train.predict(model, r.params, X[:50])
    assert h["val_mal"][-1] == pytest.approx(np.abs(out).mean(), rel=1e-6)
    header = (tmp_path / "h.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,accuracy,mal,err,val_loss,val_accuracy,val_mal,val_err,lr,seconds"


def test_metrics_survive_a_resume_and_must_match_it(tmp_path):
    X, Y = small_problem()
    model, params = dropout_model()
    run = dict(key=random.key(3), epochs=2, batch_size=32, metrics={"err": error_rate},
               **QUIET)
    whole = train.fit(model, params, optim.adam(1e-2), (X, Y), **run)
    train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
              checkpoint_every=4, max_steps=14, **run)
    resumed = train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
                        resume=True, **run)
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    with pytest.raises(ValueError, match=r"trained with metrics \['err'\], this run passes \[\]"):
        train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
                  resume=True, **{**run, "metrics": None})


@pytest.mark.parametrize("metrics, error, match", [
    ({"accuracy": error_rate}, ValueError, r"fit: metric names must be identifiers other than"),
    ({"val_err": error_rate}, ValueError, r"not starting with 'val_', got 'val_err'"),
    ({"err": 3}, TypeError, r"fit: metric 'err' must be a function fn\(out, y\) -> float"),
])
def test_bad_metrics(metrics, error, match):
    X, Y = small_problem()
    model, params = dropout_model()
    with pytest.raises(error, match=match):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1), metrics=metrics,
                  **QUIET)
