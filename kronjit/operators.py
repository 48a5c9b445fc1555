"""Lazy Kronecker operators: ``KronProduct`` and ``KronSum``.

Both are :class:`scipy.sparse.linalg.LinearOperator` subclasses, so scipy's
iterative solvers and eigensolvers (``cg``, ``gmres``, ``lsqr``, ``eigsh``,
``expm_multiply``) take them directly.  Products with vectors and blocks of
vectors go through :func:`kronjit.kron_matvec` with the factors validated,
classified and planned once per operator, so an iterative solver pays only
for the kernels.

Structure is used wherever it gives an exact shortcut:

* ``(A1 ⊗ ... ⊗ Ad)^-1 = A1^-1 ⊗ ... ⊗ Ad^-1``, ``det`` from the factors'
  determinants, and the eigendecomposition of a Kronecker product (or sum) of
  Hermitian factors from the factors' own: eigenvectors ``Q1 ⊗ ... ⊗ Qd``,
  eigenvalues the Kronecker product (or sum) of the factors' eigenvalues.
* ``K + s I`` with Hermitian factors (a Gaussian process's covariance plus
  noise) is solved and its log-determinant computed through those
  eigendecompositions in ``O(sum n_i^3 + N sum n_i)`` time.
* ``exp(t (A ⊕ B)) = exp(t A) ⊗ exp(t B)``.

Factors are kept by reference, not copied: do not modify them after building
an operator (its cached decompositions would go stale).
"""
from __future__ import annotations

import abc
import functools
import math
import numbers
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ._runtime import serial_kernel, small_lapack
from ._typing import ArrayLike, MatrixLike, SparseLike
from .dense import kron
from . import sparse as _sparse
from .vectrick.product import PreparedProduct, check_factor, check_vectors, dense_factor

__all__ = ["KronProduct", "KronSum", "KronVector", "KronEigh"]

#: The result of ``eigh()``: ``eigenvalues`` a :class:`KronVector`,
#: ``eigenvectors`` a :class:`KronProduct`.
KronEigh = namedtuple("KronEigh", ["eigenvalues", "eigenvectors"])
KronEigh.__doc__ = """The eigendecomposition of a Kronecker product or sum, held lazily.

``eigenvalues`` is a :class:`KronVector` (in the operator's row-major order,
not sorted), ``eigenvectors`` a :class:`KronProduct` of the factors'
eigenvector matrices, so that ``K = Q diag(w) Q^H``.  Returned by
:meth:`KronProduct.eigh` and :meth:`KronSum.eigh`.

Examples
--------
>>> import numpy as np
>>> from kronjit import KronProduct
>>> K = KronProduct([np.array([[2.0, 1.0], [1.0, 2.0]]), np.diag([1.0, 3.0])])
>>> w, Q = K.eigh()
>>> np.allclose(Q.todense() @ np.diag(w.toarray()) @ Q.todense().T, K.todense())
True
"""


# --- helpers ---------------------------------------------------------------------

def _check_scalar(alpha):
    if type(alpha) in (float, int):
        return alpha
    if not (isinstance(alpha, numbers.Number) or (np.isscalar(alpha) and
                                                  np.asarray(alpha).dtype.kind in "biufc")):
        raise TypeError(f"a Kronecker operator can only be scaled by a number, got "
                        f"{type(alpha).__name__}")
    return alpha


def _hermitian_tolerance(dtype):
    """Relative asymmetry accepted as rounding in a matrix meant to be Hermitian."""
    dtype = np.dtype(dtype)
    eps = np.finfo(dtype).eps if dtype.kind in "fc" else np.finfo(np.float64).eps
    return float(np.sqrt(eps))


#: LAPACK's type prefix for each dtype ``scipy.linalg.blas.find_best_blas_type`` picks.
_LAPACK_DTYPES = {"s": np.float32, "d": np.float64, "c": np.complex64, "z": np.complex128}
_LAPACK_PREFIXES = {np.dtype(t).char: p for p, t in _LAPACK_DTYPES.items()}


def _factor_eigh(f, name, what):
    """``(w, Q)`` of a Hermitian factor, after checking it is one (ValueError naming
    ``name``); call it inside ``small_lapack``."""
    a = dense_factor(f)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{what} needs square factors; {name} has shape {a.shape}")
    prefix = _LAPACK_PREFIXES.get(a.dtype.char) or scipy.linalg.blas.find_best_blas_type((a,))[0]
    a = a.astype(_LAPACK_DTYPES[prefix], copy=False)  # what LAPACK would convert it to
    scale, defect = _hermitian_defect(a)
    if not np.isfinite(scale):
        _check_finite(a, name)
    if defect > _hermitian_tolerance(a.dtype) * scale:
        raise ValueError(f"{what} needs Hermitian (symmetric) factors; {name} is not")
    return _hermitian_eigh(a, prefix)


