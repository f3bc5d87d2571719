"""``analysis.measure`` refuses what is not a (graph, masks) pair with one netgraph error."""

import pytest
import torch.nn as nn

import analysis
import netgraph
from netgraph.errors import InvalidInputError


def test_measure_wants_a_graph_not_a_model():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    g = netgraph.from_torch(model, (4,))
    ms = netgraph.sparsify(g, "random", 0.5, seed=0)
    with pytest.raises(InvalidInputError, match=r"measure takes a NetGraph.*got a Sequential.*from_torch"):
        analysis.measure(model, ms)
    with pytest.raises(InvalidInputError, match="measure takes a NetGraph and masks, got a str"):
        analysis.measure("g", ms)
    with pytest.raises(InvalidInputError, match="masks must be None, a MaskSet"):
        analysis.measure(g, "ms")
    assert analysis.measure(g, ms)["kept"] == ms.num_kept


def test_every_metric_wants_a_graph_not_a_model():
    """The metrics share one boundary (``as_masked``): a torch model in place of a graph is one
    netgraph error with the hint to trace it, from any of them."""
    from analysis import paths

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(InvalidInputError, match=r"takes a NetGraph.*got a Sequential.*from_torch"):
        paths.path_diversity(model)
    with pytest.raises(InvalidInputError, match="takes a NetGraph and masks, got a NoneType"):
        netgraph.flows.path_entropy(None)
