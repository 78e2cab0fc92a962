"""The whole training steps the benchmarks time (asv's bench_training.py, busy_machine.py):
zero-argument functions, each doing one step on a fixed batch.  Only numpy is imported here,
so a peer's worker process (Keras, PyTorch) can take ``zoo_batch`` without loading dlkit."""
import numpy as np


def zoo_batch(n=128):
    """A fixed batch of n random 28x28 uint8 images and their labels."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n)


def zoo_step(name):
    """A zero-argument function doing one training step (forward, loss, backward, Adam) of
    zoo model ``name`` at batch 128 on a fixed batch, or of "imdb" (train_imdb.py's LSTM,
    batch 64 x 200) or "gpt" (char_rnn.py --model transformer, batch 12 x 64)."""
    from dlkit import losses, nn, optim, random
    if name == "imdb":
        from .peer_recurrent import imdb_step_dlkit
        return imdb_step_dlkit()
    if name == "gpt":
        from .peer_attention import gpt_dlkit
        return gpt_dlkit()
    from dlkit.zoo import MODELS
    model, prepare, in_shape = MODELS[name]()
    _, params, *state = model.init(random.key(0), in_shape)     # state: resnet's BatchNorm
    opt = optim.adam(1e-3)
    box = [params, opt.init(params), *state]
    xb, yb = zoo_batch()
    grad = nn.value_and_grad(model, losses.softmax_cross_entropy)

    def run():
        params, opt_state, *state = box
        if state:
            _, _, g, new_state = grad(params, prepare(xb), yb, state=state[0],
                                      key=random.key(1))
            box[:] = (*opt.step(g, opt_state, params), new_state)
        else:
            _, _, g = grad(params, prepare(xb), yb, key=random.key(1))
            box[:] = opt.step(g, opt_state, params)
    return run
