"""Path norms against brute-force path enumeration, autograd forward passes and networkx."""

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import torch

import netgraph
from analysis.pathnorm import log10_path_norm, path_norms
from netgraph import flows, zoo
from netgraph.errors import InvalidInputError
from tests import grouped_models as GM
from tests import models as M
from tests.reference import autograd_flow

QS = [1, 1.5, 2, 3, "inf"]


def _brute_force_mlp(model, masks, q):
    """Enumerate every input-output path of a bias-free MLP (tiny sizes only)."""
    Ws = [(l.weight.detach().double() * masks[f"{i}.weight"]).abs().numpy()
          for i, l in ((n, m) for n, m in model.named_children() if isinstance(m, torch.nn.Linear))]
    sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    prods = []
    for path in itertools.product(*[range(s) for s in sizes]):
        prods.append(np.prod([W[path[i + 1], path[i]] for i, W in enumerate(Ws)]))
    prods = np.array(prods)
    return prods.max() if q == "inf" else (prods ** q).sum() ** (1 / q)


@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("seed", range(3))
def test_brute_force_on_random_small_mlps(q, seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.ReLU(),
                                torch.nn.Linear(3, 2))
    gen = torch.Generator().manual_seed(seed)
    masks = {f"{i}.weight": torch.rand(model[i].weight.shape, generator=gen) < 0.6 for i in (0, 2, 4)}
    g = netgraph.from_torch(model, (4,))
    want = _brute_force_mlp(model, masks, q)
    got = 10 ** log10_path_norm(g, masks, q)
    assert math.isclose(got, want, rel_tol=1e-9)


def _autograd_norm(model, shape, masks, q):
    R, _, _ = autograd_flow(model, shape, power=q, masks=masks)
    return math.log10(R) / q


