"""compare_torch cases for the recurrent family: RNN/LSTM/GRU forward+backward at the issue's
shapes, the embedding, an IMDb training step and a whole IMDb training epoch.

Every recurrent case times the same work in both frameworks: the forward over the whole
sequence, then the backward from a gradient on every step's output, including the input
gradient (what a stacked or embedding-fed layer needs).  PyTorch's settings: its default and
``torch.set_flush_denormal(True)`` (denormals slow recurrent training down); compare_torch adds
the malloc-tuned variant of each.

    python -m benchmarks.compare_torch -k lstm rnn gru embedding imdb_step
    python -m benchmarks.compare_torch -k imdb_epoch --rounds 1      # minutes: needs the data
"""
import numpy as np

from .compare_torch import Case

SHAPES = {"T28_B128_I28_H128": (28, 128, 28, 128), "T200_B64_I128_H100": (200, 64, 128, 100)}
SETTINGS = ("default", "flush_denormal")


def _apply_setting(torch, setting):
    torch.set_flush_denormal(setting == "flush_denormal")


def _seq_data(shape, seed=0):
    T, B, I, H = shape
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, I)).astype(np.float32),
            rng.standard_normal((B, T, H)).astype(np.float32))


def rnn_case(cell, shape):
    def dlkit_fn():
        from dlkit import layers as L
        from dlkit import random
        layer = {"rnn": L.SimpleRNN, "lstm": L.LSTM, "gru": L.GRU}[cell](shape[3],
                                                                          return_sequences=True)
        _, params = layer.init(random.key(0), (shape[0], shape[2]))
        x, dy = _seq_data(shape)

        def run():
            y, cache = layer.forward(params, x)
            layer.backward(params, cache, dy)
        return run

    def torch_fn(setting):
        import torch
        _apply_setting(torch, setting)
        torch.manual_seed(0)
        T, B, I, H = shape
        m = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
            I, H, batch_first=True)
        x, dy = (torch.from_numpy(a) for a in _seq_data(shape))
        x.requires_grad_(True)

        def run():
            x.grad = None
            m.zero_grad(set_to_none=True)
            y, _ = m(x)
            y.backward(dy)
        return run

    T, B, I, H = shape
    name = {"rnn": "SimpleRNN tanh", "lstm": "LSTM", "gru": "GRU"}[cell]
    return Case(f"{name} fwd+bwd (dx, dW, dU, db), T={T} B={B} I={I} H={H}", dlkit_fn,
                torch_fn, SETTINGS, repeat=20)


def embedding_dlkit():
    from dlkit import layers as L
    from dlkit import random
    layer = L.Embedding(10000, 128)
    _, params = layer.init(random.key(0), (200,))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10000, (64, 200))
    dy = rng.standard_normal((64, 200, 128)).astype(np.float32)

    def run():
        _, cache = layer.forward(params, ids)
        layer.backward(params, cache, dy)
    return run


def embedding_torch(setting):
    import torch
    _apply_setting(torch, setting)
    emb = torch.nn.Embedding(10000, 128)
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(0, 10000, (64, 200)))
    dy = torch.from_numpy(rng.standard_normal((64, 200, 128)).astype(np.float32))

    def run():
        emb.zero_grad(set_to_none=True)
        emb(ids).backward(dy)
    return run


# ------------------------------------------------------------------ IMDb model, step and epoch
def _imdb_batch(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 201, 64)
    x = rng.integers(2, 10000, (64, 200))
    x[np.arange(200)[None, :] < (200 - lengths)[:, None]] = 0      # pre-padding
    return x, rng.integers(0, 2, 64)


def _imdb_dlkit():
    from dlkit import optim, random, runs
    from dlkit.cli import train_imdb
    args = runs.defaults(train_imdb.parse_args([]), train_imdb.SETTINGS)
    model = train_imdb.build_model(args)
    _, params = model.init(random.key(0), (args.maxlen,))
    return model, train_imdb.make_prepare(True), params, optim.adam(args.lr), args.clip


def imdb_step_dlkit():
    from dlkit import clip, losses, nn, optim, random
    model, prepare, params, opt, max_norm = _imdb_dlkit()
    state = opt.init(params)
    xb, yb = _imdb_batch()
    f = nn.value_and_grad(model, losses.sigmoid_binary_cross_entropy)

    def run():
        _, _, g = f(params, prepare(xb), yb, key=random.key(1))
        u, _ = opt.update(clip.clip_by_global_norm(g, max_norm), state, params)
        optim.apply_updates(params, u)
    return run


