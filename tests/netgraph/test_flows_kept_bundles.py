"""path_flows over kept bundles (large sparse layers as CSR operators) against the dense route
(flows_from_aggregates on the dense bundle matrices), and the quantities read from them."""

import math

import pytest
import torch

import netgraph
from analysis.paths import path_diversity
from netgraph import flows as F
from netgraph import masked
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


def _quantities(g, masks):
    mg = as_masked(g, masks)  # a fresh masked graph: nothing cached
    fl = {w: F.path_flows(g, w, mg) for w in F.WEIGHTS}
    out = {f"log_R_{w}": f.log_R for w, f in fl.items()}
    out.update({f"F_{w}_{i}": x for w, f in fl.items() for i, x in enumerate(f.forward)})
    out.update({f"B_{w}_{i}": x for w, f in fl.items() for i, x in enumerate(f.backward)})
    out["entropy"] = F.path_entropy(g, mg)[0]
    out["kernel_trace"] = F._log_path_kernel_trace(g, mg)
    out.update(path_diversity(g, mg, max_flow=False))
    return out


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("density", [None, 0.4, 0.03])
@pytest.mark.parametrize("csr_from", [0, None])
def test_kept_bundle_flows_equal_the_dense_flows(name, density, csr_from, monkeypatch):
    """Sparse layers as CSR (``CSR_FROM = 0``) agree with the dense aggregates to rounding; with
    the default, these small nets keep their dense aggregates: the same floats."""
    torch.manual_seed(0)
    model, shape = NETS[name]()
    g = netgraph.from_torch(model, shape)
    masks = None if density is None else netgraph.sparsify(g, "random", density, seed=1)
    monkeypatch.setattr(masked, "CSR_FROM", 1 << 62)  # every layer dense
    dense = _quantities(g, masks)
    if csr_from is not None:
        monkeypatch.setattr(masked, "CSR_FROM", csr_from)
    else:
        monkeypatch.undo()
    ours = _quantities(g, masks)
    same = _close if csr_from is not None else (lambda a, b: a == b)
    assert dense.keys() == ours.keys()
    for k, a in dense.items():
        if a is None:
            assert ours[k] is None, k
        elif isinstance(a, float):
            assert same(ours[k], a), k
        else:  # flow vectors
            assert all(same(float(x), float(y)) for x, y in zip(ours[k], a)), k


def test_disconnected_mask_has_no_paths():
    model, shape = NETS["mlp"]()
    g = netgraph.from_torch(model, shape)
    masks = {l.param: torch.zeros(l.param_shape, dtype=torch.bool) for l in g.layers}
    assert F.path_entropy(g, masks) == (-math.inf, 0.0)
    assert F._log_path_kernel_trace(g, masks) == -math.inf
    assert F.path_flows(g, "count", masks).log_R == -math.inf
