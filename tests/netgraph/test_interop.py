"""networkx and igraph views of the unit graph."""

import networkx as nx
import numpy as np

import netgraph
from netgraph import flows
from tests import models as M


def test_networkx_and_igraph_agree_with_the_graph():
    model = M.randomize_bn(M.Residual1x1())
    g = netgraph.from_torch(model, M.RESIDUAL_INPUT)
    G = g.to_networkx()
    H = g.to_igraph()
    assert G.number_of_nodes() == H.vcount() == g.num_units
    assert G.number_of_edges() == H.ecount() == g.num_edges
    assert nx.is_directed_acyclic_graph(G) and H.is_dag()
    # path count by networkx (DAG dynamic programme over the 'count' attribute)
    order = list(nx.topological_sort(G))
    ways = {v: (1.0 if G.nodes[v]["kind"] == "input" else 0.0) for v in order}
    for v in order:
        for _, w, d in G.out_edges(v, data=True):
            ways[w] += ways[v] * d["count"]
    total = sum(ways[v] for v in G if G.nodes[v]["kind"] == "output")
    assert np.isclose(np.log10(total), flows.log10_num_paths(g))
    assert sum(H.es["abs_sum"]) == G.size(weight="abs_sum")


def test_masked_edges_are_left_out():
    model = M.mlp((4, 3, 2))
    g = netgraph.from_torch(model, (4,))
    lm = g.dense_masks()
    lm[0][0, :, :] = False  # unit 0 of the hidden layer loses all inputs
    G = g.to_networkx(lm)
    assert G.number_of_edges() == g.num_edges - 4
    assert G.in_degree(4) == 0  # vertex id of hidden unit 0 = 4 inputs before it
