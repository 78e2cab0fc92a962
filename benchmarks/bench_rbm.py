"""asv: RBM kernels at the issue's reference size (784 visible x 500 hidden, batch 100, float32).

  CD.time_cd1 / time_cd10 / time_pcd1        one contrastive-divergence gradient (kernel only)
  CD.time_cd1_sgd                            CD-1 fused with the SGD-momentum update (rbm.fit's
                                             inner step, in place on private copies)
  CD.time_cd1_api                            rbm.cd_grads: host checks + random numbers + kernel
  CD.time_cd1_train_step                     cd_grads + optim.sgd(momentum) update, as user code
  FreeEnergy.time_free_energy                F(v) for a batch of 1000
  FreeEnergy.time_pseudo_likelihood          scikit-learn-style pseudo-log-likelihood, 1000 rows
  FreeEnergy.time_transform                  P(h|v) for 1000 rows
  Compile.track_cold_cache / warm_cache      a fresh process's first CD-1 call (float32): with
                                             an empty Numba cache, and a filled one
"""
import time

import numpy as np

from dlkit import optim, random, rbm
from kernels.cpu import rbm as K

from .common import ColdAndWarmStart, pin_threads

N, V, H = 100, 784, 500


def _problem(n=N, seed=0):
    rng = np.random.default_rng(seed)
    v = (rng.random((n, V)) < 0.3).astype(np.float32)
    params = rbm.init(random.key(0), V, H)
    params["vbias"] = rng.normal(0, 0.1, V).astype(np.float32)
    return rng, v, params


class CD:
    def setup(self):
        pin_threads()
        rng, self.v, self.p = _problem()
        W, b, c = self.p["W"], self.p["vbias"], self.p["hbias"]
        self.args = (W, b, c)
        self.empty = np.empty((0, H), np.float32)
        self.chain = (rng.random((N, H)) < 0.5).astype(np.float32)
        self.uh1 = rng.random((1, N, H), dtype=np.float32)
        self.nv1 = rng.random((1, N, V), dtype=np.float32)
        self.uh10 = rng.random((10, N, H), dtype=np.float32)
        self.nv10 = rng.random((10, N, V), dtype=np.float32)
        self.work = [a.copy() for a in (W, b, c)] + [np.zeros_like(a) for a in (W, b, c)]
        self.opt = optim.sgd(0.1, momentum=0.5)
        self.state = self.opt.init(self.p)
        self.key = random.key(1)
        # JIT warm-up
        self.time_cd1()
        self.time_cd10()
        self.time_pcd1()
        self.time_cd1_sgd()
        self.time_cd1_train_step()

    def time_cd1(self):
        K.rbm_cd(self.v, *self.args, self.empty, 1, False, False, True, self.uh1, self.nv1)

    def time_cd10(self):
        K.rbm_cd(self.v, *self.args, self.empty, 10, False, False, True, self.uh10, self.nv10)

    def time_pcd1(self):
        K.rbm_cd(self.v, *self.args, self.chain, 1, True, False, True, self.uh1, self.nv1)

    def time_cd1_sgd(self):
        W, b, c, vW, vb, vc = self.work
        K.rbm_cd_sgd(self.v, W, b, c, self.empty, 1, False, False, True, self.uh1, self.nv1,
                     0.0, 0.5, 0.0, 0.0, vW, vb, vc)     # lr 0: the params stay

    def time_cd1_api(self):
        rbm.cd_grads(self.p, self.v, self.key)

    def time_cd1_train_step(self):
        grads, _, _ = rbm.cd_grads(self.p, self.v, self.key)
        updates, _ = self.opt.update(grads, self.state, self.p)
        optim.apply_updates(self.p, updates)


class FreeEnergy:
    def setup(self):
        pin_threads()
        _, self.v, self.p = _problem(1000)
        self.key = random.key(2)
        self.time_free_energy()
        self.time_pseudo_likelihood()
        self.time_transform()

    def time_free_energy(self):
        rbm.free_energy(self.p, self.v)

    def time_pseudo_likelihood(self):
        rbm.pseudo_likelihood(self.p, self.v, self.key)

    def time_transform(self):
        rbm.transform(self.p, self.v)


_COMPILE = """
import numpy as np
import dlkit
from kernels.cpu import rbm as K
v = np.zeros((4, 6), np.float32); W = np.zeros((6, 3), np.float32)
b, c = np.zeros(6, np.float32), np.zeros(3, np.float32)
K.rbm_cd(v, W, b, c, np.empty((0, 3), np.float32), 1, False, False, True,
         np.zeros((1, 4, 3), np.float32), np.zeros((1, 4, 6), np.float32))
"""


class Compile(ColdAndWarmStart):
    def script(self):
        return _COMPILE

    def setup_cache(self):
        return self.first_runs()

    setup_cache.timeout = 1800
    track_cold_cache, track_warm_cache = ColdAndWarmStart.cold, ColdAndWarmStart.warm


if __name__ == "__main__":   # quick look without asv: python -m benchmarks.bench_rbm
    for cls in (CD, FreeEnergy):
        obj = cls()
        obj.setup()
        for name in sorted(n for n in dir(obj) if n.startswith("time_")):
            fn = getattr(obj, name)
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(10):
                    fn()
                ts.append((time.perf_counter() - t0) / 10)
            print(f"{cls.__name__}.{name}: {min(ts) * 1e3:.3f} ms")
