"""The pooled, single-threaded-BLAS spectra equal the straightforward per-layer computation."""

import numpy as np

import netgraph
import scipy.sparse as sp

from analysis.spectral import _layer_inputs, layer_spectra, layer_spectrum, top_singular_values
from netgraph.masked import as_masked


def test_layer_spectra_equal_per_layer_computation():
    g = netgraph.from_torch(netgraph.zoo.build("digits_cnn", seed=0), (1, 8, 8))
    ms = netgraph.sparsify(g, "random", 0.3, seed=2)
    rows = layer_spectra(g, ms)
    mg = as_masked(g, ms)
    for layer, c, a, row in zip(g.layers, mg.aggregates("count"), mg.aggregates("abs"), rows):
        sv = (top_singular_values(layer, c / layer.k), top_singular_values(layer, a))
        want = layer_spectrum(layer, c, a, sv)
        assert set(want) == set(row)
        for key, value in want.items():
            if isinstance(value, float):
                np.testing.assert_allclose(row[key], value, rtol=1e-12, atol=0)
            else:
                assert row[key] == value


def test_sparse_layers_from_kept_bundles_equal_the_dense_route():
    """A large sparse layer's CSR matrix built from its kept bundles gives the same values, bit for bit."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(60, 1100), torch.nn.ReLU(), torch.nn.Linear(1100, 1030))
    g = netgraph.from_torch(model, (60,))
    ms = netgraph.sparsify(g, "random", 0.05, seed=1)
    mg = as_masked(g, ms)
    routes = 0
    for layer, c, a in zip(g.layers, mg.aggregates("count"), mg.aggregates("abs")):
        for kept, dense in zip(_layer_inputs(mg, layer)[:2], (c / layer.k, a)):
            routes += sp.issparse(kept)
            assert np.array_equal(top_singular_values(layer, kept), top_singular_values(layer, dense))
    assert routes == 4  # both layers' two matrices came from their kept bundles


def test_spectra_the_same_on_one_thread_and_with_the_pool(monkeypatch):
    """ARPACK on CSR runs on the calling thread, the dense routes over the pool; with
    NETGRAPH_NUM_THREADS=1 every layer runs on the calling thread: the same values, bit for bit."""
    import torch

    from analysis import spectral

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(60, 1100), torch.nn.ReLU(), torch.nn.Linear(1100, 300),
                                torch.nn.ReLU(), torch.nn.Linear(300, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10))
    g = netgraph.from_torch(model, (60,))
    ms = netgraph.sparsify(g, "random", 0.05, seed=1)
    mg = as_masked(g, ms)
    routes = {spectral._route(layer, m, 2) for layer in g.layers for m in _layer_inputs(mg, layer)[:2]}
    assert {"arpack-csr", "gram", "svd"} <= routes  # both kinds of job, so both places run
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "2")
    pooled = layer_spectra(g, ms)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "1")
    assert layer_spectra(g, ms) == pooled  # a fresh masked graph each call: computed again
