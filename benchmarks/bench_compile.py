"""asv: JIT compile time, tracked on purpose.  Each number is the wall time of a fresh Python
process doing a zoo model's first training step (batch 128, Adam) and one evaluation (1,000
images), as ``train.fit`` does on its first batch and at the end of its first epoch:

  FirstStep.track_cold_cache(model)    empty Numba cache: every kernel the model needs compiles
  FirstStep.track_warm_cache(model)    cache filled by an earlier process: only loading

The recurrent and RBM kernels' own compile times are in bench_recurrent.py and bench_rbm.py.
"""
from .common import ColdAndWarmStart

_FIRST_STEP = """
import numpy as np
from dlkit import optim, random, train
from dlkit.zoo import MODELS
model, prepare, in_shape = MODELS[{model!r}]()
_, params, *state = model.init(random.key(0), in_shape)
rng = np.random.default_rng(0)
x, y = rng.integers(0, 256, (1000, 28, 28)).astype(np.uint8), rng.integers(0, 10, 1000)
train.fit(model, params, optim.adam(1e-3), (x[:128], y[:128]), key=random.key(1),
          prepare=prepare, val=(x, y), progress=False, log=lambda s: None,
          state=state[0] if state else None)
"""


class FirstStep(ColdAndWarmStart):
    params = [["mlp", "cnn", "lstm", "cnn-deep"]]
    param_names = ["model"]

    def script(self, model):
        return _FIRST_STEP.format(model=model)

    def setup_cache(self):
        return self.first_runs()

    setup_cache.timeout = 1800
    track_cold_cache, track_warm_cache = ColdAndWarmStart.cold, ColdAndWarmStart.warm
