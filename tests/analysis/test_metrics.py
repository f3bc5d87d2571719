"""Analysis metrics: hand-checked answers, cross-checks against networkx, and errors."""

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

import analysis
import netgraph
from netgraph import zoo
from tests import models as M


def _chain(sizes, fill=None):
    model = M.mlp(tuple(sizes))
    if fill is not None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Linear):
                    m.weight.fill_(fill)
    return model, netgraph.from_torch(model, (sizes[0],))


def test_hand_built_chain_paths_widths_cut_entropy():
    # 2 -> 3 -> 2 -> 1, unit 1 of the second hidden layer loses its input bundles
    _, g = _chain((2, 3, 2, 1), fill=0.5)
    lm = g.dense_masks()
    lm[1][1, :, :] = False
    rec = analysis.measure(g, lm)
    assert round(10 ** rec["log10_paths"]) == 2 * 3 * 1 * 1  # through the one live unit
    assert rec["bottleneck_width"] == 1 and rec["min_vertex_cut"] == 1
    assert rec["edge_disjoint_paths"] == 1
    rows = analysis.layer_table(g, lm)
    assert [r["active_units"] for r in rows] == [3, 1, 1]
    assert [r["dead"] for r in rows] == [0, 0, 1]  # the edge out of the dead unit is wasted
    assert rec["effective"] == 6 + 3 + 1 and rec["dead"] == 1
    # all path weights equal: exp(H) is the number of unit paths
    assert math.exp(rec["path_entropy"]) == pytest.approx(6)


def test_entropy_of_two_unequal_paths():
    model = nn.Sequential(nn.Linear(1, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [3.0]]))
        model[1].weight.fill_(1.0)
    g = netgraph.from_torch(model, (1,))
    p, q = 0.25, 0.75
    H, n_eff = netgraph.flows.path_entropy(g)
    assert H == pytest.approx(-(p * math.log(p) + q * math.log(q)))
    assert 1 < n_eff < 2


def test_vertex_cut_ignores_inputs_and_outputs():
    # three inputs, a 5-wide hidden layer and a 4-wide one: cut = 4 hidden units
    _, g = _chain((3, 5, 4, 2))
    assert analysis.min_vertex_cut(g) == 4
    assert analysis.min_vertex_cut(g, backend="igraph") == 4
    assert analysis.min_vertex_cut(g, backend="scipy") == 4
    # a network without hidden units: nothing to cut
    _, g1 = _chain((3, 2))
    assert analysis.min_vertex_cut(g1) is None


def test_disconnected_mask():
    _, g = _chain((3, 4, 2))
    lm = g.dense_masks()
    lm[1][:] = False
    rec = analysis.measure(g, lm)
    assert rec["connected"] is False and rec["effective"] == 0 and rec["min_vertex_cut"] == 0
    assert rec["log10_paths"] == -math.inf and rec["collapsed_layers"] == 2
    assert rec["edge_disjoint_paths"] == 0 and rec["bottleneck_width"] == 0


def _networkx_reference(g, lm):
    G = nx.DiGraph(g.to_networkx(lm))  # unit paths: parallel edges count once here
    ins = [v for v, d in G.nodes(data=True) if d["kind"] == "input"]
    outs = [v for v, d in G.nodes(data=True) if d["kind"] == "output"]
    ways = {v: 1 if v in ins else 0 for v in G}
    for v in nx.topological_sort(G):
        for w in G.successors(v):
            ways[w] += ways[v]
    n_paths = sum(ways[t] for t in outs)
    if n_paths < 2000:  # small enough to enumerate: check the DP against networkx's enumeration
        assert n_paths == sum(1 for s in ins for t in outs for _ in nx.all_simple_paths(G, s, t))
    reach = set(ins).union(*(nx.descendants(G, s) for s in ins))
    coreach = set(outs).union(*(nx.ancestors(G, t) for t in outs))
    active = reach & coreach
    H = G.copy()
    H.add_edges_from(("S", s) for s in ins)
    H.add_edges_from((t, "T") for t in outs)
    for u, v in H.edges:
        H[u][v]["capacity"] = 1 if u != "S" and v != "T" else 10**6
    disjoint = nx.maximum_flow_value(H, "S", "T")
    hidden = [v for v in active if v not in ins and v not in outs]
    cut = None
    if not n_paths:
        cut = 0
    elif len(hidden) <= 8:  # brute force: smallest set of hidden units whose removal disconnects
        for k in range(len(hidden) + 1):
            for removed in itertools.combinations(hidden, k):
                K = H.copy()
                K.remove_nodes_from(removed)
                if not nx.has_path(K, "S", "T"):
                    cut = k
                    break
            if cut is not None:
                break
    return n_paths, active, disjoint, cut


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=3, max_size=5), density=st.floats(0.3, 1.0),
       seed=st.integers(0, 10**6), residual=st.booleans())
def test_random_small_dags_against_networkx(sizes, density, seed, residual):
    torch.manual_seed(seed)
    if residual:
        model, shape = M.Residual1x1(), (3, 1, 1)
    else:
        model, shape = M.mlp(tuple(sizes)), (sizes[0],)
    g = netgraph.from_torch(model, shape)
    rng = np.random.default_rng(seed)
    lm = [rng.random(l.weight.shape) < density for l in g.layers]
    n_paths, active, disjoint, cut = _networkx_reference(g, lm)
    got = netgraph.flows.log10_num_paths(g, lm)
    assert (n_paths == 0 and got == -math.inf) or round(10 ** got) == n_paths
    off = netgraph.interop.unit_offsets(g)
    ours = {int(off[i] + u) for i, a in enumerate(analysis.active_units(g, lm)) for u in np.flatnonzero(a)}
    assert ours == active
    assert analysis.edge_disjoint_paths(g, lm) == disjoint
    assert analysis.edge_disjoint_paths(g, lm, backend="igraph") == disjoint
    assert analysis.edge_disjoint_paths(g, lm, backend="scipy") == disjoint
    if cut is not None:
        assert analysis.min_vertex_cut(g, lm) == cut
        assert analysis.min_vertex_cut(g, lm, backend="igraph") == cut
        assert analysis.min_vertex_cut(g, lm, backend="scipy") == cut


def test_effective_fraction_phew_is_one_random_below_one_on_vgg19():
    g = netgraph.from_torch(zoo.build("vgg19"), (3, 32, 32))
    phew = analysis.connectivity(g, netgraph.sparsify(g, "phew", 0.01, seed=0))
    rand = analysis.connectivity(g, netgraph.sparsify(g, "random", 0.01, seed=0))
    assert phew["effective_fraction"] == 1.0 and phew["dead"] == 0
    assert rand["effective_fraction"] < 1.0 and rand["dead"] > 0
    assert phew["effective_density"] == pytest.approx(phew["kept"] / g.num_weights)


@pytest.mark.parametrize("opts", [{}, {"bias": "uniform"}, {"bias": "inverse"}, {"kernel_conserved": True},
                                  {"branch": "authors"}], ids=str)
def test_effective_fraction_one_for_phew_on_resnet(opts):
    g = netgraph.from_torch(zoo.build("resnet20"), (3, 32, 32))
    for d in (0.05, 0.005):
        assert analysis.connectivity(g, netgraph.sparsify(g, "phew", d, seed=1, **opts))["effective_fraction"] == 1.0
