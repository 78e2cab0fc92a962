"""The conv/pool, recurrent and embedding layers on device arrays: forward and backward give
the CPU layer's results (float32, 1e-5 relative, dtypes and shapes asserted), with no host copy
but the ones each layer documents (a dropout mask drawn on the host, a ragged batch's ranges,
a device token-id check's 16-byte read-back); whole CNN and LSTM training steps through
nn.value_and_grad + optim + apply_updates equal the CPU steps; gradient clipping on the
device."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from test_training_step import assert_tree_close, run_steps  # noqa: E402

from dlkit import layers as L  # noqa: E402
from dlkit import losses, nn, optim, random  # noqa: E402
from dlkit.layers import Padded  # noqa: E402

F32 = np.float32
KEY = random.key(3)


def leaves(obj):
    """The arrays of a layer's input, output or gradient (tuples, Padded, dicts), in order."""
    if obj is None:
        return []
    if isinstance(obj, dict):
        return [a for k in sorted(obj) for a in leaves(obj[k])]
    if isinstance(obj, (tuple, list)):
        return [a for v in obj for a in leaves(v)]
    return [obj]


def assert_same(got, want, what):
    g, w = leaves(got), leaves(want)
    assert len(g) == len(w), what
    for i, (a, b) in enumerate(zip(g, w)):
        if isinstance(b, str):
            assert a == b
            continue
        if device.is_device_array(a):
            a = a.copy_to_host()
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, \
            (what, i, getattr(a, "dtype", type(a)), b.dtype, a.shape, b.shape)
        scale = max(float(np.max(np.abs(b))), 1e-30) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale, err_msg=f"{what} #{i}")


def compare(layer, in_shape, x, transfers, copies=(0, 0), train=True, need_dx=True, seed=0):
    """forward + backward of ``layer`` on the host and on the device (params and x moved up
    first); results must agree and the device calls make exactly ``copies`` (h2d, d2h)."""
    rng = np.random.default_rng(seed)
    _, params = layer.init(random.key(seed), in_shape)
    y, cache = layer.forward(params, x, key=KEY, train=train)
    dy = [rng.standard_normal(a.shape).astype(a.dtype) if isinstance(a, np.ndarray)
          and a.dtype.kind == "f" else a for a in leaves(y)]
    dy = _like(y, iter(dy))
    dx, grads = layer.backward(params, cache, dy, need_dx=need_dx)
    dparams, dxin, ddy = device.to_device((params, x, dy))
    transfers.reset()
    yd, cached = layer.forward(dparams, dxin, key=KEY, train=train)
    dxd, gradsd = layer.backward(dparams, cached, ddy, need_dx=need_dx)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == copies + (0,)
    assert all(device.is_device_array(a) for a in leaves(yd) + leaves(gradsd)
               if not isinstance(a, (np.ndarray, str)))
    assert_same(yd, y, "forward")
    assert_same(gradsd, grads, "param grads")
    assert_same(dxd, dx, "dx")
    return yd, dxd


def _like(tmpl, it):
    """tmpl's structure with its arrays replaced by the next items of ``it``."""
    if isinstance(tmpl, Padded):
        return Padded(next(it), next(it), tmpl.padding)
    if isinstance(tmpl, (tuple, list)):
        return type(tmpl)(_like(v, it) for v in tmpl)
    return None if tmpl is None else next(it)


