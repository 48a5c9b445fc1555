"""A Kronecker product prepared for repeated products: ``PreparedProduct``.

Factors are checked and classified (identity, sparse, dense) once; plans are
made per result dtype, column count and transpose, and kept.  ``kron_matvec``
prepares one per call, binding the factors' values to the decisions
``plan.call_layout`` keeps across calls; the operators in
:mod:`kronjit.operators` keep theirs bound, so an iterative solver's repeated
products pay only for the kernels.  This is
the vec-trick's interface to the rest of the package, with the factor checks
the operators and the Dask module share.
"""
import functools
import math
import threading

import numpy as np
import scipy.sparse as sp

from .._memory import MEMORY_CHECK_MIN_BYTES, ensure_arrays_allocatable
from .._runtime import kernel_input, max_threads
from .._validation import as_ndarray, check_out, check_sparse
from .plan import Factor, bind_plan, call_layout, make_plan

__all__ = ["PreparedProduct", "check_factor", "check_factor_list", "check_trans",
           "check_vectors", "dense_factor", "transposed"]

#: Work buffers up to this size are kept per thread between calls, so that an
#: iterative solver calling the product again does not pay for fresh pages.
WORKSPACE_CACHE_BYTES = 1 << 26

_TRANS = {"N": "N", "T": "T", "C": "C", "H": "C", 0: "N", 1: "T", 2: "C"}


# --- checks ------------------------------------------------------------------------

def check_trans(trans):
    """``trans`` as ``'N'``, ``'T'`` or ``'C'`` (``'H'`` and 0-2 accepted); ValueError otherwise."""
    try:
        return _TRANS[trans]
    except (KeyError, TypeError):
        raise ValueError(f"trans must be 'N', 'T' or 'C', got {trans!r}") from None


def check_factor(f, name):
    """``f`` as a 2-D numeric ndarray or a checked scipy sparse array; TypeError/ValueError
    naming ``name``."""
    if type(f) is np.ndarray and f.ndim == 2 and f.dtype.kind in "biufc":
        return f
    if sp.issparse(f):
        if f.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got a {f.ndim}-D sparse array")
        if f.dtype.kind not in "biufc":
            raise TypeError(f"{name} has dtype {f.dtype}; expected a numeric dtype")
        return check_sparse(f, name)
    f = as_ndarray(f, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {f.shape}")
    if f.dtype.kind not in "biufc":
        raise TypeError(f"{name} has dtype {f.dtype}; expected a numeric dtype")
    return f


def check_factor_list(factors, name="factors"):
    """A non-empty list or tuple of factors, each checked by check_factor."""
    if not isinstance(factors, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of 2-D arrays or sparse matrices, "
                        f"got {type(factors).__name__}")
    if len(factors) == 0:
        raise ValueError(f"{name} must hold at least one factor")
    return [check_factor(f, f"{name}[{i}]") for i, f in enumerate(factors)]


def check_vectors(x, name):
    """``x`` as a dense numeric ndarray of shape ``(N,)`` or ``(N, k)``; TypeError or
    ValueError naming ``name`` otherwise."""
    if type(x) is np.ndarray and x.ndim in (1, 2) and x.dtype.kind in "biufc":
        return x
    if sp.issparse(x):
        raise TypeError(f"{name} must be a dense array; got a scipy sparse matrix "
                        f"(use {name}.toarray(), or a KronProduct operator)")
    x = as_ndarray(x, name)
    if x.dtype.kind not in "biufc":
        raise TypeError(f"{name} has dtype {x.dtype}; expected a numeric dtype")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D of shape (N,) or 2-D of shape (N, k), got shape "
                         f"{x.shape}")
    return x


def dense_factor(f):
    """A factor as an ndarray (scipy sparse ones formed)."""
    return f.toarray() if sp.issparse(f) else np.asarray(f)


def transposed(f, trans):
    """``f``, ``f.T`` or ``f.conj().T`` for ``trans`` 'N', 'T' or 'C'."""
    if trans != "N":
        f = f.T
        if trans == "C" and f.dtype.kind == "c":
            f = f.conj()
    return f


def _is_identity(f):
    m, n = f.shape
    if m != n:
        return False
    if isinstance(f, np.ndarray):
        # the corner, then the first row, refuse most factors at once (a broadcast one
        # without a full count)
        if n and (f[0, 0] != 1 or np.count_nonzero(f[:1]) != 1):
            return False
        return np.count_nonzero(f) == n and bool(np.all(np.diagonal(f) == 1))
    f = f.tocsr(copy=True)  # a copy: summing duplicates must not touch the caller's matrix
    f.sum_duplicates()
    return (f.nnz == n and np.array_equal(f.indices, np.arange(n))
            and np.array_equal(f.indptr, np.arange(n + 1)) and bool(np.all(f.data == 1)))


def _classified(f):
    m, n = f.shape
    if _is_identity(f):
        return Factor("identity", m, n)
    if isinstance(f, np.ndarray):
        return Factor("dense", m, n, f)
    return Factor("sparse", m, n, f)  # duplicates need no summing: the kernel adds every entry


def _transposed_factor(f, trans):
    if trans == "N":
        return Factor(f.kind, f.m, f.n, f.data.tocsr()) if f.kind == "sparse" else f
    data = None if f.data is None else transposed(f.data, trans)
    if f.kind == "sparse":
        data = data.tocsr()
    return Factor(f.kind, f.n, f.m, data)