@serial_kernel
def _hermitian_defect(a):
    """``(max |a_ij|, max |a_ij - conj(a_ji)|)`` of a square matrix in one pass (the
    numpy expressions take four, and a temporary); ``(nan, nan)`` if an entry is not
    finite."""
    n = a.shape[0]
    scale = 0.0
    defect = 0.0
    for i in range(n):
        for j in range(n):
            x = a[i, j]
            if not np.isfinite(x):
                return np.nan, np.nan
            scale = max(scale, abs(x))
            if j >= i:
                defect = max(defect, abs(x - np.conj(a[j, i])))
    return scale, defect


@functools.lru_cache(maxsize=64)
def _evr_driver(prefix, n):
    """scipy's wrapper of LAPACK's ``?syevr``/``?heevr`` (``scipy.linalg.eigh``'s
    default driver) for ``n x n`` matrices of type ``prefix``, and its workspace sizes."""
    name = "heevr" if prefix in "cz" else "syevr"
    driver, query = scipy.linalg.get_lapack_funcs((name, name + "_lwork"),
                                                  dtype=_LAPACK_DTYPES[prefix])
    *sizes, info = query(n, lower=1)
    if info:
        raise np.linalg.LinAlgError(f"LAPACK's {prefix}{name} workspace query failed "
                                    f"(info={info})")
    names = ("lwork", "lrwork", "liwork") if name == "heevr" else ("lwork", "liwork")
    # sizes come back as floating point (work[0], single precision for s/c): round up
    return driver, {k: max(1, math.ceil(np.nextafter(np.float32(np.real(v)), np.float32(np.inf))))
                    for k, v in zip(names, sizes)}


def _hermitian_eigh(a, prefix):
    """``scipy.linalg.eigh(a)`` (lower triangle, driver ``evr``, same LAPACK call) for ``a``
    of LAPACK type ``prefix``, without scipy's per-call argument handling: two
    eigendecompositions are most of a small Gaussian-process step."""
    if a.size == 0:
        return scipy.linalg.eigh(a)  # its empty results' dtypes
    driver, work = _evr_driver(prefix, a.shape[0])
    w, v, _, _, info = driver(a, compute_v=1, lower=1, **work)
    if info:
        raise np.linalg.LinAlgError(f"the eigendecomposition did not converge (LAPACK "
                                    f"{prefix}{'he' if prefix in 'cz' else 'sy'}evr info={info})")
    return w, v


def _check_finite(a, name):
    """``a``, after a ValueError naming ``name`` if it holds NaN or inf (LAPACK would
    return garbage or fail with a message naming nothing)."""
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf; inverses, determinants and "
                         "eigendecompositions need finite factors")
    return a


def _numerically_singular(absval):
    """Whether eigenvalue magnitudes ``absval`` are those of a singular matrix, up to the
    rounding of eigendecompositions: the smallest below ``N eps`` times the largest."""
    eps = np.finfo(absval.dtype).eps
    return bool(absval.size) and not absval.min() > absval.size * eps * absval.max()


def _slogdet_from_eigenvalues(lam, absval, singular):
    """``(sign, logabsdet)`` of a matrix with eigenvalues ``lam`` (a 1-D array) of
    magnitudes ``absval``; ``singular`` (``_numerically_singular``: the test that makes a
    solve raise) gives sign 0 and -inf."""
    if singular:
        return lam.dtype.type(0), -np.inf
    logabs = float(np.sum(np.log(absval)))
    if lam.dtype.kind == "c":
        return np.exp(1j * float(np.sum(np.angle(lam)))), logabs
    return (-1.0 if np.count_nonzero(lam < 0) % 2 else 1.0), logabs


def logdet_from_slogdet(sign, logabs):
    """``log det`` from ``(sign, log|det|)``: -inf for a singular matrix, nan for a
    negative real determinant, complex for a complex one."""
    if sign == 0:
        return -np.inf
    if isinstance(sign, complex) or np.iscomplexobj(sign):
        return complex(np.log(sign) + logabs)
    return logabs if sign > 0 else np.nan


# --- lazy vectors --------------------------------------------------------------

