"""PHEW's transition table of a large linear layer, in a fraction of a byte per weight.

A :class:`~netgraph.sparsifiers._tables._DenseTable` holds the float64 cumulative sums of
a layer's bundle totals: 8 bytes a bundle per direction, 16 bytes a weight for a linear
layer (one-element bundles), four times its float32 weights. :class:`BlockTable` keeps
only every :data:`BLOCK`-th cumulative sum (and the last) and recomputes the few inside a
block from the weights when a walker draws: from the exact float64 sum at the block's
start, adding the same float64 element values in the same order gives the same sums bit
for bit, so the draws (and PHEW's masks) are those of the full table. Beside an identity
shortcut it reproduces :class:`~netgraph.sparsifiers._tables._Table`'s normalised sums the
same way (each row's total is summed by numpy as that table sums it; dividing by it and
adding the unit are exact elementwise operations, done on the recomputed sums alike).
On a large graph the kept sums and totals are built by compiled passes (:mod:`._phew_kernels`),
the same bits as the numpy build.
"""

from __future__ import annotations

import numpy as np

from .._numba import reads_in_place
from ..graph import Layer
from ..layer import NUMPY_ONE_PAIRWISE
from ._bias import element_values
from ._compiled import for_walkers

#: Cumulative sums kept per walk direction: one in ``BLOCK`` (0.5 byte a weight in float64).
BLOCK = 16
#: One-element-bundle layers with more bundles than this get a :class:`BlockTable` (no slower than a
#: full table from here up: writing and faulting in 16 bytes a weight costs more than recomputing
#: 16 sums a draw).
BLOCK_ABOVE = 1 << 16
#: Elements of the float64 temporaries of one building step (small enough to stay in cache and be reused).
CHUNK = 1 << 16
#: The longest row numpy's ``sum`` adds in one pairwise summation in this numpy (before 2.3 it cut a
#: reduction into chunks of its buffer size, 8192; ``None``: any row): the compiled totals follow
#: that order, so beside a shortcut a longer row's totals are numpy's own.
ONE_PAIRWISE = None if NUMPY_ONE_PAIRWISE else 8192


def search_sorted_runs(flat: np.ndarray, pos: np.ndarray, unit_step: int, n: int, target: np.ndarray,
                       kernels=None) -> np.ndarray:
    """How many of the ``n`` nondecreasing values ``flat[pos + i * unit_step]`` are <= target.

    A branchless binary search, one per entry of ``pos``/``target``, on flat positions (a
    column of a cumulative table with ``unit_step`` its row length, or a row with step 1);
    compiled for many entries with ``kernels`` (:func:`._compiled.load_kernels`), the same reads."""
    K = for_walkers(kernels, pos.size)
    if K is not None:
        out = np.empty(pos.size, np.int64)
        K.search_runs(flat, np.ascontiguousarray(pos, np.int64), int(unit_step), int(n), target, out)
        return out
    pos = pos.copy()
    start = pos.copy()
    size = n
    while size > 1:
        half = size >> 1
        step = half * unit_step
        np.add(pos, step, out=pos, where=np.take(flat, pos + step) <= target)
        size -= half
    out = (pos - start) // unit_step
    out += np.take(flat, pos) <= target
    return out


