"""Sparse (CSR) masked aggregates of large sparse layers (``masked.SPARSE_AGG_MIN``) against the
dense bundle matrices: the same aggregates, maxima, edges and every metric of the table."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import netgraph
from analysis.connectivity import effective_counts
from analysis.spectral import layer_spectra
from analysis.summary import measure
from netgraph import masked
from netgraph.interop import edge_arrays
from tests import grouped_models as GM
from tests import models as M

NETS = {
    "mlp": lambda: (M.mlp((40, 60, 50, 10)), (40,)),
    "wide": lambda: (M.mlp((1100, 60, 10)), (1100,)),  # ARPACK on the sparse matrix
    "conv": lambda: (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
    "grouped": lambda: (GM.GroupedNet(), GM.GROUPED_INPUT),
}


def _dense(a):
    return a.toarray() if sp.issparse(a) else a


def _everything(g, ms):
    mg = masked.as_masked(g, ms)
    aggs = {w: mg.aggregates(w) for w in masked.WEIGHTS}
    n_sparse = 0
    for layer, a in zip(g.layers, aggs["count"]):
        if sp.issparse(a):  # the stored entries are the kept bundles
            n_sparse += 1
            assert layer.groups == 1 and a.nnz == mg.kept_bundles(layer)[2].size
    return {"n_sparse": n_sparse, "aggs": {w: [_dense(a) for a in v] for w, v in aggs.items()},
            "max": [_dense(a) for a in mg.bundle_max()], "edges": edge_arrays(g, mg),
            "effective": [_dense(a) for a in effective_counts(g, mg)], "spectra": layer_spectra(g, mg),
            "measure": measure(g, mg)}


def _same(a, b):  # floats: sums over a sparse matrix may round differently in the last bit
    return b == (pytest.approx(a, rel=1e-13, abs=1e-13) if isinstance(a, float) else a)


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("density", [0.03, 0.1])
def test_sparse_aggregates_give_the_dense_values(name, density, monkeypatch):
    torch.manual_seed(3)
    model, shape = NETS[name]()
    g = netgraph.from_torch(model, shape)
    ms = netgraph.sparsify(g, "phew", density, seed=2)
    monkeypatch.setattr(masked, "SPARSE_AGG_MIN", 1 << 62)  # never sparse
    d = _everything(g, ms)
    monkeypatch.setattr(masked, "SPARSE_AGG_MIN", 0)  # sparse wherever the kept indices are used
    s = _everything(g, ms)
    assert d["n_sparse"] == 0 and s["n_sparse"] > 0
    for w in masked.WEIGHTS:  # the same sums, added in the same order
        assert all(np.array_equal(a, b) for a, b in zip(d["aggs"][w], s["aggs"][w]))
    for key in ("max", "effective"):
        assert all(np.array_equal(a, b) for a, b in zip(d[key], s[key]))
    assert all(np.array_equal(d["edges"][k], s["edges"][k]) for k in d["edges"])
    for ra, rb in zip(d["spectra"], s["spectra"]):
        assert ra.keys() == rb.keys() and all(_same(ra[k], rb[k]) for k in ra)
    assert d["measure"].keys() == s["measure"].keys()
    assert all(_same(d["measure"][k], s["measure"][k]) for k in d["measure"]), \
        [k for k in d["measure"] if not _same(d["measure"][k], s["measure"][k])]
