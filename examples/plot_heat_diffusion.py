"""
Heat diffusion on a grid graph
==============================

The Laplacian of the 60 x 80 grid graph is the Kronecker sum of two path
Laplacians, ``L = L1 ⊕ L2``.  :class:`kronjit.KronSum` never forms it:
``exp(-t L) = exp(-t L1) ⊗ exp(-t L2)`` is a product of two small matrix
exponentials applied with the vec-trick, and heat is conserved exactly.
"""
import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

import kronjit


def path_laplacian(n):
    return sp.diags_array([-np.ones(n - 1), np.r_[1, 2 * np.ones(n - 2), 1], -np.ones(n - 1)],
                          offsets=[-1, 0, 1], format="csr")


rows, cols = 60, 80
L = kronjit.KronSum([path_laplacian(rows), path_laplacian(cols)])
u0 = np.zeros(rows * cols)
u0[15 * cols + 20] = 1.0          # heat at two vertices
u0[45 * cols + 60] = 0.5

times = (1.0, 5.0, 25.0, 100.0)
fig, axes = plt.subplots(1, len(times), figsize=(12, 3))
for ax, t in zip(axes, times):
    u = L.expm(-t) @ u0
    ax.imshow(u.reshape(rows, cols), origin="lower", cmap="inferno")
    ax.set_title(f"t = {t:g}, heat {u.sum():.6f}")
    ax.set_axis_off()
plt.show()
