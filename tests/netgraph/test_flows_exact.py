"""Graph flows equal an independent autograd computation (DESIGN.md, exactness test), on plain,
residual, grouped and depthwise nets."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

import netgraph
from netgraph import flows
from tests import grouped_models as GM
from tests import models as M
from tests.reference import close, random_masks, autograd_flow, autograd_path_kernel_trace, autograd_synflow_scores

REL = 1e-9


def _cases():
    torch.manual_seed(0)
    return [
        ("mlp", M.mlp((12, 9, 7, 4)), (12,)),
        ("mlp_image", M.mlp((2 * 3 * 3, 8, 5)), (2, 3, 3)),
        ("conv_nopad", M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
        ("residual_1x1", M.randomize_bn(M.Residual1x1()), M.RESIDUAL_INPUT),
        ("grouped", M.randomize_bn(GM.GroupedNet()), GM.GROUPED_INPUT),
        ("mobilenetish", M.randomize_bn(GM.MobileNetish()), GM.MOBILE_INPUT),
        ("grouped_1d", GM.grouped_1d(), GM.GROUPED_1D_INPUT),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _random_mask(graph, density, seed):
    return random_masks(graph, density, seed)


def _close(a, b, rel=REL):
    return close(a, b, rel)


@pytest.mark.parametrize("name,model,shape", CASES, ids=IDS)
@pytest.mark.parametrize("masked", [False, True])
def test_synflow_R_and_scores_match_autograd(name, model, shape, masked):
    g = netgraph.from_torch(model, shape)
    masks = _random_mask(g, 0.6, 1) if masked else None
    R, ref = autograd_synflow_scores(model, shape, masks)
    assert _close(10 ** flows.log10_synflow_R(g, masks), R)
    ours = flows.synflow_scores(g, masks)
    for p, s in ref.items():
        np.testing.assert_allclose(ours[p], s, rtol=REL, atol=REL * np.abs(s).max())


@pytest.mark.parametrize("name,model,shape", CASES, ids=IDS)
@pytest.mark.parametrize("masked", [False, True])
def test_R2_and_path_kernel_trace_match_autograd(name, model, shape, masked):
    g = netgraph.from_torch(model, shape)
    masks = _random_mask(g, 0.6, 2) if masked else None
    R2, trace = autograd_path_kernel_trace(model, shape, masks)
    assert _close(10 ** flows.log10_R2(g, masks), R2)
    assert _close(flows.path_kernel_trace(g, masks), trace)


@pytest.mark.parametrize("name,model,shape", CASES, ids=IDS)
def test_synflow_l2_scores_both_forms(name, model, shape):
    g = netgraph.from_torch(model, shape)
    _, grads, _ = autograd_flow(model, shape, power=2)
    params = dict(model.named_parameters())
    abs_grad = flows.synflow_l2_scores(g, form="abs_grad")
    w_grad = flows.synflow_l2_scores(g, form="w_grad")
    for p, gr in grads.items():
        w = params[p].detach().double()
        ref1 = (w.abs() * gr).numpy()
        ref2 = (w * (2 * w * gr)).numpy()  # w * dR2/dw, chain rule through v = w^2
        np.testing.assert_allclose(abs_grad[p], ref1, rtol=REL, atol=REL * np.abs(ref1).max())
        np.testing.assert_allclose(w_grad[p], ref2, rtol=REL, atol=REL * np.abs(ref2).max())


@pytest.mark.parametrize("name,model,shape", CASES, ids=IDS)
def test_path_count_matches_autograd(name, model, shape):
    g = netgraph.from_torch(model, shape)
    masks = _random_mask(g, 0.5, 3)
    R, _, _ = autograd_flow(model, shape, masks=masks, count=True)
    assert _close(10 ** flows.log10_num_paths(g, masks), R)


def test_relative_scores_sum_to_one_per_layer_on_a_chain():
    model = M.mlp((10, 8, 6, 4))
    g = netgraph.from_torch(model, (10,))
    rel = flows.synflow_scores(g, relative=True)
    for s in rel.values():
        assert s.sum() == pytest.approx(1.0, rel=1e-12)


def test_padding_difference_is_small_and_documented():
    """With zero padding the channel graph counts border pixels as interior ones.

    Graph and autograd differ only through the borders; on a 3x3 conv with padding 1 over
    an 8x8 map the graph's R is larger (border pixels see fewer taps in the real net).
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    g = netgraph.from_torch(model, (3, 8, 8))
    R, _ = autograd_synflow_scores(model, (3, 8, 8))
    ours = 10 ** flows.log10_synflow_R(g)
    rel = (ours - R) / R
    # Measured: about 0.37 for this 8x8 map (two 3x3 convs lose 1/4 and 7/16 of taps
    # at the border rows and columns); it shrinks as the map grows.
    assert 0.2 < rel < 0.5
    big = netgraph.from_torch(model, (3, 64, 64))
    Rb, _ = autograd_synflow_scores(model, (3, 64, 64))
    assert 0 < (10 ** flows.log10_synflow_R(big) - Rb) / Rb < 0.07


