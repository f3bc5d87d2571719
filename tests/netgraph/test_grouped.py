"""Grouped and depthwise convolution: stored as blocks, exact, and usable by every method."""

import copy
import math
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn as nn

import analysis
import netgraph
from netgraph import flows
from netgraph.sparsifiers.phew import WalkGraph, phew_walks
from netgraph.sparsifiers.random_pruning import erk_densities
from tests import grouped_models as GM
from tests.models import randomize_bn
from tests.reference import close, random_masks, autograd_synflow_prune

REL = 1e-9


def _cases():
    torch.manual_seed(0)
    return [
        ("grouped", randomize_bn(GM.GroupedNet()), GM.GROUPED_INPUT),
        ("mobilenetish", randomize_bn(GM.MobileNetish()), GM.MOBILE_INPUT),
        ("grouped_1d", GM.grouped_1d(), GM.GROUPED_1D_INPUT),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _random_mask(graph, density, seed):
    return random_masks(graph, density, seed)


def _close(a, b, rel=REL):
    return close(a, b, rel)


def _on_path_fraction(g, ms):
    """Fraction of kept weights whose bundle joins a unit reached from an input to one reaching an output."""
    fl = flows.path_flows(g, "count", ms)
    kept = on = 0
    for layer, m in zip(g.layers, g.layer_masks(ms)):
        src_live = (fl.forward[layer.src] > 0)[layer.src_index()]
        live = (fl.backward[layer.dst] > 0)[:, None] & src_live
        kept += int(m.sum())
        on += int((m & live[:, :, None]).sum())
    return on / kept


# -- the data model -------------------------------------------------------------------

def test_grouped_layers_are_stored_as_blocks():
    model, shape = CASES[0][1], CASES[0][2]
    g = netgraph.from_torch(model, shape)
    params = dict(model.named_parameters())
    by = {l.name: l for l in g.layers}
    dw, dw2, grp = by["dw"], by["dw2"], by["g"]
    assert (dw.groups, dw.weight.shape, dw.n_src, dw.n_in) == (8, (8, 1, 9), 8, 1)
    assert (dw2.groups, dw2.weight.shape, dw2.n_src, dw2.group_out) == (8, (16, 1, 6), 8, 2)
    assert (grp.groups, grp.weight.shape, grp.n_src, grp.group_out) == (4, (12, 4, 9), 16, 3)
    assert by["c1"].groups == 1 and by["fc"].groups == 1
    # weight is a plain reshape of the parameter
    for l in g.layers:
        np.testing.assert_array_equal(l.weight.reshape(l.param_shape), params[l.param].detach().numpy())
    # src_index: destination v of group v // group_out reads units group * n_in + j
    np.testing.assert_array_equal(dw2.src_index()[:, 0], np.arange(16) // 2)
    np.testing.assert_array_equal(grp.src_index()[7], [8, 9, 10, 11])
    assert grp.src_index() is grp.src_index()  # cached
    # bundle_elements of (u -> v) are W[v, u - group * n_in]
    w = params["g.weight"].detach().numpy()
    idx = grp.bundle_elements(v=7, u=10)
    np.testing.assert_array_equal(w[idx], w[7, 2].ravel())
    with pytest.raises(IndexError, match="reads source units 8..11"):
        grp.bundle_elements(v=7, u=3)  # unit 3 is in group 0, v = 7 in group 2
    assert g.num_edges == sum(l.n_dst * l.n_in for l in g.layers)


def test_push_and_pull_equal_the_dense_block_diagonal_product():
    model, shape = CASES[1][1], CASES[1][2]
    g = netgraph.from_torch(model, shape)
    rng = np.random.default_rng(0)
    for l in g.layers:
        if l.groups == 1:
            continue
        agg = rng.random(l.weight.shape[:2])
        dense = np.zeros((l.n_dst, l.n_src))
        dense[np.arange(l.n_dst)[:, None], l.src_index()] = agg
        x, y = rng.random(l.n_src), rng.random(l.n_dst)
        np.testing.assert_allclose(l.push(agg, x), dense @ x, rtol=1e-13)
        np.testing.assert_allclose(l.pull(agg, y), dense.T @ y, rtol=1e-13)
        np.testing.assert_array_equal(np.broadcast_to(l.gather(x), agg.shape), x[l.src_index()])


def test_depthwise_1280_costs_its_weights_not_a_dense_matrix():
    model = nn.Sequential(nn.Conv2d(3, 1280, 1), nn.ReLU(), nn.Conv2d(1280, 1280, 3, groups=1280),
                          nn.Flatten(), nn.Linear(1280, 10))
    g = netgraph.from_torch(model, (3, 3, 3))
    dw = g.layers[1]
    assert dw.groups == 1280 and dw.weight.size == 11_520 and dw.weight.shape == (1280, 1, 9)
    dense_bytes = 1280 * 1280 * 8  # 13 MB: what a dense (C_out, C_in) float64 array would cost
    tracemalloc.start()
    try:
        for w in ("abs", "square", "count"):
            assert [a.shape for a in flows.aggregates(g, w)][1] == (1280, 1)
        fl = flows.path_flows(g, "abs")
        c, _ = fl.bundle_factor(dw)
        scores = flows.synflow_scores(g)
        wg = WalkGraph(g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert c.shape == (1280, 1) and dw.src_index().shape == (1280, 1)
    assert scores["2.weight"].shape == (1280, 1, 3, 3)
    assert wg.fwd[dw.src].C == 1 and wg.bwd[dw.dst].C == 1  # one step per unit, not 1280
    assert peak < dense_bytes / 4
    assert g.num_edges == 3 * 1280 + 1280 + 1280 * 10


# -- exactness against autograd (flows, scores, path counts: tests/netgraph/test_flows_exact.py) -------

@pytest.mark.parametrize("name,model,shape", CASES[:2], ids=IDS[:2])
@pytest.mark.parametrize("method,power,form", [("synflow", 1, "abs_grad"), ("synflow-l2", 2, "abs_grad"),
                                               ("synflow-l2", 2, "w_grad")])
def test_iterative_synflow_masks_equal_autograd_synflow(name, model, shape, method, power, form):
    opts = {"iterations": 8} if method == "synflow" else {"iterations": 8, "form": form}
    ms = netgraph.sparsify(model, method, 0.1, input_shape=shape, **opts)
    ref = autograd_synflow_prune(model, shape, 0.1, 8, power=power, form=form)
    assert all(torch.equal(ms[n], ref[n]) for n in ref)


@pytest.mark.parametrize("name,model,shape", CASES, ids=IDS)
def test_metrics_equal_those_of_the_dense_block_diagonal_network(name, model, shape):
    """The grouped net and its dense copy (zero off-block weights, pruned by the mask) are
    one network: every metric, entropy and interop edge set must agree."""
    g = netgraph.from_torch(model, shape)
    dense, expand = GM.dense_equivalent(model)
    gd = netgraph.from_torch(dense, shape)
    assert gd.num_weights > g.num_weights
    for seed in (0, 1):
        m = _random_mask(g, 0.5, seed)
        md = expand(m)
        a, b = analysis.measure(g, m), analysis.measure(gd, md)
        for key in a:
            if key in ("total", "achieved_density", "density", "graph_total", "graph_density", "effective_density"):
                continue
            va, vb = a[key], b[key]
            if isinstance(va, float):
                assert va == pytest.approx(vb, rel=1e-9, abs=1e-12), key
            else:
                assert va == vb, key
        assert flows.path_entropy(g, m)[0] == pytest.approx(flows.path_entropy(gd, md)[0], rel=1e-12)
        for ta, tb in zip(analysis.layer_table(g, m), analysis.layer_table(gd, md)):
            assert (ta["kept"], ta["effective"], ta["active_units"], ta["active_inputs"], ta["in_units"]) == \
                   (tb["kept"], tb["effective"], tb["active_units"], tb["active_inputs"], tb["in_units"])
        eff, effd = analysis.effective_weights(g, m), analysis.effective_weights(gd, md)
        for l, e, ed in zip(g.layers, eff, effd):
            exp = expand({l.param: torch.from_numpy(e.reshape(l.param_shape))})[l.param].numpy()
            np.testing.assert_array_equal(exp.reshape(ed.shape), ed)
        ea, eb = netgraph.interop.edge_arrays(g, m), netgraph.interop.edge_arrays(gd, md)
        ka = sorted(zip(ea["src"], ea["dst"], ea["count"]))
        kb = sorted(zip(eb["src"], eb["dst"], eb["count"]))
        assert ka == kb


def test_networkx_and_igraph_count_only_block_edges():
    model, shape = CASES[1][1], CASES[1][2]
    g = netgraph.from_torch(model, shape)
    expected = sum(l.n_dst * l.n_in for l in g.layers) + sum(s.size for s in g.shortcuts)
    assert g.num_edges == expected
    G, H = g.to_networkx(), g.to_igraph()
    assert G.number_of_edges() == H.ecount() == expected
    assert G.number_of_nodes() == H.vcount() == g.num_units
    assert H.is_dag()
    # path count by a DP over the networkx edges
    import networkx as nx

    ways = {v: (1.0 if G.nodes[v]["kind"] == "input" else 0.0) for v in G}
    for v in nx.topological_sort(G):
        for _, w, d in G.out_edges(v, data=True):
            ways[w] += ways[v] * d["count"]
    total = sum(ways[v] for v in G if G.nodes[v]["kind"] == "output")
    assert math.log10(total) == pytest.approx(flows.log10_num_paths(g), rel=1e-12)


# -- sparsifiers ----------------------------------------------------------------------

def test_phew_steps_through_a_grouped_layer_stay_in_the_group():
    """Forward from input unit 3 (group 1 of 2) a walk takes weight w of its fan-out with
    probability |w| / sum |w|, only among out-channels 3..5; backward the same inside the
    fan-in of output unit 4."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, (2, 3), groups=2), nn.ReLU(), nn.Conv2d(6, 6, 2, groups=3),
                          nn.Flatten(), nn.Linear(6 * 2 * 1, 3))
    g = netgraph.from_torch(model, (4, 4, 4))
    n = 100_000
    checks = [("forward", 0, 3, lambda W: W[3:6, 1]), ("backward", 1, 4, lambda W: W[4])]
    for direction, li, unit, fan in checks:
        if direction == "backward":  # start the backward walk at the grouped layer's output
            sub = nn.Sequential(*list(model)[:3], nn.Flatten())
            gg = netgraph.from_torch(sub, (4, 4, 4))
            _, lid, idx = phew_walks(gg, n, direction, seed=0, start=unit)
            layer = gg.layers[li]
        else:
            _, lid, idx = phew_walks(g, n, direction, seed=0, start=unit)
            layer = g.layers[li]
        counts = np.bincount(idx[lid == li], minlength=layer.numel).reshape(layer.weight.shape)
        W = np.abs(layer.weight.astype(np.float64))
        p = fan(W) / fan(W).sum()
        got = fan(counts)
        assert got.sum() == counts.sum() == n  # nothing outside the group's fan-out (fan-in)
        z = (got - n * p) / np.sqrt(n * p * (1 - p))
        assert np.abs(z).max() < 5, (direction, np.abs(z).max())


DATA_FREE = [("phew", {}), ("phew", {"kernel_conserved": True}), ("phew", {"branch": "authors"}),
             ("phew", {"bias": "uniform"}), ("synflow", {"iterations": 10}),
             ("synflow-l2", {"iterations": 10}), ("random", {}), ("random", {"distribution": "erk"}),
             ("random", {"distribution": "global"}), ("magnitude", {})]


def _check_contract(model, shape, g, method, opts, density, data=None):
    ms = netgraph.sparsify(model, method, density, seed=0, graph=g, data=data, **opts)
    target = round(density * g.num_weights)
    if method == "phew":
        assert target <= ms.num_kept < target + 2 * len(g.layers) * max(l.k for l in g.layers)
        assert _on_path_fraction(g, ms) == 1.0
    else:
        assert ms.num_kept == target
    pruned = copy.deepcopy(model)
    ms.apply(pruned, how="multiply")
    with torch.no_grad():
        out = pruned.eval()(torch.ones(1, *shape))
    assert torch.isfinite(out).all()
    params = dict(pruned.named_parameters())
    assert all(int((params[p] != 0).sum()) <= int(ms[p].sum()) for p in ms)
    rec = analysis.measure(g, ms, max_flow=False)
    assert rec["kept"] == ms.num_kept and rec["total"] == g.num_weights
    if method in ("phew", "synflow", "synflow-l2"):  # path-based methods keep the net connected
        assert rec["connected"] and rec["log10_paths"] > 0
    return ms


@pytest.mark.parametrize("name,model,shape", CASES[:2], ids=IDS[:2])
@pytest.mark.parametrize("method,opts", DATA_FREE, ids=lambda x: str(x))
def test_data_free_methods_on_grouped_nets(name, model, shape, method, opts):
    g = netgraph.from_torch(model, shape)
    _check_contract(model, shape, g, method, opts, 0.2)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_dependent_methods_on_grouped_nets(method):
    from netgraph.data import random_batch

    model, shape = CASES[1][1], CASES[1][2]
    g = netgraph.from_torch(model, shape)
    _check_contract(model, shape, g, method, {}, 0.2, data=random_batch(shape, 4, n=8, seed=0))


def test_erk_treats_a_grouped_conv_as_its_blocks():
    """ERK of a depthwise conv uses the block shape (1, 1, kh, kw): nearly dense, like the
    per-unit fan-in of 9 weights it has, not like a 1280-wide layer."""
    model = nn.Sequential(nn.Conv2d(3, 64, 1), nn.Conv2d(64, 64, 3, groups=64), nn.Conv2d(64, 64, 3, groups=4),
                          nn.Conv2d(64, 64, 3), nn.Flatten(), nn.Linear(64, 10))
    g = netgraph.from_torch(model, (3, 7, 7))
    d = erk_densities(g, round(0.1 * g.num_weights))
    raw = [(1 + 1 + 3 + 3) / 9, (16 + 16 + 3 + 3) / (16 * 16 * 9), (64 + 64 + 3 + 3) / (64 * 64 * 9)]
    assert d[2] / d[3] == pytest.approx(raw[1] / raw[2])
    assert d[1] == 1.0 or d[1] / d[3] == pytest.approx(raw[0] / raw[2])
    assert d[1] > d[2] > d[3]
    assert float(np.dot(d, [l.numel for l in g.layers])) == pytest.approx(round(0.1 * g.num_weights))


# -- torchvision models with grouped and depthwise convs -----------------------------------

TV_METHODS = [("phew", {}), ("synflow", {"iterations": 5}), ("synflow-l2", {"iterations": 5}),
              ("random", {}), ("random", {"distribution": "erk"}), ("magnitude", {}), ("snip", {}), ("grasp", {})]


def _torchvision_contract(name, density, size, methods=TV_METHODS):
    torchvision = pytest.importorskip("torchvision")
    from netgraph.data import random_batch

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)  # random init, never pretrained
    shape = (3, size, size)
    g = netgraph.from_torch(model, shape)
    assert any(l.groups > 1 for l in g.layers)
    assert g.num_edges == sum(l.n_dst * l.n_in for l in g.layers) + sum(s.size for s in g.shortcuts)
    data = random_batch(shape, 10, n=2, seed=0)
    for method, opts in methods:
        _check_contract(model, shape, g, method, opts, density,
                        data=data if method in ("snip", "grasp") else None)


def test_torchvision_mobilenet_v2_every_method():
    """GraSP's double backward through 17 depthwise convs is the slow part: it runs in the
    slow test below (and on the small grouped nets above)."""
    _torchvision_contract("mobilenet_v2", 0.01, 32, [m for m in TV_METHODS if m[0] != "grasp"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnext50_32x4d"])
def test_torchvision_grouped_models_every_method_at_64px(name):
    _torchvision_contract(name, 0.01, 64)
