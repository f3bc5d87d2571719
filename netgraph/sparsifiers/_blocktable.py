"""PHEW's transition table of a very large linear layer, in a fraction of a byte per weight.

A :class:`~netgraph.sparsifiers._tables._DenseTable` holds the float64 cumulative sums of
a layer's bundle totals: 8 bytes a bundle per direction, 16 bytes a weight for a linear
layer (one-element bundles), four times its float32 weights. :class:`BlockTable` keeps
only every :data:`BLOCK`-th cumulative sum (and the last) and recomputes the few inside a
block from the weights when a walker draws: from the exact float64 sum at the block's
start, adding the same float64 element values in the same order gives the same sums bit
for bit, so the draws (and PHEW's masks) are those of the full table.
"""

from __future__ import annotations

import numpy as np

from ..graph import Layer

#: Cumulative sums kept per walk direction: one in ``BLOCK`` (0.5 byte a weight in float64).
BLOCK = 16
#: One-element-bundle layers with more bundles than this get a :class:`BlockTable` (no slower than a
#: full table: building one costs more than recomputing 16 sums a draw).
BLOCK_ABOVE = 1 << 22


def element_values(bias: str, w: np.ndarray) -> np.ndarray:
    """The float64 bundle totals of one-element bundles ``w`` (any shape), exactly as
    :func:`netgraph.sparsifiers.phew._bundle_totals` gives them for ``k == 1``."""
    if bias == "uniform":
        return np.ones(w.shape)
    if bias == "inverse_element":  # element weights in the weights' dtype, then float64
        a = np.abs(w)
        with np.errstate(divide="ignore"):
            return np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), 0.0).astype(w.dtype).astype(np.float64)
    x = w.astype(np.float64)
    if bias == "square":
        return np.square(x, out=x)
    a = np.abs(x, out=x)
    if bias == "magnitude":
        return a
    if bias == "inverse":  # 1 / (L1 norm of the one-element kernel)
        with np.errstate(divide="ignore"):
            return np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), 0.0)
    raise ValueError(f"unknown bias {bias!r}")


def search_sorted_runs(flat: np.ndarray, pos: np.ndarray, unit_step: int, n: int, target: np.ndarray) -> np.ndarray:
    """How many of the ``n`` nondecreasing values ``flat[pos + i * unit_step]`` are <= target.

    A branchless binary search, one per entry of ``pos``/``target``, on flat positions (a
    column of a cumulative table with ``unit_step`` its row length, or a row with step 1)."""
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


class BlockTable:
    """Transition table of a group whose only usable edge is a large ungrouped linear layer.

    ``ends`` holds the cumulative sum at the last position of every block of :data:`BLOCK`
    candidates (forward: rows of destination units, one column per source unit; backward:
    one row per destination unit), the last block ending at the last candidate.
    """

    def __init__(self, edge: Layer, forward: bool, bias: str):
        self.forward, self.bias, self.edges = forward, bias, [edge]
        W = edge.weight.reshape(edge.n_dst, edge.n_in)
        self.W = W
        n = edge.n_dst if forward else edge.n_in
        nb = -(-n // BLOCK)
        self.n, self.nb = n, nb
        if forward:  # running sums down the rows, kept every BLOCK rows
            ends = np.empty((nb, edge.n_in))
            run = np.zeros(edge.n_in)
            for b in range(nb):
                vals = element_values(bias, W[b * BLOCK:(b + 1) * BLOCK])
                for row in vals:
                    run += row
                ends[b] = run
        else:  # cumulative sums along each row, in row blocks that bound the temporaries
            ends = np.empty((edge.n_dst, nb))
            last = np.minimum(np.arange(nb) * BLOCK + BLOCK - 1, n - 1)
            rows = max(1, (1 << 22) // n)
            for s in range(0, edge.n_dst, rows):
                ends[s:s + rows] = np.cumsum(element_values(bias, W[s:s + rows]), axis=1)[:, last]
        self.ends = ends

    def draw(self, units: np.ndarray, r: np.ndarray):
        units = units.astype(np.int64)
        flat, stride = self.ends.reshape(-1), self.ends.shape[1]
        if self.forward:
            base, unit_step = units, stride
        else:
            base, unit_step = units * np.int64(stride), 1
        tot = np.take(flat, base + (self.nb - 1) * unit_step)
        target = r * tot
        b = search_sorted_runs(flat, base, unit_step, self.nb, target)  # the first block ending above the target
        np.minimum(b, self.nb - 1, out=b)
        run = np.where(b > 0, np.take(flat, base + np.maximum(b - 1, 0) * unit_step), 0.0)
        first = b * BLOCK
        count = np.zeros(units.size, dtype=np.int64)
        for c in range(BLOCK):  # the block's sums, recomputed in order from its start
            pos = first + c
            inside = pos < self.n
            np.minimum(pos, self.n - 1, out=pos)
            w = self.W[pos, units] if self.forward else self.W[units, pos]
            run += element_values(self.bias, w)
            count += inside & (run <= target)
        lo = first + count
        np.minimum(lo, self.n - 1, out=lo)
        empty = tot <= 0  # no usable weight: uniform (the reference's fallback)
        if empty.any():
            lo[empty] = np.minimum((r[empty] * self.n).astype(np.int64), self.n - 1)
        return np.zeros(units.size, dtype=np.int64), lo