def _running_down(W: np.ndarray, bias: str) -> np.ndarray:
    """Running sums of the element values down the rows of ``W`` (the forward candidates of each
    column), kept at the last row of every block: ``(n_blocks, n_columns)``. Row-vector adds,
    in the order of a cumsum down each column."""
    n, cols = W.shape
    ends = np.empty((-(-n // BLOCK), cols))
    run = np.zeros(cols)
    step = BLOCK * max(1, CHUNK // (BLOCK * cols))
    for s in range(0, n, step):
        for i, row in enumerate(element_values(bias, W[s:s + step]), start=s):
            run += row
            if i % BLOCK == BLOCK - 1:
                ends[i // BLOCK] = run
    ends[-1] = run  # the last block ends at the last row
    return ends


def _row_totals(vals: np.ndarray) -> np.ndarray:
    """Totals of the rows of :class:`~netgraph.sparsifiers._tables._Table`'s matrix for a layer and
    an identity shortcut: each row ``vals[u]`` then 1.0, summed as ``numpy.sum`` sums a contiguous row."""
    P = np.empty((vals.shape[0], vals.shape[1] + 1))
    P[:, :-1] = vals
    P[:, -1] = 1.0
    return P.sum(axis=1)


class BlockTable:
    """Transition table of a group whose usable edges are one large ungrouped linear layer,
    optionally followed by an identity shortcut.

    ``ends`` holds the float64 running sum of unit ``u``'s element values (forward: the
    weights of source unit ``u`` down the destination units, ``ends[b, u]``; backward:
    destination unit ``u``'s row, ``ends[u, b]``) at the last position of block ``b`` of
    :data:`BLOCK` candidates, the last block ending at the last candidate. Without a shortcut it draws as
    :class:`~netgraph.sparsifiers._tables._DenseTable` (first position whose running sum
    exceeds ``r * total``). With one it draws as
    :class:`~netgraph.sparsifiers._tables._Table` over the columns ``[layer..., shortcut]``:
    the running sums divided by the row's total (the shortcut's weight 1 included, summed as
    ``numpy.sum`` sums that row), plus ``u``, against the key ``u + r``; ``keys`` holds those
    values at the block ends. Built by compiled passes over the weights with ``kernels``
    (:func:`._compiled.load_kernels`; else numpy, in chunks of rows that stay in cache): no
    array of the layer's size is ever allocated.
    """

    def __init__(self, edge: Layer, forward: bool, bias: str, shortcut=None, kernels=None):
        self.forward, self.bias, self.kernels = forward, bias, kernels
        self.edges = [edge] if shortcut is None else [edge, shortcut]
        W = edge.weight.reshape(edge.n_dst, edge.n_in)
        self.W = W
        rows, n = (edge.n_in, edge.n_dst) if forward else (edge.n_dst, edge.n_in)
        nb = -(-n // BLOCK)
        self.n, self.nb = n, nb
        self.tot = None if shortcut is None else np.empty(rows)
        exact = shortcut is None or ONE_PAIRWISE is None or n + 1 <= ONE_PAIRWISE  # (the totals' order)
        K = kernels if reads_in_place(W) and exact else None
        if K is not None:  # one compiled pass a direction, without the GIL (the same sums)
            self._compiled(K, forward)
        else:
            self._numpy(forward, rows, nb)
        self.step = rows if forward else 1  # flat distance between a unit's consecutive block ends
        if shortcut is not None:
            along = (None, slice(None)) if forward else (slice(None), None)  # broadcast over the unit axis
            self.keys = self.ends / self.tot[along]
            self.keys += np.arange(rows)[along]

    def _compiled(self, K, forward: bool) -> None:
        """The build by :mod:`._phew_kernels`: one pass over the weights a direction (and one
        for the totals of a forward table beside a shortcut), no float64 temporary of their size."""
        W, code, one = self.W, K.BIAS_CODES[self.bias], self.W.dtype.type(1)
        if forward:
            self.ends = np.empty((self.nb, W.shape[1]))
            K.running_down(W, code, one, BLOCK, self.ends)
            if self.tot is not None:
                K.column_totals(W, code, one, self.tot)
        else:
            self.ends = np.empty((W.shape[0], self.nb))
            K.running_along(W, code, one, BLOCK, self.ends, self.tot if self.tot is not None else np.empty(0))

    def _numpy(self, forward: bool, rows: int, nb: int) -> None:
        """The numpy build (no kernels), in chunks of rows that stay in cache."""
        W, bias, n = self.W, self.bias, self.n
        step = max(1, CHUNK // (n + 1))
        if forward:  # row-vector adds down the weight matrix; the totals from transposed chunks
            self.ends = _running_down(W, bias)
            for s in range(0, rows if self.tot is not None else 0, step):
                self.tot[s:s + step] = _row_totals(element_values(bias, W[:, s:s + step]).T)
        else:  # running sums along the rows (sequential, as a cumsum), in chunks of rows
            last = np.minimum(np.arange(nb) * BLOCK + BLOCK - 1, n - 1)
            self.ends = np.empty((rows, nb))
            for s in range(0, rows, step):
                vals = element_values(bias, W[s:s + step])
                if self.tot is not None:
                    self.tot[s:s + step] = _row_totals(vals)
                self.ends[s:s + step] = np.cumsum(vals, axis=1)[:, last]

    def draw(self, units: np.ndarray, r: np.ndarray):
        units = units.astype(np.int64)
        nb, n = self.nb, self.n
        step = self.step
        base = units if self.forward else units * np.int64(nb)
        flat = self.ends.reshape(-1)
        if self.tot is None:
            tot = np.take(flat, base + (nb - 1) * step)
            target = r * tot
            b = search_sorted_runs(flat, base, step, nb, target, self.kernels)  # the first block ending above the target
        else:
            tot = self.tot[units]
            target = units + r
            b = search_sorted_runs(self.keys.reshape(-1), base, step, nb, target, self.kernels)
            full = b >= nb  # every layer column at or below the key: the shortcut
        np.minimum(b, nb - 1, out=b)
        run = np.where(b > 0, np.take(flat, base + np.maximum(b - 1, 0) * step), 0.0)
        first = b * BLOCK
        pos = first[:, None] + np.arange(BLOCK)  # the block's candidates, their sums recomputed in order
        inside = pos < n
        np.minimum(pos, n - 1, out=pos)
        cols = self.W.shape[1]
        flat_w = (pos * cols + units[:, None]) if self.forward else (pos + (units * cols)[:, None])
        vals = element_values(self.bias, np.take(self.W.reshape(-1), flat_w))
        vals[:, 0] += run
        cum = np.cumsum(vals, axis=1, out=vals)  # from the exact sum at the block's start
        if self.tot is not None:  # the shortcut's table: normalised sums plus the unit, as its keys
            cum /= tot[:, None]
            cum += units[:, None]
        below = cum <= target[:, None]
        below &= inside
        count = np.count_nonzero(below, axis=1)
        lo = first + count
        if self.tot is not None:
            lo[full] = n
            edge = (lo >= n).astype(np.int64)
            lo[edge == 1] = -1
            return edge, lo
        np.minimum(lo, n - 1, out=lo)
        empty = tot <= 0  # no usable weight: uniform (the reference's fallback)
        if empty.any():
            lo[empty] = np.minimum((r[empty] * n).astype(np.int64), n - 1)
        return np.zeros(units.size, dtype=np.int64), lo
