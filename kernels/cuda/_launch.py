"""Launch configuration shared by the CUDA launchers (host-side Python, nothing compiled here).

The numbers come from the current device's properties (multiprocessor count, threads per
block); under the CUDA simulator, which reports none, from the defaults below.
"""
import functools

import numpy as np
from numba import cuda

#: True when numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
SIMULATOR = "simulator" in cuda.device_array.__module__

THREADS = 256           # threads per block of the 1-D (elementwise) kernels
_SIM_SMS = 2            # "multiprocessors" assumed under the simulator
_BLOCKS_PER_SM = 8      # resident 256-thread blocks per multiprocessor worth launching


@functools.lru_cache(maxsize=None)
def device_props():
    """(multiprocessor count, max threads per block, warp size) of the current device."""
    if SIMULATOR:
        return _SIM_SMS, 1024, 32
    dev = cuda.get_current_device()
    return (int(dev.MULTIPROCESSOR_COUNT), int(dev.MAX_THREADS_PER_BLOCK),
            int(dev.WARP_SIZE))


def cdiv(a, b):
    return -(-a // b)


def max_blocks():
    """Blocks that fill the device: enough resident blocks on every multiprocessor to hide
    latency; grid-stride loops cover the rest."""
    return device_props()[0] * _BLOCKS_PER_SM


def grid_1d(n, threads=THREADS):
    """(blocks, threads) for a grid-stride loop over n items."""
    return max(1, min(cdiv(n, threads), max_blocks())), threads


def empty(shape, dtype):
    """An uninitialised device array."""
    return cuda.device_array(shape, dtype=np.dtype(dtype))
