"""asv: what a training run does besides the kernels, and the whole step.

  ZooStep.time_train_step(model)      one training step: forward, loss, backward, Adam
  ZooStep.peakmem_train_step(model)   the process's peak resident bytes during that step
  Optimizers.time_step(optimizer)     one update of the CNN's 693k params
  DataLoading.time_load(dataset)      Fashion-MNIST or IMDb from the shared copies, parsed
  Checkpoint.time_save / time_load    the CNN's params and Adam state, written atomically
                                      and read back verified

Models (``steps.zoo_step``): the zoo's mlp, cnn, cnn-deep, lstm (row by row) and resnet at
batch 128, imdb (train_imdb.py's LSTM, batch 64 x 200) and gpt (char_rnn.py --model
transformer, batch 12 x 64).  ``peakmem_`` counts from the end of ``setup`` (JIT compilation
and warm-up excluded, ``compare_torch.reset_peak_memory``): the interpreter, dlkit, the model's
params, optimizer state, activations and workspace, what PyTorch's figure in
``compare_torch.py --memory`` counts too.
"""
import os
import tempfile

import numpy as np

from .common import pin_threads
from .compare_torch import reset_peak_memory
from .steps import zoo_step

MODELS = ["mlp", "cnn", "cnn-deep", "lstm", "resnet", "imdb", "gpt"]


class ZooStep:
    params = [MODELS]
    param_names = ["model"]

    def setup(self, model):
        pin_threads()
        self.step = zoo_step(model)
        self.step()                      # compiles (or loads from the Numba cache)
        reset_peak_memory()

    def time_train_step(self, model):
        self.step()

    def peakmem_train_step(self, model):
        self.step()


def _cnn_params():
    from dlkit import random
    from dlkit.zoo import cnn
    model, _, in_shape = cnn()
    return model.init(random.key(0), in_shape)[1]


class Optimizers:
    params = [["sgd", "momentum", "rmsprop", "adam", "adamw"]]
    param_names = ["optimizer"]

    def setup(self, name):
        pin_threads()
        from dlkit import optim, tree
        self.opt = {"sgd": optim.sgd(1e-2), "momentum": optim.sgd(1e-2, momentum=0.9),
                    "rmsprop": optim.rmsprop(1e-3), "adam": optim.adam(1e-3),
                    "adamw": optim.adamw(1e-3)}[name]
        self.params = _cnn_params()
        self.grads = tree.map(lambda a: np.full_like(a, 1e-3), self.params)
        self.state = self.opt.init(self.params)
        self.time_step(name)

    def time_step(self, name):
        self.params, self.state = self.opt.step(self.grads, self.state, self.params)


class DataLoading:
    """Reading and parsing a data set from $DLKIT_DATA (skipped without it): Fashion-MNIST's
    four gzipped IDX files, the IMDb archive's 50,000 reviews."""
    params = [["fashion-mnist", "imdb"]]
    param_names = ["dataset"]
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self, name):
        if not os.environ.get("DLKIT_DATA"):
            raise NotImplementedError("DataLoading needs DLKIT_DATA (the shared data sets)")

    def time_load(self, name):
        from dlkit import data
        if name == "imdb":
            data.load_imdb(download_ok=False, progress=False)
        else:
            data.load_mnist(name, download=False, progress=False)


class Checkpoint:
    """checkpoint.save (atomic: temporary files, fsync, rename) and checkpoint.load (every
    array's checksum verified against the manifest) of the CNN's params and Adam state."""

    def setup(self):
        from dlkit import checkpoint, optim
        self.tmp = tempfile.TemporaryDirectory()
        self.params = _cnn_params()
        self.opt_state = optim.adam(1e-3).init(self.params)
        self.saved = checkpoint.save(os.path.join(self.tmp.name, "load"), 0, self.params,
                                     self.opt_state)
        self.steps = 0

    def teardown(self):
        self.tmp.cleanup()

    def time_save(self):
        from dlkit import checkpoint
        self.steps += 1
        checkpoint.save(os.path.join(self.tmp.name, "save"), self.steps, self.params,
                        self.opt_state, keep=2)

    def time_load(self):
        from dlkit import checkpoint
        checkpoint.load(self.saved, like=self.params)
