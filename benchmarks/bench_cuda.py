"""asv: the CUDA kernels on a GPU (dense, softmax cross-entropy, Adam, conv, a whole MLP step on
device arrays).  Every suite's ``setup`` raises NotImplementedError (asv's "skip") without a
usable GPU, and under the CUDA simulator, whose timings mean nothing.  Each timed call ends with
``cuda.synchronize()`` so the time covers the kernels, not just their launch; compilation
happens in setup."""
import os

import numpy as np


def _cuda():
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise NotImplementedError("CUDA simulator: GPU timings skipped")
    from dlkit import device
    ok, why = device.available()
    if not ok:
        raise NotImplementedError(why)
    from numba import cuda
    return cuda


def _rand(cuda, rng, *shape):
    return cuda.to_device(rng.standard_normal(shape).astype(np.float32))


class CudaDense:
    params = [[(128, 784, 128), (1024, 1024, 1024)]]
    param_names = ["N,I,O"]

    def setup(self, shape):
        self.cuda = cuda = _cuda()
        from kernels.cuda import dense as D
        self.D = D
        n, i, o = shape
        rng = np.random.default_rng(0)
        self.x, self.W, self.b = _rand(cuda, rng, n, i), _rand(cuda, rng, i, o), \
            _rand(cuda, rng, o)
        self.dy = _rand(cuda, rng, n, o)
        self.y = D.dense_forward(self.x, self.W, self.b, D.ACT_RELU)
        D.dense_backward(self.x, self.W, self.y, self.dy, D.ACT_RELU, True)
        cuda.synchronize()

    def time_forward_relu(self, shape):
        self.D.dense_forward(self.x, self.W, self.b, self.D.ACT_RELU)
        self.cuda.synchronize()

    def time_backward_relu(self, shape):
        self.D.dense_backward(self.x, self.W, self.y, self.dy, self.D.ACT_RELU, True)
        self.cuda.synchronize()


class CudaLossAndAdam:
    def setup(self):
        self.cuda = cuda = _cuda()
        from kernels.cuda import losses as Ls
        from kernels.cuda import optim as O
        self.Ls, self.O = Ls, O
        rng = np.random.default_rng(0)
        self.z = _rand(cuda, rng, 4096, 1000)
        self.lab = cuda.to_device(rng.integers(0, 1000, 4096))
        n = 1 << 22
        self.g, self.p, self.m = (_rand(cuda, rng, n) for _ in range(3))
        self.v = O.zeros(n, np.float32)
        self.time_softmax_cross_entropy()
        self.time_adam_update()

    def time_softmax_cross_entropy(self):
        self.Ls.softmax_cross_entropy(self.z, self.lab)
        self.cuda.synchronize()

    def time_adam_update(self):
        self.O.adam_update(self.g, self.p, self.m, self.v, 1e-3, 0.9, 0.999, 1e-8, 1, 0.0, 0.0,
                           0.0)
        self.cuda.synchronize()


class CudaConv:
    params = [[(128, 32, 28, 64, 1), (128, 64, 16, 128, 2)]]
    param_names = ["N,C,H,C_out,stride"]

    def setup(self, shape):
        self.cuda = cuda = _cuda()
        from kernels.cuda import conv as C
        self.C = C
        n, c, h, co, s = shape
        self.s, self.oh = s, (h + 2 - 3) // s + 1
        rng = np.random.default_rng(0)
        self.x, self.W, self.b = _rand(cuda, rng, n, c, h, h), _rand(cuda, rng, co, c, 3, 3), \
            _rand(cuda, rng, co)
        self.y = self.C.conv2d_forward(self.x, self.W, self.b, s, s, 1, 1, 1, 1, 1, self.oh,
                                       self.oh, C.ACT_RELU)
        self.dy = _rand(cuda, rng, n, co, self.oh, self.oh)
        self.time_backward(shape)

    def time_forward(self, shape):
        self.C.conv2d_forward(self.x, self.W, self.b, self.s, self.s, 1, 1, 1, 1, 1, self.oh,
                              self.oh, self.C.ACT_RELU)
        self.cuda.synchronize()

    def time_backward(self, shape):
        self.C.conv2d_backward(self.x, self.W, self.y, self.dy, self.s, self.s, 1, 1, 1, 1, 1,
                               self.C.ACT_RELU, True)
        self.cuda.synchronize()


class CudaMLPStep:
    """The Fashion-MNIST MLP's whole training step (batch 128) with everything on the device;
    the loss read-back is the step's one host copy."""

    def setup(self):
        self.cuda = _cuda()
        from dlkit import device, losses, nn, optim, random
        from dlkit.zoo import mlp
        self.optim = optim
        model, _, in_shape = mlp()
        _, params = model.init(random.key(0), in_shape)
        self.opt = optim.adam(1e-3)
        self.params = device.to_device(params)
        self.state = self.opt.init(self.params)
        rng = np.random.default_rng(0)
        self.x, self.y = device.to_device((rng.random((128, 28, 28), dtype=np.float32),
                                           rng.integers(0, 10, 128)))
        self.step = nn.value_and_grad(model, losses.softmax_cross_entropy)
        self.key = random.key(1)
        self.time_train_step()

    def time_train_step(self):
        _, _, g = self.step(self.params, self.x, self.y, key=self.key)
        u, _ = self.opt.update(g, self.state, self.params)
        self.optim.apply_updates(self.params, u)
        self.cuda.synchronize()
