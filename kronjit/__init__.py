"""kronjit: Numba-compiled parallel kernels for structured matrices."""
from ._runtime import get_num_threads, num_threads, set_num_threads
from ._info import info
from .dense import batch_kron, face_split, khatri_rao, kron
from . import sparse
from .structured import block_circulant, block_diag, block_hankel, block_toeplitz
from .toeplitz import (BlockToeplitz, MultilevelToeplitz, block_toeplitz_matvec, matmul_toeplitz,
                       solve_toeplitz)
from .vectrick import kron_matvec
from .tensors import mttkrp
from .operators import KronEigh, KronProduct, KronSum, KronVector

__version__ = "0.1.0"

__all__ = ["kron", "batch_kron", "khatri_rao", "face_split", "mttkrp", "sparse",
           "block_toeplitz", "block_hankel", "block_circulant",
           "block_diag", "block_toeplitz_matvec", "solve_toeplitz", "matmul_toeplitz",
           "BlockToeplitz", "MultilevelToeplitz", "kron_matvec", "KronProduct", "KronSum", "KronVector",
           "KronEigh", "info", "get_num_threads", "set_num_threads",
           "num_threads", "__version__"]