#: numpy's promotion of dtypes, remembered (a one-shot product's own cost is a few us)
_promoted = functools.lru_cache(maxsize=256)(np.result_type)


# --- work buffers --------------------------------------------------------------------

_workspace = threading.local()


def _work_buffer(slot, size, dtype):
    """A flat buffer of ``size`` elements, reused from this thread's last call when it fits."""
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = [None, None]
    nbytes = size * dtype.itemsize
    buf = cache[slot]
    if buf is not None and buf.dtype == dtype and buf.size >= size:
        return buf[:size]
    buf = np.empty(size, dtype)
    cache[slot] = buf if nbytes <= WORKSPACE_CACHE_BYTES else None
    return buf


# --- the prepared product --------------------------------------------------------------

class PreparedProduct:
    """``kron(*factors)`` ready to multiply vectors, its plans kept.

    Parameters
    ----------
    factors : list of 2-D ndarray or scipy sparse
        Already checked (``check_factor_list``).  Kept by reference.

    Attributes
    ----------
    factors : tuple of Factor
        The factors classified, in ``trans='N'`` orientation.
    dtype : numpy.dtype
        numpy's promotion of the factors' dtypes.
    """
    __slots__ = ("factors", "dtype", "_arrays", "_signature", "_oriented", "_calls")
    #: Operand signatures (dtype, trailing shape, layout, transpose) whose bound plans
    #: a product keeps.
    MAX_PLANS = 8

    def __init__(self, factors):
        self._arrays = tuple(factors)  # for out='s overlap check: dense and sparse buffers
        self.factors = tuple(_classified(f) for f in factors)
        self._signature = tuple((f.kind, f.m, f.n) for f in self.factors)
        self.dtype = _promoted(*[f.dtype for f in factors])
        self._oriented = {}
        self._calls = {}

    def is_identity(self, i):
        """Whether factor ``i`` is an identity matrix (skipped by products)."""
        return self.factors[i].kind == "identity"

    def _factors(self, trans):
        fs = self._oriented.get(trans)
        if fs is None:
            fs = self._oriented[trans] = tuple(_transposed_factor(f, trans) for f in self.factors)
        return fs

    def plan(self, dtype, k, trans="N"):
        """The plan for a result of ``dtype`` with ``k`` columns: the cached layout, bound
        to these factors (products keep theirs per operand signature, see ``apply``)."""
        return make_plan(self._factors(trans), dtype, k)

    def _call(self, x, trans, contiguous):
        """``(call, plan)``: the cached decisions for operands like these (``call_layout``)
        and its plan bound to this product's factors."""
        signature = self._signature
        if trans != "N":
            signature = tuple((kind, n, m) for kind, m, n in signature)
        call = call_layout(signature, self.dtype, x.dtype, x.shape[1:], contiguous,
                           max_threads())
        return call, bind_plan(call.plan, call.which, self._factors(trans))

    def _check_memory(self, call, x, out):
        """MemoryError naming each array a call of this size would allocate."""
        need = {}
        if out is None:
            need["result"] = (math.prod(call.out_shape), call.dtype)
        for slot, size in enumerate(call.plan.slot_sizes):
            if size:
                need[f"work buffer {slot + 1}"] = (size, call.plan.work)
        if call.x_copy:
            need["x copy"] = (x.size, call.plan.work)
        ensure_arrays_allocatable(need, "kron_matvec")

    def apply(self, x, out=None, trans="N"):
        """``op(kron(*factors)) @ x`` for ``op`` given by ``trans`` (see ``kron_matvec``)."""
        x_in = x
        x = check_vectors(x, "x")
        contiguous = x.flags.c_contiguous
        key = (x.dtype, x.shape[1:], contiguous, trans)
        bound = self._calls.get(key)
        if bound is None:
            if len(self._calls) >= self.MAX_PLANS:
                self._calls.clear()
            bound = self._calls[key] = self._call(x, trans, contiguous)
        call, plan = bound
        if x.shape[0] != call.cols:
            raise ValueError(
                f"x has {x.shape[0]} rows, but the factors' column counts "
                f"{tuple(f.n for f in self._factors(trans))} multiply to {call.cols}"
                + (" (trans='T'/'C' uses the row counts)" if trans != "N" else ""))
        if out is not None:
            check_out(out, call.out_shape, call.dtype,
                      {"x": x_in, **{f"factors[{i}]": f for i, f in enumerate(self._arrays)}})
        if call.nbytes >= MEMORY_CHECK_MIN_BYTES:
            self._check_memory(call, x, out)
        result = np.empty(call.out_shape, call.dtype) if out is None else out
        if result.size == 0:
            return result
        if call.cols == 0 or not plan.steps:
            if call.cols == 0:
                result.fill(0)
            else:
                np.copyto(result, x.reshape(call.out_shape), casting="unsafe")
            return result
        work = plan.work
        cur = x.reshape(-1) if contiguous else np.ascontiguousarray(x).reshape(-1)
        cur = cur.astype(work, copy=False) if call.x_copy else kernel_input(cur)
        final = result.reshape(-1) if plan.writes_result else None
        last = len(plan.steps) - 1
        for s, step in enumerate(plan.steps):
            dst = final if s == last and final is not None else \
                _work_buffer(s % 2, plan.sizes_after[s], work)
            step.run(cur, dst)
            cur = dst
        if final is None:
            if call.dtype == np.bool_:
                np.not_equal(cur, 0, out=result.reshape(-1))
            else:
                np.copyto(result.reshape(-1), cur, casting="unsafe")
        return result
