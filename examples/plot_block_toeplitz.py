"""
A block Toeplitz matrix and its FFT product
===========================================

:func:`kronjit.block_toeplitz` builds the matrix whose block ``(i, j)`` is
``c[i - j]`` below the diagonal and ``r[j - i]`` above it, bit for bit what
``scipy.linalg.toeplitz`` gives for 1x1 blocks;
:func:`kronjit.block_toeplitz_matvec` multiplies by it through FFTs of a
block circulant embedding, without forming it.
"""
import matplotlib.pyplot as plt
import numpy as np

import kronjit

rng = np.random.default_rng(1)
m, p = 8, 4
lags = np.arange(m)[:, None, None]
c = np.exp(-lags / 3.0) * (np.eye(p) + 0.3 * rng.standard_normal((m, p, p)))
T = kronjit.block_toeplitz(c)     # r=None: block Hermitian, r[k] = c[k].conj().T

x = rng.standard_normal(m * p)
y = kronjit.block_toeplitz_matvec(c, None, x)
print("FFT product agrees with the dense one:", np.allclose(y, T @ x))

fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(T, cmap="coolwarm", vmin=-1.2, vmax=1.2)
for k in range(1, m):
    ax.axhline(k * p - 0.5, color="k", linewidth=0.5)
    ax.axvline(k * p - 0.5, color="k", linewidth=0.5)
ax.set_title(f"block Toeplitz: {m} x {m} blocks of {p} x {p}")
plt.show()