def _x(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


# ----------------------------------------------------------------------- conv and pooling
@pytest.mark.parametrize("layer, shape", [
    (L.Conv2D(4, 3, stride=2, padding=1, activation="relu"), (2, 3, 7, 7)),
    (L.Conv2D(6, (3, 2), padding="same", groups=2, use_bias=False, activation="tanh"),
     (1, 4, 5, 6)),
    (L.MaxPool2D(2), (2, 3, 5, 5)),
    (L.MaxPool2D(3, stride=2, padding=1), (1, 2, 6, 7)),
    (L.AvgPool2D(3, stride=2, padding=1, count_include_pad=False), (2, 2, 5, 6)),
    (L.AvgPool2D(2), (1, 3, 4, 4)),
    (L.GlobalAvgPool2D(), (2, 3, 4, 5)),
], ids=["conv-s2-relu", "conv-same-groups-nobias", "maxpool", "maxpool-pad", "avgpool-pad",
        "avgpool", "global-avg"])
def test_conv_and_pool_layers(layer, shape, transfers):
    compare(layer, shape[1:], _x(*shape), transfers)


def test_conv_without_dx(transfers):
    compare(L.Conv2D(3, 2, activation="sigmoid"), (2, 4, 4), _x(2, 2, 4, 4), transfers,
            need_dx=False)


def test_conv_bad_input_raises_before_any_kernel(transfers):
    layer = L.Conv2D(4, 3)
    _, params = layer.init(random.key(0), (3, 5, 5))
    dparams = device.to_device(params)
    with pytest.raises(ValueError, match="input has 2 channels"):
        layer.forward(dparams, device.to_device(_x(1, 2, 5, 5)))
    with pytest.raises(TypeError, match="mixed host"):
        layer.forward(params, device.to_device(_x(1, 3, 5, 5)))
    from numba import cuda
    strided = cuda.to_device(_x(1, 3, 5, 10))[:, :, :, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        layer.forward(dparams, strided)


# ----------------------------------------------------------------------------- recurrent
def test_rnn_relu_sequences(transfers):
    compare(L.SimpleRNN(4, activation="relu", return_sequences=True), (4, 5), _x(3, 4, 5),
            transfers)


def test_lstm_ragged_with_state(transfers):
    """Padded post-padding and an initial state (h0, c0); the ranges are the one copy up."""
    x = Padded(_x(3, 4, 2), np.array([4, 2, 1]), "post")
    state = (_x(3, 5, seed=2), _x(3, 5, seed=3))
    compare(L.LSTM(5, return_state=True), (4, 2), (x, state), transfers, copies=(1, 0))


def test_gru_reverse_pre_padding(transfers):
    x = Padded(_x(2, 5, 3), np.array([3, 5]), "pre")
    compare(L.GRU(4, reverse=True, return_sequences=True), (5, 3), x, transfers,
            copies=(1, 0))


@pytest.mark.parametrize("merge", ["concat", "ave"])
def test_bidirectional(merge, transfers):
    inner = L.LSTM(3, return_sequences=True) if merge == "concat" else L.GRU(2)
    compare(L.Bidirectional(inner, merge=merge), (2, 2), _x(2, 2, 2), transfers)


def test_time_distributed_dense(transfers):
    compare(L.TimeDistributed(L.Dense(4, activation="tanh")), (3, 5), _x(2, 3, 5), transfers)


def test_recurrent_lengths_must_stay_on_the_host():
    layer = L.LSTM(3)
    _, params = layer.init(random.key(0), (4, 2))
    x = Padded(device.to_device(_x(2, 4, 2)), device.to_device(np.array([4, 2])))
    with pytest.raises(TypeError, match="lengths must be a host"):
        layer.forward(device.to_device(params), x)
    moved = device.to_device(Padded(_x(2, 4, 2), np.array([4, 2]), "pre"))
    assert device.is_device_array(moved.values) and isinstance(moved.lengths, np.ndarray)
    assert moved.padding == "pre"


# ----------------------------------------------------------------------------- embedding
def _ids(*shape, V=11, seed=4):
    return np.random.default_rng(seed).integers(0, V, shape)


def test_embedding_device_ids(transfers):
    """Device ids: checked on the device, one 16-byte read-back."""
    compare(L.Embedding(11, 4, padding_idx=0), (6,), _ids(3, 6), transfers, copies=(0, 1),
            need_dx=False)


def test_embedding_host_ids_with_device_table(transfers):
    """Host ids with device params: checked on the host, one copy up."""
    layer = L.Embedding(7, 3)
    _, params = layer.init(random.key(0), (5,))
    ids = _ids(2, 5, V=7)
    y, _ = layer.forward(params, ids)
    dparams = device.to_device(params)
    transfers.reset()
    yd, cache = layer.forward(dparams, ids)
    assert (transfers.h2d, transfers.d2h) == (1, 0)
    assert_same(yd, y, "forward")
    assert device.is_device_array(cache[0])


@pytest.mark.parametrize("ids, msg", [
    (np.array([[1, 2, 3], [4, 11, 0]]), "token id 11 at sequence 1, step 1"),
    (np.array([[1, -2, 3], [4, 1, 12]]), "token id -2 at sequence 0, step 1"),
])
def test_embedding_bad_device_ids_raise_like_host_ones(ids, msg):
    layer = L.Embedding(11, 2)
    _, params = layer.init(random.key(0), (3,))
    with pytest.raises(ValueError, match=msg):
        layer.forward(params, ids)
    with pytest.raises(ValueError, match=msg):
        layer.forward(device.to_device(params), device.to_device(ids))
    with pytest.raises(TypeError, match="token ids must be integers"):
        layer.forward(device.to_device(params), device.to_device(ids.astype(F32)))


def test_spatial_dropout(transfers):
    """The mask is drawn on the host from the key: one copy up; identity outside training."""
    x = Padded(_x(2, 3, 5), np.array([3, 1]))
    compare(L.SpatialDropout1D(0.5), (3, 5), x, transfers, copies=(1, 0))
    compare(L.SpatialDropout1D(0.5), (3, 5), _x(2, 3, 5), transfers, train=False)


# --------------------------------------------------------------------------- transformer
def test_gelu_and_learned_positions(transfers):
    compare(L.Gelu(), (3, 4), _x(2, 3, 4), transfers)
    compare(L.PositionEmbedding(5), (3, 4), _x(2, 3, 4), transfers)


def test_sinusoidal_positions_upload_their_table_once(transfers):
    """The fixed table is made on the host and copied up at the first device call."""
    compare(L.PositionEmbedding(5, kind="sinusoidal"), (3, 4), _x(2, 3, 4), transfers,
            copies=(1, 0))


def test_multihead_attention(transfers):
    """Causal; the kernels' tests run the unmasked case too."""
    compare(L.MultiHeadAttention(2), (5, 4), _x(2, 5, 4), transfers)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")   # uint64 hash
def test_multihead_attention_dropout_and_block(transfers):
    """Attention dropout hashes the same mask on the device; the block's Dropout layers draw
    theirs on the host (two copies up)."""
    compare(L.MultiHeadAttention(2, dropout=0.3), (5, 4), _x(2, 5, 4), transfers)
    compare(L.TransformerBlock(4, 2, mlp_ratio=2, dropout=0.2), (3, 4), _x(2, 3, 4),
            transfers, copies=(2, 0))


# ------------------------------------------------------------------------ training steps
def _cnn():
    return nn.serial(("conv1", L.Conv2D(3, 3, padding="same", activation="relu")),
                     ("pool1", L.MaxPool2D(2)),
                     ("conv2", L.Conv2D(4, 3, stride=2)), ("avg", L.AvgPool2D(1)),
                     ("flat", L.Flatten()), ("drop", L.Dropout(0.25)), ("fc", L.Dense(5)))


def _step_matches_cpu(model, in_shape, batches, transfers, masks):
    opt = optim.adam(1e-2)
    _, params = model.init(random.key(0), in_shape)
    want, want_state, want_loss, _ = run_steps(model, opt, params, batches,
                                               losses.softmax_cross_entropy)
    got, got_state, got_loss, counts = run_steps(model, opt, device.to_device(params), batches,
                                                 losses.softmax_cross_entropy, transfers)
    assert counts == [(masks, 1, 0)] * len(batches)      # masks up, the loss back
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    assert_tree_close(device.to_host(got), want)
    assert_tree_close(device.to_host(got_state), want_state)


def test_cnn_training_step_matches_cpu(rng, transfers):
    batches = [(rng.standard_normal((2, 2, 6, 6)).astype(F32), rng.integers(0, 5, 2))
               for _ in range(2)]
    _step_matches_cpu(_cnn(), (2, 6, 6), batches, transfers, masks=1)


def test_lstm_training_step_matches_cpu(rng, transfers):
    model = nn.serial(("lstm", L.LSTM(4)), ("fc", L.Dense(3)))
    batches = [(rng.standard_normal((2, 3, 3)).astype(F32), rng.integers(0, 3, 2))
               for _ in range(2)]
    _step_matches_cpu(model, (3, 3), batches, transfers, masks=0)


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clipped", "within"])
def test_clip_by_global_norm_on_the_device(max_norm, transfers):
    from dlkit import clip
    rng = np.random.default_rng(5)
    grads = {"a": {"W": rng.standard_normal((3, 4)).astype(F32)},
             "b": {"W": rng.standard_normal(5).astype(F32), "U": np.zeros((0, 2), F32)}}
    want = clip.clip_by_global_norm(grads, max_norm)
    dgrads = device.to_device(grads)
    transfers.reset()
    got = clip.clip_by_global_norm(dgrads, max_norm)
    assert (transfers.h2d, transfers.d2h) == (0, 0)
    assert_tree_close(device.to_host(got), want)
    np.testing.assert_allclose(clip.global_norm(dgrads), clip.global_norm(grads), rtol=1e-6)
