"""Spectral (Ramanujan) measures against dense numpy SVDs built from the parameters."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from analysis import spectral
from netgraph import zoo
from tests import grouped_models as GM
from tests import models as M


def _dense_bi_adjacency(model, layer, mask, what):
    """``(n_dst, n_src)`` matrix from the parameter and mask tensors (no graph code)."""
    w = dict(model.named_parameters())[layer.param].detach().double()
    m = torch.ones_like(w) if mask is None else mask.to(torch.double)
    v = (w.abs() * m) if what == "abs" else m
    groups = layer.groups
    cout = w.shape[0]
    if w.ndim == 2 and layer.k > 1:  # linear after a flatten: columns grouped by channel
        v = v.reshape(cout, layer.n_src, -1)
    per = v.reshape(cout, w.shape[1] if w.ndim > 2 else v.shape[1], -1).sum(-1).numpy()
    k = layer.k
    if what == "count":
        per = per / k
    out = np.zeros((cout, layer.n_src))
    og, ig = cout // groups, per.shape[1]
    for g in range(groups):
        out[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = per[g * og:(g + 1) * og]
    return out


def _check(model, shape, masks, rtol=1e-9):
    g = netgraph.from_torch(model, shape)
    rows = spectral.layer_spectra(g, masks)
    for layer, r in zip(g.layers, rows):
        mk = None if masks is None else masks[layer.param]
        for what, k1, k2 in (("count", "mu1", "mu2"), ("abs", "mu1_w", "mu2_w")):
            A = _dense_bi_adjacency(model, layer, mk, what)
            s = np.linalg.svd(A, compute_uv=False)
            s = np.concatenate([s, [0.0, 0.0]])
            scale = max(s[0], 1e-300)
            assert abs(r[k1] - s[0]) <= rtol * scale, (layer.name, what, r[k1], s[0])
            assert abs(r[k2] - s[1]) <= rtol * scale, (layer.name, what, r[k2], s[1])
        A = _dense_bi_adjacency(model, layer, mk, "count")
        E = A.sum()
        assert np.isclose(r["edges"], E, rtol=1e-12)
        assert np.isclose(r["d_avg"], 2 * E / sum(A.shape), rtol=1e-12)
        dl, dr = E / A.shape[1], E / A.shape[0]
        bound = np.sqrt(max(dl - 1, 0)) + np.sqrt(max(dr - 1, 0))
        assert np.isclose(r["biregular_gap"], r["biregular_bound"] - r["mu2"])
        assert np.isclose(r["biregular_bound"], bound, rtol=1e-12)


@pytest.mark.parametrize("L,R", [(3, 7), (64, 64), (100, 1200), (1100, 1500)])
def test_dense_layer_mu1_is_sqrt_LR_and_mu2_zero(L, R):
    model = nn.Sequential(nn.Linear(L, R))
    r = spectral.layer_spectra(netgraph.from_torch(model, (L,)))[0]
    assert abs(r["mu1"] - np.sqrt(L * R)) <= 1e-12 * np.sqrt(L * R)
    assert abs(r["mu2"]) <= 1e-9 * np.sqrt(L * R)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("density", [0.5, 0.05])
def test_random_small_graphs_match_dense_svd(seed, density):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    for model, shape in ((M.mlp((30, 70, 90, 8)), (30,)), (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
                         (GM.GroupedNet(), GM.GROUPED_INPUT), (GM.MobileNetish(), GM.MOBILE_INPUT)):
        g = netgraph.from_torch(model, shape)
        masks = {l.param: torch.rand(l.param_shape, generator=gen) < density for l in g.layers}
        _check(model, shape, masks)


def test_large_layers_use_arpack_and_match():
    """A layer past the dense-Gram limit goes through ARPACK (sparse and dense forms)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1100, 1300))
    for density in (1.0, 0.3, 0.02):
        gen = torch.Generator().manual_seed(1)
        masks = {"0.weight": torch.rand(1300, 1100, generator=gen) < density}
        _check(model, (1100,), masks)


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "digits_cnn"])
def test_zoo_models_match_dense_svd(name):
    model, g = zoo.graph_of(name)
    ms = netgraph.sparsify(g, "random", 0.05, seed=0)
    _check(model, tuple(g.input_shape), dict(ms))


def test_summary_and_empty_layer():
    model = M.mlp((6, 5, 4))
    g = netgraph.from_torch(model, (6,))
    masks = {l.param: torch.zeros(l.param_shape, dtype=torch.bool) for l in g.layers}
    rows = spectral.layer_spectra(g, masks)
    assert all(r["mu1"] == 0 and r["weighted_gap"] == 0 for r in rows)
    s = spectral.spectral_summary(g, None)
    assert set(s) == {"ramanujan_gap_mean", "ramanujan_gap_min", "biregular_gap_mean", "weighted_gap_mean",
                      "ramanujan_layers"}


def test_an_empty_layer_does_not_meet_the_bound_and_stays_out_of_the_means():
    import math

    import netgraph
    from analysis.spectral import layer_spectra, spectral_summary

    g = netgraph.from_torch(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)),
                            (6,))
    masks = [np.ones(l.weight.shape, bool) for l in g.layers]
    masks[1][:] = False
    rows = layer_spectra(g, masks)
    assert rows[1]["edges"] == 0 and rows[1]["ramanujan_gap"] == 0  # vacuous: mu2 = 0 = its bound
    s = spectral_summary(g, masks)
    assert s["ramanujan_layers"] == pytest.approx(2 / 3)
    assert s["ramanujan_gap_mean"] == pytest.approx((rows[0]["ramanujan_gap"] + rows[2]["ramanujan_gap"]) / 2)
    assert s["ramanujan_gap_min"] == min(rows[0]["ramanujan_gap"], rows[2]["ramanujan_gap"])
    assert s["weighted_gap_mean"] == pytest.approx((rows[0]["weighted_gap"] + rows[2]["weighted_gap"]) / 2)
    empty = spectral_summary(g, [np.zeros(l.weight.shape, bool) for l in g.layers])
    assert empty["ramanujan_layers"] == 0 and math.isnan(empty["ramanujan_gap_mean"])
