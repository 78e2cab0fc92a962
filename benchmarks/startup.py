"""Time from interpreter start to the end of the first MLP training step (prints seconds).

Run as ``python -m benchmarks.startup``; bench_compile.py runs it in fresh processes with an
empty and with a filled Numba cache (NUMBA_CACHE_DIR).
"""
import time

T0 = time.perf_counter()


def first_step():
    import numpy as np

    from dlkit import losses, nn, optim, random
    from dlkit.zoo import mlp
    model, prepare, in_shape = mlp()
    _, params = model.init(random.key(0), in_shape)
    opt = optim.adam(1e-3)
    state = opt.init(params)
    x = np.zeros((128, 28, 28), np.uint8)
    loss, _, grads = nn.value_and_grad(model, losses.softmax_cross_entropy)(
        params, prepare(x), np.zeros(128, np.int64), key=random.key(1))
    opt.step(grads, state, params)              # what train.fit runs


if __name__ == "__main__":
    import sys
    start = float(sys.argv[1]) if len(sys.argv) > 1 else None
    first_step()
    # with a start timestamp from the parent, count the interpreter's own start-up too
    print(time.time() - start if start else time.perf_counter() - T0)
