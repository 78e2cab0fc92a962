"""CPU kernels: ``@njit(parallel=True, cache=True)``, one module per family.

Conventions shared by every module here:

* Big matrix products go through BLAS (``np.dot`` on contiguous blocks), split into a fixed
  number of blocks across ``prange``; BLAS itself is pinned to one thread by ``dlkit``.
* Every ``prange`` iteration writes memory no other iteration writes.  Reductions use a fixed
  number of chunks that depends only on the problem size (``n_chunks``), summed in a fixed
  order, so results are bit-identical across runs and thread counts.
* Constants are typed to the data (``x.dtype.type(0.5)`` or ``np.float32``) so float32 kernels
  stay float32; float64 compiles too, for gradient checks.
"""
