"""Type aliases for the public signatures."""
from __future__ import annotations

import scipy.sparse as sp
from numpy.typing import ArrayLike

__all__ = ["ArrayLike", "SparseLike", "MatrixLike"]

#: A scipy sparse array or matrix, in any format.
SparseLike = sp.sparray | sp.spmatrix
#: What the Kronecker functions take as a factor: an array or a sparse matrix.
MatrixLike = ArrayLike | SparseLike
