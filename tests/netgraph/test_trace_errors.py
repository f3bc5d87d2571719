"""Tracing robustness and error reporting (issue 10, items 7 and 8)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netgraph
from netgraph import flows
from netgraph.errors import UnsupportedModelError


class ChannelMean(nn.Module):
    """``x.mean(1)`` averages over channels; with 4 channels on a 4x4 map the old tracer
    compared sizes, took it for spatial pooling and built a silently wrong graph."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean(1).flatten(1))


def test_mean_over_channels_is_refused_even_when_sizes_coincide():
    with pytest.raises(UnsupportedModelError, match=r"mean over dimension\(s\) \[1\].*channel"):
        netgraph.from_torch(ChannelMean(), (3, 4, 4))


class TrainingBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)
        self.aux = nn.Linear(4, 2)

    def forward(self, x):
        h = self.a(x)
        if self.training:
            return self.aux(h)
        return self.b(h)


def test_traced_in_eval_mode_and_training_flag_restored():
    model = TrainingBranch().train()
    model.aux.eval()  # a frozen part stays frozen
    g = netgraph.from_torch(model, (3,))
    assert [l.name for l in g.layers] == ["a", "b"]
    assert model.training and model.a.training and not model.aux.training


class Optional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x, mask=None, scale: float = 1.0, *, pre_logits: bool = False):
        if mask is not None:
            x = x * mask
        x = self.fc(x) * scale
        return x if not pre_logits else x.relu()


def test_optional_forward_arguments_are_bound_to_their_defaults():
    g = netgraph.from_torch(Optional(), (3,))
    assert [l.name for l in g.layers] == ["fc"]


def test_two_required_inputs_are_refused():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x, y):
            return self.fc(x + y)

    with pytest.raises(UnsupportedModelError, match=r"2 inputs \(x, y\)"):
        netgraph.from_torch(Two(), (3,))


class ShapeBranch(nn.Module):
    """Python control flow on shapes: pool only large maps, loop over the spatial dims."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.shape[-1] > 4:
            x = self.pool(x)
        for d in x.shape[2:]:
            assert d > 0
        if x.size(1) != 4:
            raise ValueError("wrong channels")
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("size", [4, 8])
def test_shape_dependent_control_flow_traces(size):
    g = netgraph.from_torch(ShapeBranch(), (3, size, size))
    assert [l.name for l in g.layers] == ["conv", "fc"]
    assert np.isfinite(flows.log10_synflow_R(g))


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 4, 1)

    def forward(self, x):
        return torch.erf(self.up(x)).exp()


class ManyBlockers(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.inner = Inner()
        self.rnn = nn.GRU(4, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.inner(self.stem(x))
        x = x * x.relu()  # a product of two tensors, not a gate
        return self.fc(x.mean((2, 3)))


def test_every_blocker_is_reported_with_its_module():
    with pytest.raises(UnsupportedModelError) as info:
        netgraph.from_torch(ManyBlockers(), (3, 2, 2))
    msg = str(info.value)
    blockers = info.value.blockers
    assert len(blockers) == 4, blockers
    assert "module 'inner.up' (ConvTranspose2d)" in blockers[0]
    assert "function erf" in blockers[1] and "in module 'inner' (Inner)" in blockers[1]
    assert "tensor method .exp()" in blockers[2] and "in module 'inner' (Inner)" in blockers[2]
    assert "function mul" in blockers[3] and "product of two tensors" in blockers[3]
    assert "\n" not in msg and "Supported:" in msg and msg.count("[") >= 4


def test_value_dependent_control_flow_names_the_module():
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.gate = Gate()

        def forward(self, x):
            return self.gate(self.fc(x))

    with pytest.raises(UnsupportedModelError, match=r"tensor value in module 'gate' \(Gate\)"):
        netgraph.from_torch(Net(), (3,))


class Weird(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2)
        self.fc16 = nn.Linear(16, 2)

    def forward(self, x):
        x = self.conv(x)
        if self.kind == "channels_last_flatten":  # features interleave channels: no channel bundles
            return self.fc16(x.permute(0, 2, 3, 1).flatten(1))
        if self.kind == "batch_view":
            x = x.view(-1)[:4].reshape(1, 4)
        elif self.kind == "product":
            x = x * x.relu()
        elif self.kind == "pow":
            x = x ** 2
        elif self.kind == "tuple":
            return x.mean((2, 3)), x
        return self.fc(x.mean((2, 3)) if x.dim() == 4 else x)


@pytest.mark.parametrize("kind", ["batch_view", "channels_last_flatten", "product", "pow", "tuple"])
def test_odd_models_get_the_project_errors_only(kind):
    """A model that runs in plain PyTorch gets UnsupportedModelError, never another exception."""
    model = Weird(kind)
    model(torch.zeros(1, 3, 2, 2))
    with pytest.raises(UnsupportedModelError):
        netgraph.from_torch(model, (3, 2, 2))


class PadSame(nn.Conv2d):
    """timm-style 'same' padding computed from shapes (math.ceil, the weight's shape)."""

    def forward(self, x):
        import math

        ih, iw = x.size()[-2:]
        kh, kw = self.weight.shape[-2:]
        ph = max((math.ceil(ih / self.stride[0]) - 1) * self.stride[0] + kh - ih, 0)
        pw = max((math.ceil(iw / self.stride[1]) - 1) * self.stride[1] + kw - iw, 0)
        if ph > 0 or pw > 0:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate")
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def test_shape_arithmetic_with_parameters_traces():
    model = nn.Sequential(PadSame(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    g = netgraph.from_torch(model, (3, 7, 7))
    assert [l.param for l in g.layers] == ["0.weight", "4.weight"]
