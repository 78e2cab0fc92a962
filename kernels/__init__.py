"""dlkit's compiled kernels: pure functions over arrays (see DESIGN.md, "The kernel contract").

``kernels.cpu`` holds the Numba ``@njit(parallel=True, cache=True)`` kernels, one module per
family; ``kernels.cuda`` mirrors it name for name for the GPU.  Nothing here validates its
inputs: that is ``dlkit``'s job, on the host, before any kernel runs.
"""

#: Marker that ``dlkit`` checks at import, so that another PyPI package called ``kernels``
#: shadowing this one is caught with a clear message instead of an obscure AttributeError.
DLKIT_KERNELS = True
