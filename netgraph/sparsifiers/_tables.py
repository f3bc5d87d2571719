"""PHEW's transition tables: where a walker at a unit goes next, drawn for a whole batch at once.

:class:`_Table` handles any set of out-edges (in-edges) of a unit group: layers, grouped
layers and identity shortcuts, with the authors' branch rule; :class:`_DenseTable` is the
fast path of a group whose only usable edge is an ungrouped layer (most groups), and
:class:`~netgraph.sparsifiers._blocktable.BlockTable` that of a large linear layer (alone or
beside an identity shortcut), with the same draws (``tests/netgraph/test_phew_fast.py`` and
``test_phew_block.py`` draw them alike).
"""

from __future__ import annotations

import numpy as np

from ..graph import Layer
from ._blocktable import BLOCK_ABOVE, BlockTable, search_sorted_runs


def _fan(layer: Layer, bundle: np.ndarray, forward: bool):
    """A layer's candidate steps from each unit: ``(M, row_off)``.

    ``M[u, c]`` is the weight of the ``c``-th step from unit ``u`` (forward: of the source
    group; backward: of the destination group), whose target unit is ``row_off[u] + c``
    (``row_off`` None means 0). A grouped layer offers only the units of ``u``'s group,
    so ``M`` has ``n_dst / groups`` (forward) or ``n_in`` (backward) columns, never the
    whole next group.
    """
    if layer.groups == 1:
        return (bundle.T if forward else bundle), None
    G, d, n_in = layer.groups, layer.group_out, layer.n_in
    if forward:
        M = bundle.reshape(G, d, n_in).transpose(0, 2, 1).reshape(G * n_in, d)
        return M, (np.arange(G * n_in) // n_in) * d
    return bundle, (np.arange(layer.n_dst) // d) * n_in


class _Table:
    """Transition table of one unit group in one direction.

    Row ``u`` is a distribution over the columns: the units of the next group(s) across
    every usable edge. It is stored as one flat array ``u + cdf_u`` so that a batch of
    walkers at units ``us`` draws with a single ``searchsorted(flat, us + r)``. Column
    ``c`` of row ``u`` leads to unit ``col_unit[c] + row_off[u, col_edge[c]]`` (the offset
    is nonzero only for grouped layers, whose rows hold only the units of one group).
    """

    def __init__(self, n: int, blocks: list, authors: bool):
        # blocks: (edge, weights, row offsets or None). The weights are a matrix (n, m) for a
        # layer, None for an identity shortcut, or a 1-d column of 0/1 for an index-map shortcut.
        cols_edge, cols_unit, mats = [], [], []
        self.row_off = np.zeros((n, len(blocks)), dtype=np.int64)
        n_layers = sum(1 for _, M, _ in blocks if M is not None and M.ndim == 2)
        for i, (_, M, off) in enumerate(blocks):
            if off is not None:
                self.row_off[:, i] = off
            if M is None or M.ndim == 1:  # a shortcut: one column, 1 where the unit has an edge
                M = np.ones((n, 1)) if M is None else M[:, None]
                cols_unit.append(np.array([-1]))
            else:
                cols_unit.append(np.arange(M.shape[1]))
                if authors and n_layers > 1:
                    tot = M.sum(axis=1, keepdims=True)
                    M = np.where(tot > 0, M / np.where(tot > 0, tot, 1.0), 1.0 / M.shape[1]) / n_layers
            mats.append(M)
            cols_edge.append(np.full(M.shape[1], i))
        P = np.concatenate(mats, axis=1, dtype=np.float64)  # one float64 copy, updated in place below
        tot = P.sum(axis=1)
        zero = tot <= 0
        if zero.any():  # no usable weight: uniform over the columns (the reference's fallback)
            P[zero] = 1.0
            tot[zero] = P.shape[1]
        cdf = np.cumsum(P, axis=1, out=P)
        cdf /= tot[:, None]
        cdf[:, -1] = 1.0
        self.C = P.shape[1]
        cdf += np.arange(n)[:, None]
        self.flat = cdf.reshape(-1)
        self.col_edge = np.concatenate(cols_edge)
        self.col_unit = np.concatenate(cols_unit)
        self.edges = [e for e, _, _ in blocks]

    def draw(self, units: np.ndarray, r: np.ndarray):
        keys = units + r
        order = np.argsort(keys)  # sorted keys: each search starts where the last one ended
        col = np.empty(keys.size, dtype=np.int64)
        col[order] = np.searchsorted(self.flat, keys[order], side="right")
        col -= units * self.C
        np.clip(col, 0, self.C - 1, out=col)
        edge = self.col_edge[col]
        return edge, self.col_unit[col] + self.row_off[units, edge]


class _DenseTable:
    """Transition table of a group whose only usable edge is an ungrouped layer.

    The cumulative sums run along the bundle matrix's own axes (forward: down each column,
    backward: along each row), so building it is one contiguous ``cumsum`` and no
    transposed copy; a batch of walkers draws by a vectorised branchless binary search (first
    column whose cumulative weight exceeds ``r * total``), the same distribution as :class:`_Table`.
    """

    def __init__(self, edge: Layer, bundle: np.ndarray, forward: bool, kernels=None):
        self.forward, self.kernels = forward, kernels
        if forward:  # row by row: contiguous adds (numpy's cumsum over axis 0 is strided); compiled: one call
            self.cum = np.empty_like(bundle, dtype=np.float64)
            if kernels is not None:
                kernels.cumsum_down(np.ascontiguousarray(bundle, dtype=np.float64), self.cum)
            else:
                self.cum[0] = bundle[0]
                for i in range(1, bundle.shape[0]):
                    np.add(self.cum[i - 1], bundle[i], out=self.cum[i])
        else:
            self.cum = np.cumsum(bundle, axis=1)
        self.tot = self.cum[-1] if forward else self.cum[:, -1]
        self.n = self.cum.shape[0 if forward else 1]
        self.edges = [edge]

    def draw(self, units: np.ndarray, r: np.ndarray):
        tot = self.tot[units]
        target = r * tot
        # branchless search on flat positions: ``pos`` walks down the unit's cumulative sums (a column
        # forward, a row backward) in strides ``step``; the result counts the sums <= target, i.e. the
        # first column whose sum exceeds it (the sums never decrease), capped at the last column
        flat, stride = self.cum.reshape(-1), self.cum.shape[1]
        unit_step = stride if self.forward else 1
        pos = units.astype(np.int64) if self.forward else units * np.int64(stride)
        lo = search_sorted_runs(flat, pos, unit_step, self.n, target, self.kernels)
        np.minimum(lo, self.n - 1, out=lo)
        empty = tot <= 0  # no usable weight: uniform (the reference's fallback)
        if empty.any():
            lo[empty] = np.minimum((r[empty] * self.n).astype(np.int64), self.n - 1)
        return np.zeros(units.size, dtype=np.int64), lo


def table(n: int, edges: list, bundle, forward: bool, authors: bool, bias: str = "magnitude",
          block_above: int | None = None, kernels=None):
    """The transition table of a group over its usable ``edges`` in one direction.

    ``bundle[i]`` is layer ``i``'s bundle totals (asked for only where a table needs them);
    a linear layer of more than ``block_above`` bundles (default
    :data:`~netgraph.sparsifiers._blocktable.BLOCK_ABOVE`), alone or followed by an identity
    shortcut, gets a :class:`BlockTable`; ``kernels`` (:func:`._compiled.load_kernels`): the
    tables' compiled builds and draws.
    """
    e = edges[0]
    plain = isinstance(e, Layer) and e.groups == 1
    if plain and e.k == 1 and e.num_bundles > (BLOCK_ABOVE if block_above is None else block_above):
        if len(edges) == 1:
            return BlockTable(e, forward, bias, kernels=kernels)
        if len(edges) == 2 and not isinstance(edges[1], Layer) and edges[1].is_identity:
            return BlockTable(e, forward, bias, edges[1], kernels)  # the block of a residual network
    if len(edges) == 1 and plain:
        return _DenseTable(e, bundle[e.index], forward, kernels)
    return _Table(n, [(e, *_fan(e, bundle[e.index], forward)) if isinstance(e, Layer)
                      else (e, _shortcut_column(e, forward), None) for e in edges], authors)


def _shortcut_column(e, forward: bool):
    """``None`` for an identity shortcut, else 1 on the units that have an edge (0 elsewhere)."""
    if e.is_identity:
        return None
    col = np.zeros(e.n_src if forward else e.n_dst)
    col[e.src_units if forward else e.dst_units] = 1.0
    return col


def live_groups(graph):
    """Groups on some input-output route: (reach the output, reached from the input)."""
    G = len(graph.groups)
    to_out = np.zeros(G, bool)
    to_out[G - 1] = True
    for g in range(G - 2, -1, -1):
        to_out[g] = any(to_out[e.dst] for e in graph.edges_out_of(g))
    from_in = np.zeros(G, bool)
    from_in[0] = True
    for g in range(1, G):
        from_in[g] = any(from_in[e.src] for e in graph.edges_into(g))
    return to_out, from_in
