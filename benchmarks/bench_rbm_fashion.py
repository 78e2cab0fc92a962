"""asv: the Fashion-MNIST RBM-features run of tests/api/test_rbm_dbn.py, timed here instead of
asserted there (a `< 60` s assertion on a shared 2-core machine tests the neighbours' load, not
dlkit).  Needs the data set through DLKIT_DATA (skipped by asv when it is missing).

  RBMFashionFeatures.time_rbm_fit           rbm.fit 784-512, 10 epochs of CD-1 on 10k images
  RBMFashionFeatures.time_features_and_probe P(h|v) of 12k images + 5 epochs of softmax
                                            regression on them (the test's probe)
"""
import os

import numpy as np

from dlkit import data, layers as L, nn, optim, random, rbm, train

from .common import pin_threads


def _fashion():
    d = os.environ.get("DLKIT_DATA")
    if not d or not os.path.isdir(d):
        raise NotImplementedError("DLKIT_DATA is not set")      # asv: skip this benchmark
    (xtr, ytr), (xte, yte) = data.load_mnist("fashion-mnist", data_dir=d, download=False,
                                             progress=False)
    f = lambda x: (x.reshape(len(x), -1) / np.float32(255)).astype(np.float32)  # noqa: E731
    return f(xtr[:10000]), ytr[:10000], f(xte[:2000]), yte[:2000]


class RBMFashionFeatures:
    timeout = 300
    number = 1
    repeat = 3

    def setup(self):
        pin_threads()
        self.X, self.y, self.Xt, self.yt = _fashion()
        self.p = rbm.init(random.key(0), 784, 512, data=self.X)
        rbm.fit(self.p, self.X[:200], random.key(1), epochs=1)            # JIT warm-up
        self.fitted = rbm.fit(self.p, self.X[:1000], random.key(1), epochs=1).params
        self.model = nn.serial(("out", L.Dense(10)))

    def time_rbm_fit(self):
        rbm.fit(self.p, self.X, random.key(1), epochs=10, sample_visible=False,
                weight_decay=2e-4)

    def time_features_and_probe(self):
        H = rbm.transform(self.fitted, self.X)
        rbm.transform(self.fitted, self.Xt)
        _, params = self.model.init(random.key(2), (512,))
        train.fit(self.model, params, optim.adam(0.01), (H, self.y), key=random.key(3),
                  epochs=5, batch_size=100, progress=False, log=lambda *a: None)
