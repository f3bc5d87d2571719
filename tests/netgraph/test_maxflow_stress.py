"""Stress tests of the compiled Dinic (netgraph._maxflow) beyond test_maxflow.py: larger
random digraphs, layered DAGs shaped like analysis.connectivity._max_flow's (unit edges,
split hidden units, super source/sink with a big capacity), large capacities, and degenerate
inputs (isolated vertices, self-loops only, s == t, flow that must be cancelled)."""

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from netgraph._maxflow import max_flow_value

from .test_maxflow import _networkx_value as _nx


def _scipy(n, src, dst, cap, s, t):
    keep = src != dst
    mat = csr_matrix((cap[keep].astype(np.int32), (src[keep], dst[keep])), shape=(n, n))
    return int(maximum_flow(mat, s, t, method="dinic").flow_value)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 200), density=st.floats(0.001, 0.2), seed=st.integers(0, 2**32 - 1),
       capmax=st.sampled_from([1, 2, 5, 1000, 2**20]))
def test_larger_random_digraphs(n, density, seed, capmax):
    rng = np.random.default_rng(seed)
    m = int(density * n * n)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    cap = rng.integers(0, capmax + 1, m)
    s, t = (int(x) for x in rng.choice(n, 2, replace=False))
    got = max_flow_value(n, src, dst, cap, s, t)
    assert got == _scipy(n, src, dst, cap, s, t)
    if n <= 80:
        assert got == _nx(n, src, dst, cap, s, t)


def _layered(rng, widths, density, split, skip):
    """A DAG like _max_flow's: layers of units, unit edges (capacity 1), optionally the
    split-unit construction (hidden unit capacity 1, edges big), super source and sink."""
    off = np.concatenate([[0], np.cumsum(widths)])
    n_units = int(off[-1])
    src, dst = [], []
    L = len(widths)
    for a in range(L - 1):
        for b in range(a + 1, min(L, a + 1 + (2 if skip else 1))):
            mask = rng.random((widths[a], widths[b])) < density
            i, j = np.nonzero(mask)
            src.append(off[a] + i)
            dst.append(off[b] + j)
    src = np.concatenate(src) if src else np.zeros(0, np.int64)
    dst = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    big = n_units + len(src) + 1
    inputs = np.arange(off[0], off[1])
    outputs = np.arange(off[-2], off[-1])
    if split:
        units = np.arange(n_units)
        is_end = np.zeros(n_units, bool)
        is_end[inputs] = is_end[outputs] = True
        S, T = 2 * n_units, 2 * n_units + 1
        es = np.concatenate([2 * units, 2 * src + 1, np.full(len(inputs), S), 2 * outputs + 1])
        ed = np.concatenate([2 * units + 1, 2 * dst, 2 * inputs, np.full(len(outputs), T)])
        ec = np.concatenate([np.where(is_end, big, 1), np.full(len(src), big),
                             np.full(len(inputs) + len(outputs), big)])
        n = 2 * n_units + 2
    else:
        S, T = n_units, n_units + 1
        es = np.concatenate([src, np.full(len(inputs), S), outputs])
        ed = np.concatenate([dst, inputs, np.full(len(outputs), T)])
        ec = np.concatenate([np.ones(len(src), np.int64), np.full(len(inputs) + len(outputs), big)])
        n = n_units + 2
    # shuffle the edge order: the kernel's arc order must not matter
    p = rng.permutation(len(es))
    return n, es[p].astype(np.int64), ed[p].astype(np.int64), ec[p].astype(np.int64), S, T


@settings(max_examples=150, deadline=None)
@given(widths=st.lists(st.integers(1, 40), min_size=2, max_size=7), density=st.floats(0.01, 0.6),
       seed=st.integers(0, 2**32 - 1), split=st.booleans(), skip=st.booleans())
def test_layered_dags_like_max_flow(widths, density, seed, split, skip):
    rng = np.random.default_rng(seed)
    n, es, ed, ec, S, T = _layered(rng, widths, density, split, skip)
    got = max_flow_value(n, es, ed, ec, S, T)
    assert got == _scipy(n, es, ed, ec, S, T)
    if n <= 150:
        assert got == _nx(n, es, ed, ec, S, T)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 30), m=st.integers(0, 120), seed=st.integers(0, 2**32 - 1))
def test_large_capacities_against_networkx(n, m, seed):
    # capacities near 2**40 (beyond scipy's int32): networkx with Python ints
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    cap = rng.integers(0, 2**40, m)
    s, t = (int(x) for x in rng.choice(n, 2, replace=False))
    assert max_flow_value(n, src, dst, cap, s, t) == _nx(n, src, dst, cap, s, t)


def test_degenerate_inputs():
    e = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), np.array([5, 5, 5, 5])  # self-loops and one edge
    assert max_flow_value(6, *e, 1, 2) == 5
    assert max_flow_value(6, *e, 0, 2) == 0
    assert max_flow_value(6, *e, 4, 5) == 0  # isolated vertices
    assert max_flow_value(6, *e, 2, 2) == 0
    # a long chain: the path array's depth n - 1
    n = 500
    a = np.arange(n - 1)
    assert max_flow_value(n, a, a + 1, np.full(n - 1, 3), 0, n - 1) == 3
    # non-contiguous and other-dtype inputs
    src = np.array([[0, 9], [1, 9], [0, 9]])[:, 0]
    dst = np.array([[1, 9], [2, 9], [2, 9]], np.int32)[:, 0]
    cap = np.array([2, 1, 1], np.uint8)
    assert max_flow_value(3, src, dst, cap, 0, 2) == 2