class KronVector:
    """A vector of length ``prod len(v_i)`` held as its factors.

    ``kind='product'``: ``kron(v1, ..., vd)`` (the eigenvalues of a
    :class:`KronProduct`); ``kind='sum'``: ``v1 ⊕ ... ⊕ vd``, entry
    ``(i1, ..., id)`` being ``v1[i1] + ... + vd[id]`` (the eigenvalues of a
    :class:`KronSum`).  Entries are in the operators' row-major order, not
    sorted.  ``np.asarray(v)`` or ``v.toarray()`` forms it.

    Examples
    --------
    >>> import numpy as np
    >>> from kronjit import KronVector
    >>> v = KronVector([np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])], kind="sum")
    >>> v.toarray()
    array([4., 5., 6., 5., 6., 7.])
    >>> float(v.min()), float(v.max()), len(v)
    (4.0, 7.0, 6)
    """

    def __init__(self, factors: Sequence[ArrayLike], kind: str = "product") -> None:
        if kind not in ("product", "sum"):
            raise ValueError(f"kind must be 'product' or 'sum', got {kind!r}")
        vecs = []
        for i, v in enumerate(factors):
            v = np.asarray(v)
            if v.ndim != 1:
                raise ValueError(f"factors[{i}] must be 1-D, got shape {v.shape}")
            vecs.append(v)
        if not vecs:
            raise ValueError("factors must hold at least one vector")
        self.factors, self.kind = tuple(vecs), kind
        self.dtype = np.result_type(*vecs)
        self.shape = (math.prod(v.size for v in vecs),)

    ndim = 1

    @property
    def size(self) -> int:
        return self.shape[0]

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        lens = " x ".join(str(v.size) for v in self.factors)
        return f"<KronVector ({self.kind} of lengths {lens}) with dtype={self.dtype}>"

    def toarray(self) -> np.ndarray:
        """The vector formed, shape ``(N,)``."""
        if self.kind == "product":
            return kron(*self.factors) if len(self.factors) > 1 else self.factors[0].copy()
        out = self.factors[0].astype(self.dtype)
        for v in self.factors[1:]:
            out = np.add.outer(out, v).reshape(-1)
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.toarray()
        return a if dtype is None else a.astype(dtype, copy=False)

    def _real_factors(self, what):
        if self.dtype.kind not in "biuf":
            raise TypeError(f"KronVector.{what}() needs real entries, got dtype {self.dtype}")
        if self.size == 0:
            raise ValueError(f"KronVector.{what}() of an empty vector")

    def _extremes(self):
        if self.kind == "sum":
            return (sum(v.min() for v in self.factors), sum(v.max() for v in self.factors))
        # a product of intervals reaches its extremes at products of endpoints
        lo = hi = self.dtype.type(1)
        for v in self.factors:
            ends = [lo * v.min(), lo * v.max(), hi * v.min(), hi * v.max()]
            lo, hi = min(ends), max(ends)
        return lo, hi

    def min(self) -> Any:
        """The smallest entry, from the factors (no O(N) pass)."""
        self._real_factors("min")
        return self._extremes()[0]

    def max(self) -> Any:
        """The largest entry, from the factors (no O(N) pass)."""
        self._real_factors("max")
        return self._extremes()[1]

    def sum(self) -> Any:
        """The sum of the entries, from the factors."""
        n = self.size
        if self.kind == "product":
            return math.prod(v.sum() for v in self.factors)
        return sum(v.sum() * (n // v.size) for v in self.factors if v.size)


# --- operators -----------------------------------------------------------------

class _KronOperator(LinearOperator, metaclass=abc.ABCMeta):
    """What KronProduct and KronSum share: factor checks, scalars, solves and
    determinants through eigenvalues.

    A subclass supplies the hooks marked abstract: ``_apply`` (every product
    goes through it), ``_scaled`` and ``_negated``, ``_eigen`` and the dense
    and sparse forms.
    """

    # numpy scalars and arrays defer to the operator's own __rmul__/__rmatmul__
    __array_ufunc__ = None
    _SYMBOL = ""  # between factor shapes in repr: "⊗" or "⊕"

    @staticmethod
    def _factor_list(factors):
        if not isinstance(factors, (list, tuple)):
            raise TypeError(f"factors must be a list or tuple of 2-D arrays, scipy sparse "
                            f"matrices or KronProducts, got {type(factors).__name__}")
        if len(factors) == 0:
            raise ValueError("factors must hold at least one factor")
        return factors

    def __repr__(self):
        shapes = f" {self._SYMBOL} ".join(f"{f.shape[0]}x{f.shape[1]}" for f in self.factors)
        return (f"<{self.shape[0]}x{self.shape[1]} {type(self).__name__} ({shapes}) with "
                f"dtype={self.dtype}>")

    # products -------------------------------------------------------------------
    @abc.abstractmethod
    def _apply(self, x, out=None, trans="N"):
        """``op(K) @ x`` for ``x`` of shape ``(N,)`` or ``(N, k)``, ``op`` given by
        ``trans`` (``'N'`` or ``'C'``; ``'T'`` too), into ``out`` if given."""

    def _matvec(self, x):
        return self._apply(x)

    _matmat = _matvec

    def _rmatvec(self, x):
        return self._apply(x, trans="C")

    _rmatmat = _rmatvec

    # numbers ------------------------------------------------------------------
    @abc.abstractmethod
    def _scaled(self, alpha):
        """``alpha * K`` as an operator of the same class."""

    def __rmul__(self, x):
        if np.isscalar(x):
            return self._scaled(_check_scalar(x))
        return super().__rmul__(x)

    def __neg__(self):
        return self._negated()

    @abc.abstractmethod
    def _negated(self):
        """``-K`` as an operator of the same class."""

    def __truediv__(self, other):
        if not np.isscalar(other):
            raise ValueError("a Kronecker operator can only be divided by a scalar")
        return self._scaled(1 / _check_scalar(other))

    def dot(self, x: Any) -> Any:
        if np.isscalar(x):
            return self._scaled(_check_scalar(x))
        return super().dot(x)

    # checks -------------------------------------------------------------------
    def _rhs(self, b, name="b"):
        """``b`` as an array of shape ``(N,)`` or ``(N, k)``, checked."""
        b = check_vectors(b, name)
        n = self.shape[0]
        if b.shape[0] != n:
            raise ValueError(f"{name} has shape {b.shape}; expected ({n},) or ({n}, k)")
        return b

    def _require_square(self, what):
        for i, f in enumerate(self.factors):
            if f.shape[0] != f.shape[1]:
                raise ValueError(f"{what} needs square factors; factors[{i}] has shape "
                                 f"{f.shape}")

    # eigen-based methods (``_eigen()`` gives ``(KronVector, KronProduct)``) ----------
    @abc.abstractmethod
    def _eigen(self, what):
        """``KronEigh`` of the operator, computed once; ``what`` names the caller in errors."""

    def _shifted_eigenvalues(self, shift, what):
        """``(lam, absval, singular, Q)``: the eigenvalues of ``K + shift I`` formed, their
        magnitudes, whether the matrix is numerically singular, and the eigenvectors.
        Those of the last shift asked are kept: a solve and a log-determinant share them."""
        w, q = self._eigen(what)
        if shift is not None and not np.isfinite(_check_scalar(shift)):
            raise ValueError(f"{what}: shift must be a finite number, got {shift!r}")
        key = (type(shift), shift)  # 1 and 1.0 give the same array, 1 and 1+0j do not
        kept = self._shifted
        if kept is None or kept[0] != key:
            lam = w.toarray()  # a new array: shifted in place when the dtype allows
            if shift is not None:
                lam = np.add(lam, shift, out=lam if np.result_type(lam.dtype, shift) == lam.dtype
                             else None)
            absval = np.abs(lam)
            kept = self._shifted = (key, lam, absval, _numerically_singular(absval))
        return kept[1], kept[2], kept[3], q

    def _solve_eigen(self, b, shift, what):
        """``(K + shift I)^-1 b`` as ``Q ((Q^H b) / (w + shift))``."""
        b = self._rhs(b)
        lam, absval, singular, q = self._shifted_eigenvalues(shift, what)
        if singular:
            raise np.linalg.LinAlgError(
                f"{what}: the matrix is singular (smallest eigenvalue magnitude "
                f"{absval.min():.3g}, largest {absval.max():.3g})")
        y = q._rmatvec(b)  # (both products take b of shape (N,) or (N, k))
        lam = lam.reshape(lam.shape + (1,) * (b.ndim - 1))
        y = np.divide(y, lam, out=y if np.result_type(y.dtype, lam.dtype) == y.dtype else None)
        return q._matvec(y)

    def _slogdet_eigen(self, shift, what):
        lam, absval, singular, _ = self._shifted_eigenvalues(shift, what)
        return _slogdet_from_eigenvalues(lam, absval, singular)

    # dense and sparse forms -----------------------------------------------------
    @abc.abstractmethod
    def todense(self) -> np.ndarray:
        """The operator as a dense ndarray of shape ``(M, N)`` (O(M N) memory)."""

    def toarray(self) -> np.ndarray:
        """Same as :meth:`todense`."""
        return self.todense()

    @abc.abstractmethod
    def tosparse(self, format: str = "csr") -> SparseLike:
        """The operator as a scipy sparse array or matrix in ``format``."""

    @abc.abstractmethod
    def diagonal(self) -> np.ndarray:
        """The main diagonal, an ndarray of shape ``(min(M, N),)``."""


class KronProduct(_KronOperator):
    """The Kronecker product ``A1 ⊗ A2 ⊗ ⋯ ⊗ Ad`` as a lazy linear operator.

    Parameters
    ----------
    factors : list or tuple
        Dense 2-D arrays, scipy sparse arrays/matrices, or KronProducts (whose
        factors are taken in their place), ``Ai`` of shape ``(mi, ni)``;
        rectangular allowed.

    Attributes
    ----------
    factors : tuple
        The factors (KronProducts expanded).
    shape : tuple
        ``(prod mi, prod ni)``.
    dtype : numpy.dtype
        numpy's promotion of the factors' dtypes.

    Notes
    -----
    ``K @ x`` for ``x`` of shape ``(N,)`` or ``(N, k)`` is
    :func:`kronjit.kron_matvec`; ``K.T``, ``K.H``, ``alpha * K`` and the
    product of two KronProducts with matching factor shapes are KronProducts
    again.  Inverse, solve, determinant and eigendecomposition come from the
    factors; see each method.

    Examples
    --------
    >>> import numpy as np
    >>> from kronjit import KronProduct
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.standard_normal((3, 3)), rng.standard_normal((4, 4))
    >>> K = KronProduct([A, B])
    >>> K.shape
    (12, 12)
    >>> x = rng.standard_normal(12)
    >>> np.allclose(K @ x, np.kron(A, B) @ x)
    True
    >>> np.allclose(K.solve(x), np.linalg.solve(np.kron(A, B), x))
    True
    """

    _SYMBOL = "⊗"

    def __init__(self, factors: Sequence[MatrixLike | KronProduct]) -> None:
        mats = []
        for i, f in enumerate(self._factor_list(factors)):
            if isinstance(f, KronProduct):
                mats.extend(f.factors)
            elif isinstance(f, LinearOperator):
                raise TypeError(f"factors[{i}] is a {type(f).__name__}; a KronProduct's factors "
                                "must be 2-D arrays, scipy sparse matrices or KronProducts")
            else:
                mats.append(check_factor(f, f"factors[{i}]"))
        self._init_checked(mats)

    def _init_checked(self, mats):
        self.factors = tuple(mats)
        self._labels = tuple(f"factors[{i}]" for i in range(len(mats)))
        self._prepared = None
        self._inverse = None
        self._eig = None
        self._shifted = None
        dtype = np.result_type(*[f.dtype for f in mats])
        shape = (math.prod(f.shape[0] for f in mats), math.prod(f.shape[1] for f in mats))
        super().__init__(dtype, shape)

    @classmethod
    def _of_checked(cls, mats):
        """A KronProduct of factors known to pass ``check_factor`` (computed here, as
        eigenvector matrices are): the checks skipped."""
        op = cls.__new__(cls)
        op._init_checked(mats)
        return op

    @classmethod
    def _term(cls, f, label):
        """A KronSum's term: ``f`` (a checked factor or a KronProduct) as a
        KronProduct whose errors name its factors after ``label``."""
        if isinstance(f, KronProduct):
            term = cls(f.factors)
            term._labels = tuple(f"{label}.factors[{j}]" for j in range(len(f.factors)))
        else:
            term = cls([f])
            term._labels = (label,)
        return term

    # products -------------------------------------------------------------------
    @property
    def _product(self):
        """The factors prepared for products (classified on first use)."""
        if self._prepared is None:
            self._prepared = PreparedProduct(self.factors)
        return self._prepared

    def _apply(self, x, out=None, trans="N"):
        return self._product.apply(x, out, trans)

    def _transpose(self):
        return KronProduct([f.T for f in self.factors])

    def _adjoint(self):
        return KronProduct([f.conj().T for f in self.factors])

    def _scaled(self, alpha):
        # scale the smallest factor: alpha * (A ⊗ B) = (alpha A) ⊗ B
        return self._with_smallest(lambda f: f * alpha)

    def _negated(self):
        # -f, not f * -1: numpy negates unsigned integers by wrapping, as -K formed would
        return self._with_smallest(lambda f: -f)

    def _with_smallest(self, change):
        i = min(range(len(self.factors)), key=lambda j: self.factors[j].shape[0] *
                self.factors[j].shape[1])
        mats = list(self.factors)
        mats[i] = change(mats[i])
        return KronProduct(mats)

    def dot(self, x: Any) -> Any:
        """``K @ x``: an array for an array, a KronProduct for a KronProduct with
        matching factor shapes (``(A ⊗ B)(C ⊗ D) = AC ⊗ BD``), scipy's lazy
        product for any other operator."""
        if isinstance(x, KronProduct) and len(x.factors) == len(self.factors) and all(
                a.shape[1] == b.shape[0] for a, b in zip(self.factors, x.factors)):
            return KronProduct([a @ b for a, b in zip(self.factors, x.factors)])
        return super().dot(x)

    # forms ------------------------------------------------------------------------
    def todense(self) -> np.ndarray:
        """The product formed with :func:`kronjit.kron`, an ndarray of shape ``(M, N)``."""
        mats = [dense_factor(f) for f in self.factors]
        return kron(*mats) if len(mats) > 1 else mats[0].copy()

    def tosparse(self, format: str = "csr") -> SparseLike:
        """The product formed with :func:`kronjit.sparse.kron` in ``format``
        (scipy's sparray-or-spmatrix rule: a sparse array if any factor is one)."""
        mats = list(self.factors)
        if len(mats) == 1:
            mats.append(np.ones((1, 1), dtype=mats[0].dtype))
        return _sparse.kron(*mats, format=format)

    def diagonal(self) -> np.ndarray:
        """The main diagonal, shape ``(min(M, N),)``; the Kronecker product of
        the factors' diagonals when they are square."""
        if all(f.shape[0] == f.shape[1] for f in self.factors):
            diags = [np.asarray(f.diagonal()) for f in self.factors]
            return kron(*diags) if len(diags) > 1 else diags[0].copy()
        # entry (i, i): factor t contributes A_t[row digit t of i, column digit t of i]
        idx = np.arange(min(self.shape))
        rows = np.unravel_index(idx, [f.shape[0] for f in self.factors])
        cols = np.unravel_index(idx, [f.shape[1] for f in self.factors])
        out = np.ones(idx.size, dtype=self.dtype)
        for f, r, c in zip(self.factors, rows, cols):
            out *= np.asarray((f.tocsr() if sp.issparse(f) else f)[r, c]).reshape(-1)
        return out

    def trace(self) -> Any:
        """The trace: the product of the factors' traces when they are square."""
        if all(f.shape[0] == f.shape[1] for f in self.factors):
            return math.prod(self.dtype.type(f.trace()) for f in self.factors)
        return self.diagonal().sum()

    # inverse and solve --------------------------------------------------------------
    def inv(self) -> KronProduct:
        """The inverse, ``A1^-1 ⊗ ⋯ ⊗ Ad^-1``, as a KronProduct (square factors),
        computed once."""
        if self._inverse is None:
            self._require_square("KronProduct.inv")
            inv = []
            for i, (f, label) in enumerate(zip(self.factors, self._labels)):
                if self._product.is_identity(i):
                    inv.append(f)
                    continue
                a = _check_finite(dense_factor(f), label)
                try:
                    with small_lapack(a.shape[0]):
                        inv.append(scipy.linalg.inv(a, check_finite=False))
                except np.linalg.LinAlgError:
                    raise np.linalg.LinAlgError(
                        f"{label} is singular, so the KronProduct is") from None
            self._inverse = KronProduct(inv)
        return self._inverse

    def solve(self, b: ArrayLike, shift: float | None = None) -> np.ndarray:
        """Solve ``K x = b``, or ``(K + shift I) x = b``.

        Parameters
        ----------
        b : array_like, shape ``(N,)`` or ``(N, k)``
        shift : scalar, optional
            Solve with ``K + shift I`` (for a Gaussian process, ``shift`` is the
            noise variance).  Needs Hermitian factors; goes through their
            eigendecompositions, ``O(sum n_i^3)`` once plus ``O(N sum n_i)``
            per solve.

        Without ``shift`` the factors are inverted once (cached) and applied
        with :func:`kronjit.kron_matvec`.

        Raises
        ------
        ValueError
            Non-square factors, non-Hermitian factors with ``shift``, or ``b``
            of the wrong shape.
        numpy.linalg.LinAlgError
            If the matrix is singular.
        """
        if shift is not None:
            return self._solve_eigen(b, shift, "KronProduct.solve(b, shift=...)")
        self._require_square("KronProduct.solve")
        b = self._rhs(b)
        return self.inv() @ b

    # determinants and eigendecomposition ------------------------------------------------
    def _eigen(self, what):
        if self._eig is None:
            self._require_square(what)
            with small_lapack(max(f.shape[0] for f in self.factors)):
                pairs = [_factor_eigh(f, label, what)
                         for f, label in zip(self.factors, self._labels)]
            self._eig = KronEigh(KronVector([w for w, _ in pairs], "product"),
                                 KronProduct._of_checked([q for _, q in pairs]))
        return self._eig

    def eigh(self) -> KronEigh:
        """Eigendecomposition of a product of Hermitian factors, lazily.

        Returns
        -------
        KronEigh
            ``(eigenvalues, eigenvectors)``: a :class:`KronVector` (``kron`` of
            the factors' eigenvalues, not sorted) and a KronProduct of the
            factors' eigenvector matrices, so that ``K = Q diag(w) Q^H``.
        """
        return self._eigen("KronProduct.eigh")

    def slogdet(self, shift: float | None = None) -> tuple[Any, float]:
        """``(sign, log|det|)`` of ``K`` (or of ``K + shift I``).

        Without ``shift``, from the factors' determinants:
        ``det(A1 ⊗ ... ⊗ Ad) = prod det(Ai)^(N / ni)``.  With ``shift``, from
        the eigenvalues (Hermitian factors), ``O(N)``.
        """
        if shift is not None:
            return self._slogdet_eigen(shift, "KronProduct.slogdet(shift=...)")
        self._require_square("KronProduct.slogdet")
        n = self.shape[0]
        sign, logabs = 1.0, 0.0
        if n == 0:
            return sign, logabs  # the empty product: det of a 0 x 0 matrix is 1
        for f in self.factors:
            with small_lapack(f.shape[0]):
                s, la = np.linalg.slogdet(dense_factor(f))
            power = n // f.shape[0]
            if s == 0:
                return self.dtype.type(0) if self.dtype.kind != "c" else 0j, -np.inf
            if np.iscomplexobj(s):
                sign = sign * np.exp(1j * np.angle(s) * power)
            elif s < 0 and power % 2:
                sign = -sign
            logabs += power * float(la)
        return sign, logabs

    def logdet(self, shift: float | None = None) -> float | complex:
        """``log det K`` (or of ``K + shift I``): ``-inf`` if singular, ``nan``
        for a negative real determinant, complex for complex factors."""
        return logdet_from_slogdet(*self.slogdet(shift))


class KronSum(_KronOperator):
    """The Kronecker sum ``A1 ⊕ A2 ⊕ ⋯ ⊕ Ad`` as a lazy linear operator.

    The textbook convention: ``A ⊕ B = A ⊗ I + I ⊗ B`` and, for more
    factors, ``sum_i I ⊗ ... ⊗ Ai ⊗ ... ⊗ I`` (note that
    ``scipy.sparse.kronsum(A, B)`` is ``B ⊕ A`` in this convention).

    Parameters
    ----------
    factors : list or tuple
        Square dense 2-D arrays, scipy sparse arrays/matrices or KronProducts.

    Examples
    --------
    The Laplacian of a 3 x 4 grid graph is the Kronecker sum of two path
    Laplacians:

    >>> import numpy as np
    >>> from kronjit import KronSum
    >>> def path(n):
    ...     return 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    >>> L = KronSum([path(3), path(4)])
    >>> np.array_equal(L.todense(), np.kron(path(3), np.eye(4)) + np.kron(np.eye(3), path(4)))
    True
    """

    _SYMBOL = "⊕"

    def __init__(self, factors: Sequence[MatrixLike | KronProduct]) -> None:
        mats = []
        for i, f in enumerate(self._factor_list(factors)):
            if not isinstance(f, KronProduct):
                if isinstance(f, LinearOperator):
                    raise TypeError(f"factors[{i}] is a {type(f).__name__}; a KronSum's factors "
                                    "must be 2-D arrays, scipy sparse matrices or KronProducts")
                f = check_factor(f, f"factors[{i}]")
            if f.shape[0] != f.shape[1]:
                raise ValueError(f"KronSum needs square factors; factors[{i}] has shape "
                                 f"{f.shape}")
            mats.append(f)
        dtype = np.result_type(*[f.dtype for f in mats])
        self.factors = tuple(mats)
        # every term a KronProduct: a plain factor is a product of one
        self._terms = tuple(KronProduct._term(f, f"factors[{i}]") for i, f in enumerate(mats))
        self._embedded = None
        self._eig = None
        self._shifted = None
        n = math.prod(f.shape[0] for f in mats)
        super().__init__(dtype, (n, n))

    @classmethod
    def _of_terms(cls, terms):
        """A KronSum of ``terms`` (KronProducts; those of one factor given as that factor)."""
        return cls([t.factors[0] if len(t.factors) == 1 else t for t in terms])

    # products -------------------------------------------------------------------
    def _embedded_terms(self):
        """Term ``i`` as the product ``I ⊗ Ti ⊗ I`` in the sum's dtype."""
        if self._embedded is None:
            sizes = [t.shape[0] for t in self._terms]
            embedded = []
            for i, term in enumerate(self._terms):
                pre, post = math.prod(sizes[:i]), math.prod(sizes[i + 1:])
                # bool identities: they promote to nothing, and are detected and skipped
                before = [sp.identity(pre, dtype=np.bool_, format="csr")] if pre > 1 else []
                after = [sp.identity(post, dtype=np.bool_, format="csr")] if post > 1 else []
                inner = [f.astype(self.dtype, copy=False) for f in term.factors]
                embedded.append(KronProduct(before + inner + after))
            self._embedded = tuple(embedded)
        return self._embedded

    def _apply(self, x, out=None, trans="N"):
        first, *rest = self._embedded_terms()
        y = first._apply(x, out, trans)
        if rest:
            term = np.empty_like(y)
            for product in rest:
                product._apply(x, term, trans)
                y += term
        return y

    def _transpose(self):
        return self._of_terms(t.T for t in self._terms)

    def _adjoint(self):
        return self._of_terms(t.H for t in self._terms)

    def _scaled(self, alpha):
        # alpha (A ⊕ B) = (alpha A) ⊕ (alpha B)
        return self._of_terms(t._scaled(alpha) for t in self._terms)

    def _negated(self):
        return self._of_terms(-t for t in self._terms)

    # forms ------------------------------------------------------------------------
    def todense(self) -> np.ndarray:
        """The sum formed densely, ``sum_i kron(I, Ai, I)``, shape ``(N, N)``."""
        sizes = [t.shape[0] for t in self._terms]
        out = None
        for i, t in enumerate(self._terms):
            a = t.todense().astype(self.dtype, copy=False)
            pre, post = math.prod(sizes[:i]), math.prod(sizes[i + 1:])
            term = kron(np.eye(pre, dtype=self.dtype), a, np.eye(post, dtype=self.dtype))
            out = term if out is None else np.add(out, term, out=out)
        return out

    def tosparse(self, format: str = "csr") -> SparseLike:
        """The sum built with :func:`kronjit.sparse.kronsum`, in ``format``."""
        mats = [t.tosparse() for t in self._terms]
        out = mats[0]
        for f in mats[1:]:
            out = _sparse.kronsum(f, out)  # scipy's kronsum(B, A) is A ⊕ B
        return out.asformat(format).astype(self.dtype, copy=False)

    def _factor_diagonals(self):
        return [t.diagonal().astype(self.dtype, copy=False) for t in self._terms]

    def diagonal(self) -> np.ndarray:
        """The main diagonal: the Kronecker sum of the factors' diagonals."""
        return KronVector(self._factor_diagonals(), "sum").toarray()

    def trace(self) -> Any:
        """The trace, ``sum_i tr(Ai) N / ni``."""
        return self.dtype.type(KronVector(self._factor_diagonals(), "sum").sum())

    # eigen-based methods --------------------------------------------------------------
    def _eigen(self, what):
        if self._eig is None:
            ws, qs = [], []
            for t in self._terms:
                w, q = t._eigen(what)
                ws.append(w.toarray())
                qs.extend(q.factors)
            self._eig = KronEigh(KronVector(ws, "sum"), KronProduct._of_checked(qs))
        return self._eig

    def eigh(self) -> KronEigh:
        """Eigendecomposition of a sum of Hermitian factors, lazily.

        Returns
        -------
        KronEigh
            ``(eigenvalues, eigenvectors)``: a :class:`KronVector` of kind
            ``'sum'`` (entry ``(i1, ..., id)`` is ``w1[i1] + ... + wd[id]``, not
            sorted) and a KronProduct of the factors' eigenvector matrices.
        """
        return self._eigen("KronSum.eigh")

    def solve(self, b: ArrayLike, shift: float | None = None) -> np.ndarray:
        """Solve ``(A1 ⊕ ⋯ ⊕ Ad [+ shift I]) x = b`` through the factors'
        eigendecompositions (Hermitian factors).

        Raises ``numpy.linalg.LinAlgError`` if the matrix is singular (a graph
        Laplacian is: pass a ``shift``).
        """
        return self._solve_eigen(b, shift, "KronSum.solve")

    def slogdet(self, shift: float | None = None) -> tuple[Any, float]:
        """``(sign, log|det|)`` from the eigenvalues (Hermitian factors)."""
        return self._slogdet_eigen(shift, "KronSum.slogdet")

    def logdet(self, shift: float | None = None) -> float | complex:
        """``log det`` from the eigenvalues; see :meth:`KronProduct.logdet`."""
        return logdet_from_slogdet(*self.slogdet(shift))

    def expm(self, t: float = 1.0) -> KronProduct:
        """``exp(t K)`` as a KronProduct of the factors' exponentials.

        ``exp(t (A ⊕ B)) = exp(t A) ⊗ exp(t B)`` holds for any square factors
        (the terms commute), so ``K.expm(t) @ x`` is ``expm_multiply`` at the
        cost of ``d`` small dense exponentials and one vec-trick product.
        A KronProduct factor is exponentiated whole (formed densely).
        """
        t = _check_scalar(t)
        exps = []
        for term in self._terms:
            a = term.todense()
            with small_lapack(a.shape[0]):
                exps.append(scipy.linalg.expm(t * a))
        return KronProduct(exps)