def _imdb_torch():
    import torch

    class Net(torch.nn.Module):
        """Embedding 10000x128, SpatialDropout1D 0.4 (Dropout1d over channels), LSTM 100,
        Linear 1 (the logit; BCEWithLogitsLoss is the sigmoid + binary cross-entropy)."""

        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10000, 128)
            self.drop = torch.nn.Dropout1d(0.4)
            self.lstm = torch.nn.LSTM(128, 100, batch_first=True)
            self.out = torch.nn.Linear(100, 1)

        def forward(self, x):
            e = self.drop(self.emb(x).transpose(1, 2)).transpose(1, 2)
            _, (h, _) = self.lstm(e)
            return self.out(h[-1]).squeeze(1)

    torch.manual_seed(0)
    model = Net()
    return model, torch.optim.Adam(model.parameters(), 1e-3)


def imdb_step_torch(setting):
    import torch
    _apply_setting(torch, setting)
    model, opt = _imdb_torch()
    xb, yb = _imdb_batch()
    x, y = torch.from_numpy(xb), torch.from_numpy(yb).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def run():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return run


def _imdb_ids():
    """The IMDb training reviews as scripts/train_imdb.py prepares them: (25000, 200) ids."""
    from dlkit import data
    from dlkit.cli import train_imdb
    (texts, y), _ = data.load_imdb(progress=False)
    vocab = data.Vocabulary.build((data.tokenize(t) for t in texts), 10000)
    return train_imdb.encode(texts, vocab, 200), y


def imdb_epoch_dlkit():
    from dlkit import clip, losses, random, train
    model, prepare, params, opt, max_norm = _imdb_dlkit()
    X, Y = _imdb_ids()

    def run():
        train.fit(model, params, opt, (X, Y), key=random.key(0), epochs=1, batch_size=64,
                  loss_fn=losses.sigmoid_binary_cross_entropy, prepare=prepare,
                  grad_transform=clip.by_global_norm(max_norm), progress=False,
                  log=lambda *a: None)
    return run


def imdb_epoch_torch(setting):
    import torch
    _apply_setting(torch, setting)
    Xn, Yn = _imdb_ids()
    X, Y = torch.from_numpy(Xn), torch.from_numpy(Yn).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def run():
        model, opt = _imdb_torch()
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss_fn(model(X[idx]), Y[idx]).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    return run


def row_lstm_step_dlkit():
    from .steps import zoo_step
    return zoo_step("lstm")


def row_lstm_step_torch(setting):
    """The zoo's row-by-row LSTM in PyTorch: each image as 28 steps of 28 pixels, LSTM 128,
    Linear 10 on the last hidden state, cross-entropy, Adam."""
    import torch
    from .steps import zoo_batch
    _apply_setting(torch, setting)
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(28, 128, batch_first=True), torch.nn.Linear(128, 10)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], 1e-3)
    xb, yb = zoo_batch()
    x, y = torch.from_numpy(xb).float() / 255, torch.from_numpy(yb)

    def run():
        opt.zero_grad()
        out, _ = lstm(x)
        torch.nn.functional.cross_entropy(head(out[:, -1]), y).backward()
        opt.step()
    return run


CASES = {f"{cell}_{k}": rnn_case(cell, shape) for cell in ("lstm", "rnn", "gru")
         for k, shape in SHAPES.items()}
CASES.update({
    "lstm_step": Case("row-LSTM training step, batch 128 (28 rows of 28 pixels, LSTM 128, "
                      "Dense 10; Adam)", row_lstm_step_dlkit, row_lstm_step_torch, SETTINGS,
                      repeat=20),
    "embedding_10000x128_64x200": Case("Embedding fwd+bwd, 64x200 ids into 10000x128",
                                       embedding_dlkit, embedding_torch, SETTINGS, repeat=50),
    "imdb_step": Case("IMDb LSTM training step, batch 64 x 200 tokens (emb, dropout, LSTM 100, "
                      "dense, BCE, clip, Adam)", imdb_step_dlkit, imdb_step_torch, SETTINGS,
                      repeat=20),
    "imdb_epoch": Case("IMDb LSTM training epoch (25k reviews, batch 64)", imdb_epoch_dlkit,
                       imdb_epoch_torch, SETTINGS, repeat=1, needs_data=True),
})
