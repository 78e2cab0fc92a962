"""asv: convolution and pooling kernels (issue 3 shapes) and each conv algorithm (the CNNs'
whole training steps: bench_training.py; their compile time: bench_compile.py).

Kernels are called directly (kernels.cpu.conv / .pool, float32, NCHW); JIT warm-up happens in
``setup``.  The shapes are the ones the PyTorch comparison (peer_conv.py) quotes:
conv 1->32 3x3 on (128, 1, 28, 28) (a first layer: params-only backward) and conv 32->64 3x3
pad 1 on (128, 32, 14, 14); max pooling 2x2 on (128, 32, 26, 26).
"""
import numpy as np

from kernels.cpu import conv as KC
from kernels.cpu import pool as KP

from .common import pin_threads, rand

# (N, C, H, W, C_out, padding)
SHAPES = {"1x32_28": (128, 1, 28, 28, 32, 0), "32x64_14": (128, 32, 14, 14, 64, 1)}


class Conv2D:
    """The dispatcher's choice of algorithm (direct for 1->32, Winograd for 32->64)."""
    params = [list(SHAPES), ["none", "relu"]]
    param_names = ["shape", "act"]

    def setup(self, shape, act):
        pin_threads()
        N, C, H, W, Co, p = SHAPES[shape]
        rng = np.random.default_rng(0)
        self.x, self.W, self.b = rand(rng, (N, C, H, W)), rand(rng, (Co, C, 3, 3)), rand(rng, Co)
        self.act = KC.ACT_RELU if act == "relu" else KC.ACT_NONE
        self.p, self.O = p, H + 2 * p - 2
        self.y = self.time_forward(shape, act)
        self.dy = rand(rng, self.y.shape)
        self.time_backward(shape, act)
        self.time_backward_params_only(shape, act)

    def time_forward(self, shape, act):
        p = self.p
        return KC.conv2d_forward(self.x, self.W, self.b, 1, 1, p, p, 1, 1, 1, self.O, self.O,
                                 self.act)

    def time_backward(self, shape, act):
        p = self.p
        KC.conv2d_backward(self.x, self.W, self.y, self.dy, 1, 1, p, p, 1, 1, 1, self.act, True)

    def time_backward_params_only(self, shape, act):
        p = self.p
        KC.conv2d_backward(self.x, self.W, self.y, self.dy, 1, 1, p, p, 1, 1, 1, self.act,
                           False)


class ConvAlgorithms:
    """Every algorithm on the 32->64 3x3 pad 1 layer (and a stride-2 layer, im2col only),
    forward + full backward, to see each one's speed from commit to commit."""
    params = [["direct", "im2col", "winograd", "im2col_stride2"]]
    param_names = ["algorithm"]

    def setup(self, algorithm):
        pin_threads()
        rng = np.random.default_rng(0)
        self.x, self.W = rand(rng, (128, 32, 14, 14)), rand(rng, (64, 32, 3, 3))
        self.b = rand(rng, 64)
        self.s = 2 if algorithm == "im2col_stride2" else 1
        self.algo = KC.ALGORITHMS[algorithm.split("_")[0]]
        self.O = (14 + 2 - 3) // self.s + 1
        self.y = KC.conv2d_forward(self.x, self.W, self.b, self.s, self.s, 1, 1, 1, 1, 1,
                                   self.O, self.O, KC.ACT_RELU, self.algo)
        self.dy = rand(rng, self.y.shape)
        self.time_forward_backward(algorithm)

    def time_forward_backward(self, algorithm):
        s = self.s
        y = KC.conv2d_forward(self.x, self.W, self.b, s, s, 1, 1, 1, 1, 1, self.O, self.O,
                              KC.ACT_RELU, self.algo)
        KC.conv2d_backward(self.x, self.W, y, self.dy, s, s, 1, 1, 1, 1, 1, KC.ACT_RELU, True,
                           self.algo)


class Pool:
    params = [["max2x2", "max3x3s2p1", "avg3x3s2p1", "global"]]
    param_names = ["pool"]

    def setup(self, pool):
        pin_threads()
        rng = np.random.default_rng(0)
        self.x = rand(rng, (128, 32, 26, 26))
        self.k, self.s, self.p = {"max2x2": (2, 2, 0)}.get(pool, (3, 2, 1))
        self.O = (26 + 2 * self.p - self.k) // self.s + 1
        self.arg = np.empty((128, 32, self.O, self.O), np.uint8)
        self.y = self.time_forward(pool)
        self.dy = rand(rng, self.y.shape)
        self.time_backward(pool)

    def time_forward(self, pool):
        k, s, p, O = self.k, self.s, self.p, self.O
        if pool == "global":
            return KP.global_avgpool2d_forward(self.x)
        if pool.startswith("avg"):
            return KP.avgpool2d_forward(self.x, k, k, s, s, p, p, O, O, True)
        return KP.maxpool2d_forward(self.x, k, k, s, s, p, p, O, O, self.arg)

    def time_backward(self, pool):
        k, s, p = self.k, self.s, self.p
        if pool == "global":
            return KP.global_avgpool2d_backward(self.dy, 26, 26)
        if pool.startswith("avg"):
            return KP.avgpool2d_backward(self.dy, k, k, s, s, p, p, 26, 26, True)
        return KP.maxpool2d_backward(self.dy, self.arg, k, k, s, s, p, p, 26, 26)

