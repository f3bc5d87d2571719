"""The metrics' flows over kept bundles (CSR operators) against netgraph.flows' dense route."""

import math

import pytest
import torch

import netgraph
from analysis import pathflows
from analysis.paths import path_diversity
from netgraph import flows as F
from netgraph.masked import as_masked
from tests import grouped_models as GM
from tests import models as M

NETS = {
    "mlp": lambda: (M.mlp((40, 70, 90, 8)), (40,)),
    "conv": lambda: (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
    "grouped": lambda: (GM.GroupedNet(), GM.GROUPED_INPUT),
    "resnet20": lambda: (netgraph.zoo.build("resnet20", seed=0), (3, 32, 32)),
}


def _close(a, b):
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-13)


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("density", [None, 0.4, 0.03])
@pytest.mark.parametrize("csr_from", [0, None])
def test_kept_bundle_flows_equal_the_dense_flows(name, density, csr_from, monkeypatch):
    """Sparse layers as CSR (``CSR_FROM = 0``) agree to rounding; with the default, these
    small nets keep their dense aggregates and every value is the float of netgraph.flows."""
    from netgraph import masked

    if csr_from is not None:
        monkeypatch.setattr(masked, "CSR_FROM", csr_from)
    torch.manual_seed(0)
    model, shape = NETS[name]()
    g = netgraph.from_torch(model, shape)
    masks = None if density is None else netgraph.sparsify(g, "random", density, seed=1)
    mg = as_masked(g, masks)
    same = _close if csr_from is not None else (lambda a, b: a == b)
    for w in ("abs", "square", "count"):
        assert same(pathflows.metric_flows(g, mg, w).log_R, F.path_flows(g, w, mg).log_R)
    # the same flows give the same floats as netgraph.flows' own functions
    H, n = pathflows.path_entropy(g, mg, F.path_flows(g, "abs", mg))
    assert (H, n) == F.path_entropy(g, mg)
    kt = pathflows.log_path_kernel_trace(g, mg, F.path_flows(g, "square", mg))
    assert kt == F._log_path_kernel_trace(g, mg)
    # and their own flows agree to rounding
    assert same(pathflows.path_entropy(g, mg)[0], H)
    assert same(pathflows.log_path_kernel_trace(g, mg), kt)
    d = path_diversity(g, mg, max_flow=False)
    assert same(d["log10_paths"], F.log10_num_paths(g, mg))
    assert same(d["log10_R2"], F.log10_R2(g, mg))


def test_disconnected_mask_has_no_paths():
    model, shape = NETS["mlp"]()
    g = netgraph.from_torch(model, shape)
    masks = {l.param: torch.zeros(l.param_shape, dtype=torch.bool) for l in g.layers}
    assert pathflows.path_entropy(g, masks) == (-math.inf, 0.0)
    assert pathflows.log_path_kernel_trace(g, masks) == -math.inf
    assert pathflows.metric_flows(g, masks, "count").log_R == -math.inf
