"""kronjit: Numba-compiled parallel kernels for structured matrices."""
from ._runtime import get_num_threads, num_threads, set_num_threads
from ._info import info
from .dense import kron
from . import sparse
from .structured import (block_circulant, block_diag, block_hankel, block_toeplitz,
                         block_toeplitz_matvec)
from .vectrick import kron_matvec
from .operators import KronEigh, KronProduct, KronSum, KronVector

__version__ = "0.1.0"

__all__ = ["kron", "sparse", "block_toeplitz", "block_hankel", "block_circulant",
           "block_diag", "block_toeplitz_matvec", "kron_matvec", "KronProduct", "KronSum", "KronVector",
           "KronEigh", "info", "get_num_threads", "set_num_threads",
           "num_threads", "__version__"]
