"""CUDA kernels: ``@cuda.jit`` kernels and their host launchers, mirroring ``kernels.cpu`` file
for file, function for function and argument for argument.

A launcher takes numba device arrays (``numba.cuda.to_device`` / ``dlkit.device.to_device``)
and returns new device arrays; it picks grid and block sizes from the shapes and the device's
properties (``_launch``) and never copies anything to or from the host.  The only exception is
by design: the losses return their scalar as a small float64 device array (loss, first bad
row), which the API reads back once per step.

Conventions shared by every module here:

* Elementwise kernels use grid-stride loops with consecutive threads on consecutive elements
  (coalesced), 256 threads a block and at most ``_launch.max_blocks()`` blocks.
* Matrix products use the shared-memory tiled GEMM of ``dense.py`` (64x64 block tiles, 16-deep
  K slices, a 4x4 register micro-tile per thread), with bias and activation fused in its
  epilogue.
* No atomics: reductions (bias gradients, loss sums) are two-pass column / tree reductions in a
  fixed order, so results are bit-identical from run to run.
* Kernels compile lazily per dtype; those with shared memory are built per dtype by a factory
  (``cuda.shared.array`` needs the dtype as a constant).  float32 is the training dtype;
  float64 compiles too.

Under ``NUMBA_ENABLE_CUDASIM=1`` (the CUDA simulator) the same code runs in Python threads;
the tests in tests/cuda compare every launcher with its CPU twin there.
"""
