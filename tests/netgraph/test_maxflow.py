"""The compiled maximum flow (netgraph._maxflow) against networkx and scipy, and the
max-flow metrics' backends against each other on a real mask."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

import netgraph
from analysis import edge_disjoint_paths, min_vertex_cut
from netgraph._maxflow import max_flow_value
from netgraph import zoo


def _networkx_value(n, src, dst, cap, s, t):
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    for u, v, c in zip(src.tolist(), dst.tolist(), cap.tolist()):
        if u == v:
            continue
        if G.has_edge(u, v):  # parallel edges add
            G[u][v]["capacity"] += c
        else:
            G.add_edge(u, v, capacity=c)
    return nx.maximum_flow_value(G, s, t)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 12), m=st.integers(0, 60), seed=st.integers(0, 2**32 - 1), big=st.booleans())
def test_random_graphs_against_networkx_and_scipy(n, m, seed, big):
    # any directed graph: cycles, antiparallel and parallel edges, self-loops, zero capacities
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    cap = rng.integers(0, 1000 if big else 3, m)
    s, t = (int(x) for x in rng.choice(n, 2, replace=False))
    got = max_flow_value(n, src, dst, cap, s, t)
    assert got == _networkx_value(n, src, dst, cap, s, t)
    keep = src != dst  # (scipy refuses self-loops; they carry no flow)
    mat = csr_matrix((cap[keep].astype(np.int32), (src[keep], dst[keep])), shape=(n, n))
    assert got == maximum_flow(mat, s, t, method="dinic").flow_value


def test_edge_cases():
    none = np.zeros(0, np.int64)
    assert max_flow_value(3, none, none, none, 0, 2) == 0
    assert max_flow_value(2, np.array([0]), np.array([1]), np.array([5]), 1, 1) == 0  # s == t
    assert max_flow_value(2, np.array([1]), np.array([0]), np.array([5]), 0, 1) == 0  # edge the wrong way
    # the flow must cancel flow along a reverse arc: the greedy path 0-1-2-3 blocks both others
    src, dst = np.array([0, 0, 1, 1, 2]), np.array([1, 2, 2, 3, 3])
    assert max_flow_value(4, src, dst, np.ones(5, np.int64), 0, 3) == 2


@pytest.mark.parametrize("method", ["phew", "random"])
def test_backends_agree_on_vgg(method):
    g = netgraph.from_torch(zoo.build("vgg11"), (3, 32, 32))
    masks = netgraph.sparsify(g, method, 0.02, seed=1)
    cuts = {b: min_vertex_cut(g, masks, backend=b) for b in ("auto", "compiled", "scipy", "igraph")}
    paths = {b: edge_disjoint_paths(g, masks, backend=b) for b in ("auto", "compiled", "scipy", "igraph")}
    assert len(set(cuts.values())) == 1 and len(set(paths.values())) == 1
    assert cuts["compiled"] > 0 and paths["compiled"] > 0


def test_auto_takes_the_compiled_kernel_on_large_graphs(monkeypatch):
    import importlib

    import netgraph._maxflow as kernel

    connectivity = importlib.import_module("analysis.connectivity")  # (the module: analysis.connectivity is a function)

    g = netgraph.from_torch(zoo.build("vgg11"), (3, 32, 32))
    masks = netgraph.sparsify(g, "random", 0.05, seed=0)
    calls, real = [], kernel.max_flow_value
    monkeypatch.setattr(kernel, "max_flow_value", lambda *a: calls.append(1) or real(*a))
    want = min_vertex_cut(g, masks, backend="scipy")
    assert min_vertex_cut(g, masks) == want and not calls  # (below LOAD_FROM: scipy)
    monkeypatch.setattr(connectivity, "LOAD_FROM", 0)
    assert min_vertex_cut(g, masks) == want and edge_disjoint_paths(g, masks) > 0 and len(calls) == 2


@pytest.mark.parametrize("args, match", [
    ((3, [0, 5], [1, 2], [1, 1], 0, 2), "edge ends"),
    ((3, [0, -1], [1, 2], [1, 1], 0, 2), "edge ends"),
    ((3, [0, 1], [1, 2], [1, 1], 0, 3), "source 0 and sink 3 must be vertices 0 to 2"),
    ((3, [0, 1], [1, 2], [1, -1], 0, 2), "capacities"),
    ((3, [0, 1], [1, 2], [2**62, 1], 0, 2), "capacities"),
    ((3, [0, 1], [1, 2], [1.5, 1.0], 0, 2), "integer arrays"),
    ((3, [0, 1], [1, 2], [1], 0, 2), "one length"),
])
def test_bad_input_is_one_clear_error(args, match):
    n, src, dst, cap, s, t = args
    with pytest.raises(ValueError, match=match):
        max_flow_value(n, np.array(src), np.array(dst), np.array(cap), s, t)
