"""Regressions from the review of the merged tracer rules: each was a silent wrong answer
(a wrong graph, a wrong mask) before its fix."""

import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph.errors import UnsupportedModelError


class SharedTokenAndChannelLinear(nn.Module):
    """One Linear used over the positions (token mixing, off-path) and over the channels (a layer)."""

    def __init__(self):
        super().__init__()
        self.emb, self.fc, self.out = nn.Conv1d(3, 8, 1), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):  # (B, 3, 8 positions)
        h = self.fc(self.emb(x))
        return self.out(self.fc(h.transpose(1, 2)).mean(1))


def test_a_parameter_on_a_path_and_off_it_is_refused_as_shared():
    with pytest.raises(UnsupportedModelError, match="shared weights"):
        netgraph.from_torch(SharedTokenAndChannelLinear().eval(), (3, 8))


class AddAlpha(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode, self.f1, self.f2 = mode, nn.Linear(4, 4), nn.Linear(4, 2)
        self.register_buffer("c", torch.ones(4))

    def forward(self, x):
        h = self.f1(x)
        h = {"add": lambda: torch.add(self.c, h, alpha=3.0), "sub": lambda: torch.sub(self.c, h, alpha=3.0),
             "mul": lambda: 3.0 * h, "first": lambda: torch.add(h, self.c, alpha=3.0)}[self.mode]()
        return self.f2(h)


@pytest.mark.parametrize("mode,expected", [("add", 3.0), ("sub", 3.0), ("mul", 3.0), ("first", None)])
def test_alpha_scales_the_input_dependent_second_operand(mode, expected):
    g = netgraph.from_torch(AddAlpha(mode).eval(), (4,))
    scale = g.layers[0].out_scale
    assert (scale is None) if expected is None else (scale.tolist() == [expected] * 4)


class ClassToken(nn.Module):
    """Tokens of different units (a class token from a Linear, patches from another) read by a
    rearrangement and by a per-token layer, in either order."""

    def __init__(self, order):
        super().__init__()
        self.order = order
        self.emb, self.cls, self.blk, self.out = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(8, 2)

    def forward(self, x):  # (B, 3, 5 tokens)
        t = x.transpose(1, 2)
        z = torch.cat([self.cls(t[:, :1]), self.emb(t[:, 1:])], 1)
        if self.order == 0:
            c0, y = z[:, 0], self.blk(z)
        else:
            y = self.blk(z)
            c0 = z[:, 0]
        return self.out(torch.cat([c0, y.mean(1)], 1))


def test_the_mean_token_does_not_depend_on_the_order_of_readers():
    a, b = ClassToken(0).eval(), ClassToken(1).eval()
    b.load_state_dict(a.state_dict())
    ga, gb = netgraph.from_torch(a, (3, 5)), netgraph.from_torch(b, (3, 5))
    assert [(l.param, l.src, l.dst) for l in ga.layers] == [(l.param, l.src, l.dst) for l in gb.layers]
    assert [g.size for g in ga.groups] == [g.size for g in gb.groups]
    assert len(ga.shortcuts) == len(gb.shortcuts)
    assert netgraph.flows.log10_synflow_R(ga) == netgraph.flows.log10_synflow_R(gb)


class FoldedUnequalTokens(nn.Module):
    """Windows folded into the batch over tokens of different units: refused, not averaged."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, (1, 3)), nn.Conv2d(3, 4, 1)
        self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):  # (B, 3, 2, 3)
        z = torch.cat([self.a(x), self.b(x)], 3)
        n = x.shape[0]
        z = z.permute(0, 2, 3, 1).reshape(n, 2, 2, 2, 4).permute(0, 2, 1, 3, 4).reshape(-1, 4, 4)
        return self.out(self.fc(z).reshape(n, -1, 4).mean(1))


class ChannelsFirstCat(nn.Module):
    """Concatenation along positions of a channels-first tensor, then a Linear over positions."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.mix, self.out = nn.Conv1d(3, 4, 1), nn.Conv1d(3, 4, 1), nn.Linear(2, 5), nn.Linear(5, 2)

    def forward(self, x):  # (B, 3, 1)
        return self.out(self.mix(torch.cat([self.a(x), self.b(x)], 2)).mean(1))


@pytest.mark.parametrize("model,shape", [(FoldedUnequalTokens, (3, 2, 3)), (ChannelsFirstCat, (3, 1))])
def test_token_layouts_the_mean_token_cannot_represent_are_refused(model, shape):
    m = model().eval()
    m(torch.randn(2, *shape))  # runs in plain PyTorch
    with pytest.raises(UnsupportedModelError, match="layout"):
        netgraph.from_torch(m, shape)