CASES = {
    "conv": lambda: (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
    "residual": lambda: (M.randomize_bn(M.Residual1x1()), M.RESIDUAL_INPUT),
    "resnet20": lambda: (zoo.build("resnet20"), (3, 32, 32)),
    "vgg11_bn": lambda: (zoo.build("vgg11_bn"), (3, 32, 32)),
    "digits_cnn": lambda: (zoo.build("digits_cnn"), (1, 8, 8)),
    "grouped": lambda: (M.randomize_bn(GM.GroupedNet()), GM.GROUPED_INPUT),
    "mobile": lambda: (M.randomize_bn(GM.MobileNetish()), GM.MOBILE_INPUT),
    "inception": lambda: (_inception(), (3, 8, 8)),  # concatenation: index-map shortcuts
}


def _inception():
    from tests.netgraph.test_trace_ops import Inception
    return Inception()


@pytest.mark.parametrize("q", [1, 1.5, 2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_finite_q_equals_autograd_forward_pass(case, q):
    """One forward pass with weights |w|^q and BN scales s^q (Gonon et al.) on the nets
    without zero padding (their channel graph is exact); every net, the zoo's padded ones
    included, against a networkx programme over the unit graph built from the parameters."""
    torch.manual_seed(0)
    model, shape = CASES[case]()
    g = netgraph.from_torch(model, shape)
    ms = netgraph.sparsify(g, "random", 0.3, seed=1)
    got = log10_path_norm(g, ms, q)
    if case in ("conv", "residual", "grouped", "mobile"):  # exact channel graphs (no zero padding)
        want = _autograd_norm(model, shape, dict(ms), q)
        assert math.isclose(got, want, rel_tol=1e-9)
    # independent: a dense-matrix programme over the unit graph (networkx topological order)
    assert math.isclose(got, _networkx_norm(g, ms, q), rel_tol=1e-9)


def _unit_graph(g, ms, q):
    """networkx DiGraph with per-edge log weights computed from the parameters directly."""
    D = nx.DiGraph()
    off = np.concatenate([[0], np.cumsum([gr.size for gr in g.groups])])
    lm = g.layer_masks(ms)
    for layer, m in zip(g.layers, lm):
        w = np.abs(layer.weight.astype(np.float64)) * m
        agg = w.max(axis=2) if q == "inf" else (w ** q).sum(axis=2)
        si = np.ones(layer.n_src) if layer.in_scale is None else np.abs(layer.in_scale)
        so = np.ones(layer.n_dst) if layer.out_scale is None else np.abs(layer.out_scale)
        p = 1 if q == "inf" else q
        src = layer.src_index()
        for v, j in zip(*np.nonzero(agg)):
            u = src[v, j]
            D.add_edge((layer.src, u), (layer.dst, v), w=agg[v, j] * si[u] ** p * so[v] ** p)
    for sc in g.shortcuts:
        s = np.ones(sc.size) if sc.scale is None else np.abs(sc.scale)
        src = np.arange(sc.size) if sc.is_identity else sc.src_units
        dst = np.arange(sc.size) if sc.is_identity else sc.dst_units
        for c in range(sc.size):
            D.add_edge((sc.src, int(src[c])), (sc.dst, int(dst[c])), w=s[c] ** (1 if q == "inf" else q))
    return D


def _networkx_norm(g, ms, q):
    D = _unit_graph(g, ms, q)
    best = {}
    out_group = len(g.groups) - 1
    for node in nx.topological_sort(D):
        preds = list(D.predecessors(node))
        if node[0] == 0:
            best[node] = 1.0 if q != "inf" else 0.0
            continue
        if q == "inf":
            vals = [best[p] + math.log(D[p][node]["w"]) for p in preds if p in best]
            best[node] = max(vals) if vals else -math.inf
        else:
            best[node] = math.fsum(best[p] * D[p][node]["w"] for p in preds)
    outs = [v for n, v in best.items() if n[0] == out_group]
    if q == "inf":
        return max(outs) / math.log(10)
    return math.log10(math.fsum(outs)) / q


@pytest.mark.parametrize("case", ["conv", "residual", "resnet20", "digits_cnn", "grouped", "mobile", "inception"])
def test_inf_norm_matches_networkx_longest_path(case):
    torch.manual_seed(0)
    model, shape = CASES[case]()
    g = netgraph.from_torch(model, shape)
    ms = netgraph.sparsify(g, "random", 0.2, seed=3)
    assert math.isclose(log10_path_norm(g, ms, "inf"), _networkx_norm(g, ms, "inf"), rel_tol=1e-9)


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "digits_mlp"])
def test_q1_is_synflow_R_and_q2_is_half_log_R2(name):
    _, g = zoo.graph_of(name)
    ms = netgraph.sparsify(g, "phew", 0.05, seed=0)
    assert math.isclose(log10_path_norm(g, ms, 1), flows.log10_synflow_R(g, ms), rel_tol=1e-12)
    assert math.isclose(2 * log10_path_norm(g, ms, 2), flows.log10_R2(g, ms), rel_tol=1e-12)


def test_q2_and_the_path_kernel_trace_on_an_mlp():
    """sum_e w_e^2 dR2/d(w_e^2) = L ||Phi||_2^2 (Euler, L weights on every path); Tr(Pi) = sum_e dR2/d(w_e^2)."""
    torch.manual_seed(0)
    model = M.mlp((6, 5, 4, 3))
    g = netgraph.from_torch(model, (6,))
    R2, grads, vs = autograd_flow(model, (6,), power=2)
    weighted = sum(float((grads[n] * vs[n]).sum()) for n in grads)
    assert math.isclose(weighted, 3 * 10 ** (2 * log10_path_norm(g, None, 2)), rel_tol=1e-9)
    trace = sum(float(gr.sum()) for gr in grads.values())
    assert math.isclose(math.log10(trace), flows.log10_path_kernel_trace(g), rel_tol=1e-9)


def test_disconnected_and_bad_q():
    model = M.mlp((4, 3, 2))
    g = netgraph.from_torch(model, (4,))
    masks = {l.param: torch.zeros(l.param_shape, dtype=torch.bool) for l in g.layers}
    assert path_norms(g, masks) == {f"log10_path_norm_{q}": -math.inf for q in (1, 2, "inf")}
    for bad in (0.5, "x", None, True):
        with pytest.raises(InvalidInputError, match="path-norm order"):
            log10_path_norm(g, None, bad)
