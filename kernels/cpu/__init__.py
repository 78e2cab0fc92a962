"""CPU kernels: ``@njit(parallel=True, cache=True)``, one module per family, or per algorithm
where a family has several (``conv.py`` dispatches to ``conv_direct.py``, ``conv_im2col.py``
and ``conv_winograd.py``; ``recurrent.py`` re-exports ``recurrent_rnn.py``,
``recurrent_lstm.py`` and ``recurrent_gru.py``); no file over ~500 lines.

Conventions shared by every module here:

* Big matrix products go through BLAS (``np.dot`` on contiguous blocks), split into a fixed
  number of blocks across ``prange``; BLAS itself is pinned to one thread by ``dlkit``.
* Every ``prange`` iteration writes memory no other iteration writes.  Reductions use a fixed
  number of chunks that depends only on the problem size (``n_chunks``), summed in a fixed
  order, so results are bit-identical across runs and thread counts.
* Constants are typed to the data (``x.dtype.type(0.5)`` or ``np.float32``) so float32 kernels
  stay float32; float64 compiles too, for gradient checks.
* A kernel and its njit helpers live in one file: Numba's on-disk cache checks only the
  kernel's own file.  The ``_``-prefixed modules (``_blas``, ``_fpenv``, ``_parallel``,
  ``_conv_common``, ``_recurrent_common``) are the helpers shared across files; after editing
  one, clear the caches: ``find kernels -name __pycache__ -exec rm -rf {} +``.
"""
