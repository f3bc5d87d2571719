"""PHEW's block tables (every 16th running sum kept) draw exactly as the full tables, also at a
unit whose out-edges (in-edges) are a linear layer and an identity shortcut (residual networks)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn as nn

import netgraph
from netgraph.graph import Layer
from netgraph.sparsifiers._blocktable import BLOCK, BlockTable
from netgraph.sparsifiers._tables import _DenseTable, _Table
from netgraph.sparsifiers.phew import BIASES, WalkGraph, _bundle_totals


class _ResMLP(nn.Module):
    """Linear layers wider than a block, two residual blocks (identity shortcuts), a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(7, 37)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(37, 50), nn.ReLU(), nn.Linear(50, 37)) for _ in range(2))
        self.head = nn.Linear(37, 5)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = x + b(x)
        return self.head(torch.relu(x))


def _res_graph(seed=0, quantised=False):
    torch.manual_seed(seed)
    model = _ResMLP()
    with torch.no_grad():
        fc1, fc2 = model.blocks[0][0], model.blocks[0][2]
        fc1.weight[:, 5] = 0.0  # a unit whose only usable forward step is the shortcut
        fc2.weight[3] = 0.0  # a unit whose only usable backward step is the shortcut
        fc1.weight[9, :20] = 0.0  # zeros across whole blocks
        if quantised:  # few distinct values: running sums tie with the targets
            for p in model.parameters():
                p.copy_(torch.round(p * 4) / 4)
    return netgraph.from_torch(model, (7,))


def _kinds(wg):
    return {(type(t).__name__, len(t.edges)) for t in wg.fwd + wg.bwd if t is not None}


@pytest.fixture(params=["numpy", "compiled"])
def kernels_loaded(request, monkeypatch):
    """PHEW on these small graphs with its numpy code, or with the compiled kernels (loaded for
    every graph, every draw)."""
    from netgraph.sparsifiers import _compiled

    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setattr(_compiled, "LOAD_FROM", 0)
        monkeypatch.setattr(_compiled, "COMPILED_FROM", 0)
    return request.param


@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("bias", BIASES)
def test_block_tables_beside_shortcuts_walk_like_full_tables(bias, quantised, kernels_loaded):
    g = _res_graph(quantised=quantised)
    full, block = WalkGraph(g, bias, block_above=10**9), WalkGraph(g, bias, block_above=0)
    assert ("_Table", 2) in _kinds(full) and ("BlockTable", 2) in _kinds(block)
    assert ("BlockTable", 1) in _kinds(block) and "BlockTable" not in {k for k, _ in _kinds(full)}
    for direction, n0 in (("forward", 7), ("backward", 5)):
        ids = np.arange(4000)
        a = full.walk(direction, ids % n0, ids, np.random.default_rng(11))
        b = block.walk(direction, ids % n0, ids, np.random.default_rng(11))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _tables_of(g, bias, forward):
    """(full, block) tables of every group whose edges a block table takes."""
    out = []
    for grp in range(1, len(g.groups) - 1):
        edges = g.edges_out_of(grp) if forward else g.edges_into(grp)
        if not isinstance(edges[0], Layer):
            continue
        e, n = edges[0], g.groups[grp].size
        bundle = _bundle_totals(e, bias)
        if len(edges) == 1:
            full = _DenseTable(e, bundle, forward)
        else:
            M = bundle.T if forward else bundle
            full = _Table(n, [(e, M, None), (edges[1], None, None)], False)
        out.append((n, full, BlockTable(e, forward, bias, edges[1] if len(edges) == 2 else None)))
    return out


