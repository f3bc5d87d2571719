"""SynFlow's layer aggregates as its flows multiply by them (``A @ x``, ``A.T @ y``), read in
place from a layer's state (:mod:`._flowprune`): no float64 matrix of a layer's weights.

* :class:`MaskedWeights`: an ungrouped layer of one-element bundles before its first
  compaction, the model's weights and the kept flags: ``a(w) = |w|`` (``w^2`` for SynFlow-L2)
  where kept, 0 elsewhere.
* :class:`SurvivorMatrix`: a compacted ungrouped layer, its survivors' aggregates by rows
  (``indptr``) with their bundle ids (column ``ids[t] - v n_in`` in row ``v``).

Both engines of :mod:`._flowprune` multiply by these, with the compiled kernels of
:mod:`._synflow_updates` wherever numba imports (so the engines' flows are the same bits), else
with numpy. ``A.T @ y`` adds the rows of a column in order, and a compacted layer's ``A @ x``
the columns of a row in order from 0: scipy's CSR products over the survivors, bit for bit
(``np.bincount`` adds in input order: the numpy products are the same bits). A raw layer's
``A @ x`` is the one sum the compiler may reassociate, to vectorise it: about BLAS's speed on
the float32 weights, in an order fixed for a machine (numpy: in order, to rounding).
"""

from __future__ import annotations

import numpy as np

from ._flowwalk import power_of


def _bincount(rows: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(rows, weights=vals, minlength=n).astype(np.float64, copy=False)


def _kernels():
    """:mod:`._synflow_updates` (numba), or ``None`` where numba cannot be imported."""
    try:
        from . import _synflow_updates
    except ImportError:
        return None
    return _synflow_updates


class _InPlace:
    """``A @ x`` and ``A.T @ y`` of a layer's aggregate read in place: the compiled kernels where
    numba imports, numpy else."""

    shape: tuple

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        return self._product(x, True)

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._product(y, False)

    @property
    def T(self) -> "_Transposed":
        return _Transposed(self)

    def _product(self, x: np.ndarray, forward: bool) -> np.ndarray:
        x, K = np.ascontiguousarray(x, np.float64), _kernels()
        if K is None:
            return self._numpy(x, forward)
        return self._compiled(K, x, forward, np.empty(self.shape[0] if forward else self.shape[1]))


class MaskedWeights(_InPlace):
    """The aggregate of an ungrouped one-element layer, from its weights ``w`` (flat, the
    ``(n_dst, n_in)`` bundle order) and kept flags ``m``."""

    def __init__(self, w, m, power: int, shape: tuple):
        self.w, self.m, self.power, self.shape = w, m, power, tuple(shape)

    def values(self) -> np.ndarray:
        """Every bundle's aggregate (float64; 0 where dead)."""
        return power_of(self.power, np.abs(self.w)) * (self.m > 0)

    def _compiled(self, K, x, forward, out):
        return (K.masked_matvec if forward else K.masked_rmatvec)(self.w, self.m, self.power, self.shape[1], x, out)

    def _numpy(self, x, forward):
        (n_dst, n_in), a = self.shape, self.values().reshape(self.shape)
        if forward:
            return _bincount(np.repeat(np.arange(n_dst), n_in), (a * x).ravel(), n_dst)
        return _bincount(np.tile(np.arange(n_in), n_dst), (a * x[:, None]).ravel(), n_in)


class SurvivorMatrix(_InPlace):
    """The aggregate of a compacted ungrouped layer: ``agg`` by rows (``indptr``), bundle ids
    ``ids``, read in place (updates to ``agg`` show)."""

    def __init__(self, indptr, ids, agg, n_in: int, shape: tuple):
        self.indptr, self.ids, self.agg, self.n_in, self.shape = indptr, ids, agg, n_in, tuple(shape)

    def _compiled(self, K, x, forward, out):
        return (K.rows_matvec if forward else K.rows_rmatvec)(self.indptr, self.ids, self.agg, self.n_in, x, out)

    def _numpy(self, x, forward):
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        cols = self.ids - rows * self.n_in
        if forward:
            return _bincount(rows, self.agg * x[cols], self.shape[0])
        return _bincount(cols, self.agg * x[rows], self.shape[1])


class _Transposed:
    """``A.T``, for ``A.T @ y`` (what :meth:`netgraph.Layer.pull` computes)."""

    def __init__(self, a):
        self.a = a

    def __matmul__(self, y: np.ndarray) -> np.ndarray:
        return self.a.rmatvec(y)