def test_deep_network_does_not_overflow():
    """A 100-layer MLP whose R is about 1e361: log-scaled flows stay exact."""
    depth, width, w = 100, 4, 1000.0
    model = nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(depth)])
    with torch.no_grad():
        for layer in model:
            layer.weight.fill_(w)
    g = netgraph.from_torch(model, (width,))
    # R = sum over width**(depth+1) unit paths of w**depth
    expected = (depth + 1) * math.log10(width) + depth * math.log10(w)
    assert flows.log10_synflow_R(g) == pytest.approx(expected, rel=1e-12)
    assert flows.log10_num_paths(g) == pytest.approx((depth + 1) * math.log10(width), rel=1e-12)
    assert flows.path_flows(g, "abs").R == math.inf
    rel = flows.synflow_scores(g, relative=True)
    assert all(np.isfinite(s).all() for s in rel.values())


def test_path_kernel_trace_closed_form_two_weights():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[1].weight.fill_(3.0)
    g = netgraph.from_torch(model, (1,))
    assert flows.path_kernel_trace(g) == pytest.approx(9.0 + 4.0)
    assert 10 ** flows.log10_R2(g) == pytest.approx(36.0)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    density=st.floats(0.2, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_mlps_match_autograd(sizes, density, seed):
    torch.manual_seed(seed)
    model = M.mlp(tuple(sizes))
    g = netgraph.from_torch(model, (sizes[0],))
    masks = _random_mask(g, density, seed)
    R, ref = autograd_synflow_scores(model, (sizes[0],), masks)
    assert math.isclose(10 ** flows.log10_synflow_R(g, masks), R, rel_tol=REL, abs_tol=1e-300) or R == 0
    ours = flows.synflow_scores(g, masks)
    for p, s in ref.items():
        np.testing.assert_allclose(ours[p], s, rtol=REL, atol=1e-12)
    Rc, _, _ = autograd_flow(model, (sizes[0],), masks=masks, count=True)
    got = flows.log10_num_paths(g, masks)
    assert (Rc == 0 and got == -math.inf) or math.isclose(10 ** got, Rc, rel_tol=REL)


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) * 2.5) / 4.0


def test_scalar_multiplication_is_a_scale():
    torch.manual_seed(0)
    model = _Scaled()
    g = netgraph.from_torch(model, (3,))
    R, ref = autograd_synflow_scores(model, (3,))
    assert _close(10 ** flows.log10_synflow_R(g), R)
    ours = flows.synflow_scores(g)
    for p, s in ref.items():
        np.testing.assert_allclose(ours[p], s, rtol=REL)
    # For R2 a scale enters squared: R2(scaled) = (2.5 / 4)^2 * R2(unscaled)
    plain = netgraph.from_torch(nn.Sequential(model.a, nn.ReLU(), model.b), (3,))
    assert 10 ** flows.log10_R2(g) == pytest.approx((2.5 / 4) ** 2 * 10 ** flows.log10_R2(plain))


class _Doubling(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h + h)


def test_adding_a_tensor_to_itself_doubles_it():
    torch.manual_seed(0)
    model = _Doubling()
    g = netgraph.from_torch(model, (3,))
    R, _ = autograd_synflow_scores(model, (3,))
    assert _close(10 ** flows.log10_synflow_R(g), R)
