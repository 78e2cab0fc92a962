"""Central differences for the kernel tests (a helper module, not a test file)."""
import numpy as np


def central_differences(f, arrays, R, h=1e-6):
    """Central differences of sum(f(*arrays) * R) with respect to each array (float64 arrays,
    perturbed in place one element at a time and restored): the gradients a kernel's backward
    must give for the output gradient R."""
    out = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            up = float((f(*arrays) * R).sum())
            a[i] = old - h
            down = float((f(*arrays) * R).sum())
            a[i] = old
            g[i] = (up - down) / (2 * h)
        out.append(g)
    return out