@pytest.mark.parametrize("bias", ["magnitude", "uniform", "square"])
@pytest.mark.parametrize("forward", [True, False])
def test_block_draws_at_exact_ties(bias, forward):
    """Draws whose key or target equals a running sum exactly (quantised weights, ``r`` on the
    grid of the cumulative fractions, ``r = 0``) fall on the same side in both tables."""
    g = _res_graph(quantised=True)
    for n, full, block in _tables_of(g, bias, forward):
        units = np.repeat(np.arange(n), 66)
        r = np.tile(np.r_[np.arange(64) / 64, 0.5 - 2.0 ** -53, 1 - 2.0 ** -53], n)
        a, b = full.draw(units, r), block.draw(units, r)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_block_table_rows_longer_than_a_chunk(monkeypatch):
    """The numpy build (where numba cannot be imported) in chunks of rows (here one row a chunk)
    changes no running sum."""
    from netgraph.sparsifiers import _blocktable

    g = _res_graph(1)
    want = [(t.ends.copy(), None if t.tot is None else t.tot.copy()) for _, _, t in _tables_of(g, "magnitude", True)]
    monkeypatch.setattr(_blocktable, "CHUNK", 1)
    got = [(t.ends, t.tot) for _, _, t in _tables_of(g, "magnitude", True)]
    for (e1, t1), (e2, t2) in zip(want, got):
        assert np.array_equal(e1, e2) and (t1 is None or np.array_equal(t1, t2))
    assert BLOCK == 16


def test_phew_masks_with_block_tables_beside_shortcuts(monkeypatch, kernels_loaded):
    from netgraph.sparsifiers import _tables

    g = _res_graph(2)
    monkeypatch.setattr(_tables, "BLOCK_ABOVE", 10**9)
    want = netgraph.sparsify(g, "phew", 0.3, seed=4)
    monkeypatch.setattr(_tables, "BLOCK_ABOVE", 0)
    got = netgraph.sparsify(g, "phew", 0.3, seed=4)
    assert all(np.array_equal(np.asarray(want[p]), np.asarray(got[p])) for p in g.param_names)


class _Wide:
    """A layer-like stand-in: ``n_dst x n_in`` weights (what :class:`BlockTable` reads)."""

    def __init__(self, W):
        self.weight, (self.n_dst, self.n_in) = W, W.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", BIASES)
def test_compiled_block_build_is_the_numpy_build(bias, dtype):
    """The compiled build (:mod:`._phew_kernels`) gives the numpy build's running sums, totals
    and keys bit for bit, both directions, with and without a shortcut: rows and columns shorter
    than a block, not a multiple of it, and longer than numpy's 128-element pairwise leaves (its
    halvings; rows of 8192 elements and more, which numpy before 2.3 summed in chunks: numpy's own
    totals there); zeros (the inverse biases' 0) and a NaN included."""
    K = pytest.importorskip("netgraph.sparsifiers._phew_kernels")
    rng = np.random.default_rng(5)
    shortcut = type("Identity", (), {"is_identity": True})()
    for shape in [(1, 1), (3, 17), (40, 16), (129, 7), (300, 257), (9, 1100), (2, 8192), (9000, 2), (2, 20000)]:
        W = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(dtype)
        W[0, : shape[1] // 2] = 0.0
        if shape[0] > 3:
            W[2, -1] = np.nan
        for forward in (True, False):
            for sc in (None, shortcut):
                got = BlockTable(_Wide(W), forward, bias, sc, K)
                want = BlockTable(_Wide(W), forward, bias, sc)
                for key in ("ends", "tot", "keys"):
                    a, b = getattr(want, key, None), getattr(got, key, None)
                    assert (a is None) == (b is None), key
                    assert a is None or (a.shape == b.shape and np.array_equal(a, b, equal_nan=True)), (shape, key)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 2**32 - 1), st.floats(-8, 8))
def test_pairwise_plan_sums_as_numpy(n, seed, spread):
    """:func:`._phew_kernels._pairwise` (numpy's pairwise summation as a program of leaves)
    gives ``numpy.sum`` of a contiguous float64 row, the same bits."""
    K = pytest.importorskip("netgraph.sparsifiers._phew_kernels")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n) * 10.0 ** (spread * rng.random(n))
    assert K._pairwise(a, K._plan(n)) == a.sum()
