"""Operations beyond plain conv/linear chains: each rule against autograd on the linearised net.

Every model here has no zero padding (or circular padding), so all positions are alike and
the channel graph must equal the float64 autograd computation of the network linearised by
the documented rules (tests/linearised.py) to 1e-9 relative: R, SynFlow scores, R2, the
path-kernel trace and the number of paths, dense and under a random mask.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netgraph
from netgraph import flows
from tests.reference import assert_matches_linearised, random_masks

REL = 1e-9


def _close(a, b, rel=REL):
    return abs(a - b) <= rel * max(abs(a), abs(b))


_random_mask = random_masks  # the name other test modules import


def check_against_reference(model, shape, masked=True):
    g = netgraph.from_torch(model, shape)
    assert_matches_linearised(g, model, shape, [None, _random_mask(g, 0.7, 1)] if masked else [None], REL)
    return g


def _conv(cin, cout, k=1):
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular")


# -- concatenation, split, chunk, getitem, channel permutation ------------------------------------

class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 6)
        self.b1 = _conv(6, 4)
        self.b2 = nn.Sequential(_conv(6, 3), nn.ReLU(), _conv(3, 5, 3))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv(6, 2))
        self.head = _conv(4 + 5 + 2 + 6, 7)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), x], dim=1)  # x itself re-read
        y = F.relu(self.head(y))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class Dense(nn.Module):
    """DenseNet-like: BatchNorm and conv over ever-growing concatenations."""

    def __init__(self, c0=4, growth=3, n=3):
        super().__init__()
        self.stem = _conv(3, c0)
        self.bns = nn.ModuleList([nn.BatchNorm2d(c0 + i * growth) for i in range(n)])
        self.convs = nn.ModuleList([_conv(c0 + i * growth, growth, 3) for i in range(n)])
        self.fc = nn.Linear((c0 + n * growth) * 4 * 4, 2)

    def forward(self, x):
        feats = [self.stem(x)]
        for bn, conv in zip(self.bns, self.convs):
            feats.append(conv(F.relu(bn(torch.cat(feats, 1)))))
        return self.fc(torch.flatten(torch.cat(feats, 1), 1))


def channel_shuffle(x, groups):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class Shuffle(nn.Module):
    """ShuffleNetV2-like: chunk, one branch, cat, channel shuffle by view/transpose/view."""

    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 8)
        self.branch = nn.Sequential(_conv(4, 4), nn.BatchNorm2d(4), nn.ReLU(), _conv(4, 4, 3))
        self.branch2 = nn.Sequential(_conv(4, 4), nn.ReLU())
        self.shuffle = nn.ChannelShuffle(2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat((a, self.branch(b)), 1), 2)
        a, b = torch.split(x, [4, 4], dim=1)
        x = self.shuffle(torch.cat((self.branch2(a), b), 1))
        return self.fc(x.mean((2, 3)))


class Slicing(nn.Module):
    """getitem on channels, a fixed permutation, a split of unequal sizes, flatten of a cat."""

    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 6)
        self.a = _conv(3, 2)
        self.b = _conv(6, 4)
        self.fc = nn.Linear(2 * 9 + 3 * 9 + 4 * 9, 3)
        self.perm = [5, 0, 3, 1, 4, 2]

    def forward(self, x):
        x = self.stem(x)
        y = x[:, self.perm]            # a channel permutation
        lo, hi = torch.split(y, [3, 3], 1)
        z = torch.cat([self.a(hi), x[:, 1:4], self.b(y)], 1)
        return self.fc(torch.flatten(z, 1))


@pytest.mark.parametrize("model,shape", [
    (Inception(), (3, 4, 4)), (Dense(), (3, 4, 4)), (Shuffle(), (3, 4, 4)), (Slicing(), (3, 3, 3)),
], ids=["inception", "dense", "shuffle", "slicing"])
def test_concat_split_and_permutations_are_exact(model, shape):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.running_var.uniform_(0.2, 2.0)
    g = check_against_reference(model, shape)
    assert g.num_weights == sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1)


def test_concat_and_split_are_index_maps_without_copied_weights():
    g = netgraph.from_torch(Shuffle(), (3, 4, 4))
    kinds = {s.kind for s in g.shortcuts}
    assert "index" in kinds
    for s in g.shortcuts:
        assert len(np.unique(s.src_units)) == s.size and len(np.unique(s.dst_units)) == s.size
        assert s.src_units.max() < g.groups[s.src].size and s.dst_units.max() < g.groups[s.dst].size
    # chunk, cat and two channel shuffles compose into index maps straight from the units
    # that hold the channels (no group for intermediate layouts): the fc reads
    # [c0, a2, c1, br2, c2, a3, c3, br3] (a = stem[:4], br = branch output, c = branch2 output)
    fc_in = g.layer("fc").src
    maps = {(g.groups[s.src].name, tuple(s.src_units), tuple(s.dst_units)) for s in g.shortcuts if s.dst == fc_in}
    assert maps == {("stem", (2, 3), (1, 5)), ("branch.3", (2, 3), (3, 7)), ("branch2.0", (0, 1, 2, 3), (0, 2, 4, 6))}


def test_index_maps_in_interop_and_phew():
    from netgraph.interop import edge_arrays
    from netgraph.sparsifiers.phew import phew_walks
    model = Slicing()
    g = netgraph.from_torch(model, (3, 3, 3))
    e = edge_arrays(g)
    assert len(e["src"]) == g.num_edges
    masks = netgraph.sparsify(model, "phew", density=0.2, input_shape=(3, 3, 3), seed=0)
    from analysis.connectivity import connectivity
    c = connectivity(g, masks)
    assert c["dead"] == 0 and c["connected"]
    w, layer, idx = phew_walks(g, 50, seed=1)
    assert len(w)


# -- normalisation and per-channel scalings ---------------------------------------------------------

class BNAct(nn.BatchNorm2d):
    """timm-style fused BatchNorm + activation calling F.batch_norm."""

    def __init__(self, c):
        super().__init__(c)
        self.act = nn.ReLU6()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, self.momentum, self.eps)
        return self.act(x)


class FrozenBN(nn.Module):
    """timm/detectron-style frozen BN: a per-channel constant multiply and add."""

    linearise = "channel_scale"

    def __init__(self, c):
        super().__init__()
        self.register_buffer("weight", torch.rand(c) + 0.5)
        self.register_buffer("bias", torch.rand(c))

    def forward(self, x):
        return x * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


class LayerNorm2d(nn.LayerNorm):
    """timm's channels-first LayerNorm: permute, F.layer_norm, permute back."""

    linearise = "channel_scale"

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, 1) > self.p
        return x * keep / (1 - self.p)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt-like: conv, permute to channels-last, LayerNorm, Linear/GELU/Linear, layer
    scale, permute back, stochastic depth, residual add."""

    def __init__(self, c, ls=0.5):
        super().__init__()
        self.conv = _conv(c, c, 3)
        self.norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, 2 * c)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) * ls + 0.1)
        self.drop = DropPath(0.3)

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + self.drop(y)


class ModernNet(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.ops import StochasticDepth

        self.stem = _conv(3, 6)
        self.bnact = BNAct(6)
        self.frozen = FrozenBN(6)
        self.gn = nn.GroupNorm(2, 6)
        self.ln2d = LayerNorm2d(6)
        self.block = ConvNeXtBlock(6)
        self.sd = StochasticDepth(0.2, "row")
        self.conv = _conv(6, 5)
        self.acts = nn.Sequential(nn.Hardswish(), nn.SiLU(), nn.ReLU6(), nn.GELU())
        self.register_buffer("factor", torch.linspace(-2, 3, 5).reshape(5, 1, 1))
        self.norm = nn.LayerNorm(5)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.ln2d(self.gn(self.frozen(self.bnact(self.stem(x)))))
        x = x + self.sd(self.block(x))
        x = self.acts(self.conv(x)) * self.factor
        return self.fc(self.norm(x.mean((-1, -2))))


def _randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name in ("weight",):
                w = getattr(m, name, None)
                if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and w is not None:
                    w.copy_((torch.rand(w.shape, generator=g) + 0.5) * torch.sign(torch.randn(w.shape, generator=g)))
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
    return model


def test_normalisation_and_scaling_rules_match_the_linearised_network():
    torch.manual_seed(0)
    model = _randomize(ModernNet())
    model.train()  # traced in eval mode: DropPath / StochasticDepth are identities
    g = check_against_reference(model, (3, 5, 5))
    assert model.training
    assert g.num_weights == sum(p.numel() for n, p in model.named_parameters()
                                if p.dim() > 1)


def test_layernorm_of_all_ones_does_not_collapse_R():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 2))
    g = check_against_reference(model, (4,))
    R = flows.path_flows(g, "abs").R
    assert np.isfinite(R) and R > 0
    # the real LayerNorm of an all-ones (constant) input is exactly zero: the rule replaces it
    with torch.no_grad():
        assert torch.count_nonzero(nn.LayerNorm(6)(torch.ones(1, 6))) == 0


def test_small_layer_scale_warns():
    block = ConvNeXtBlock(4)
    with torch.no_grad():
        block.gamma.fill_(1e-6)
    model = nn.Sequential(block, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.warns(UserWarning, match="layer scale"):
        netgraph.from_torch(model, (4, 3, 3))


@pytest.mark.parametrize("reduce", ["mean", "amax"])
def test_spatial_reductions_by_dimension_index(reduce):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            x = self.conv(x)
            x = getattr(x, reduce)(dim=(2, -1), keepdim=True)
            return self.fc(x.flatten(1))

    model = Net()
    g = check_against_reference(model, (3, 3, 3))  # channels == height == width: by index only
    assert len(g.groups) == 3


def test_activations_are_identities_never_clipped():
    """ReLU6 of a linearised value of 50 stays 50 (the graph never clips)."""
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.ReLU6(), nn.Hardswish(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(50.0)
        model[3].weight.fill_(2.0)
    g = netgraph.from_torch(model, (1,))
    assert flows.path_flows(g, "abs").R == pytest.approx(100.0, rel=1e-12)


class TimmLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class ConvSame(nn.Conv2d):
    """timm Conv2dSame-like: pad (here replicate: all positions alike), then F.conv2d."""

    def forward(self, x):
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class StdConv(nn.Conv2d):
    def forward(self, x):
        w = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
        return F.conv2d(x, w, self.bias)


class FunctionalNet(nn.Module):
    def __init__(self, std=False):
        super().__init__()
        self.conv = (StdConv if std else ConvSame)(3, 4, 3)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(4, 5, 2)
        self.fc = TimmLinear(5, 3)

    def forward(self, x):
        x = self.conv2(self.up(self.conv(x)))
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fc(x.mean((2, 3)))


def test_functional_layers_padding_and_upsampling():
    g = check_against_reference(FunctionalNet(), (3, 4, 4))
    assert [l.param for l in g.layers] == ["conv.weight", "conv2.weight", "fc.weight"]


def test_weight_standardised_conv_is_refused():
    with pytest.raises(netgraph.UnsupportedModelError, match="weight standardisation"):
        netgraph.from_torch(FunctionalNet(std=True), (3, 4, 4))


# -- gating (squeeze-and-excitation) ------------------------------------------------------------

class SE(nn.Module):
    linearise = "gate"

    def __init__(self, c, r, act=nn.Sigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)
        self.act = act()

    def forward(self, x):
        s = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * self.act(s)


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 1)
        self.se1 = SE(6, 2)
        self.conv = nn.Conv2d(6, 5, 2)
        self.se2 = SE(5, 3, nn.Hardsigmoid)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        x = self.se1(F.relu(self.stem(x)))
        x = self.conv(x)
        x = x + self.se2(x)
        return self.fc(x.mean((2, 3)))


def test_gates_are_per_unit_scales_and_their_weights_are_off_path():
    torch.manual_seed(0)
    model = SENet()
    g = check_against_reference(model, (3, 3, 3))
    assert [p["param"] for p in g.offpath] == ["se1.fc1.weight", "se1.fc2.weight", "se2.fc1.weight", "se2.fc2.weight"]
    assert g.offpath[0]["module"] == "se1" and g.offpath[0]["role"] == "gate"
    assert [l.param for l in g.layers] == ["stem.weight", "conv.weight", "fc.weight"]
    # masks cover the layers; off-path weights are left dense (the documented policy)
    masks = netgraph.sparsify(model, "synflow", density=0.5, input_shape=(3, 3, 3), seed=0)
    assert set(masks) == {"stem.weight", "conv.weight", "fc.weight"} | {p["param"] for p in g.offpath}
    assert all(bool(masks[p["param"]].all()) for p in g.offpath)
    # the density counts them: kept = round(0.5 * all conv/linear weights), gates included
    total = sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1)
    assert masks.num_kept == round(0.5 * total) and masks.num_total == total
    from analysis.connectivity import connectivity
    off = sum(p["numel"] for p in g.offpath)
    assert connectivity(g, masks)["kept"] == round(0.5 * total) - off  # off-path keys are accepted
    masks.apply(model)  # strict: every conv/linear weight of the model has a mask
    model(torch.ones(1, 3, 3, 3))


def test_silu_written_out_is_an_activation():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(x)
            return self.b(h * torch.sigmoid(h))

    model = Net()
    g = netgraph.from_torch(model, (3,))
    plain = nn.Sequential(model.a, nn.SiLU(), model.b)
    check_against_reference(plain, (3,))
    g_plain = netgraph.from_torch(plain, (3,))
    assert g.offpath == []
    assert flows.log10_synflow_R(g) == flows.log10_synflow_R(g_plain)
    assert flows.log10_path_kernel_trace(g) == flows.log10_path_kernel_trace(g_plain)


def test_timm_building_blocks():
    """timm's fused BatchNormAct2d (F.batch_norm), LayerNorm2d (permute, F.layer_norm,
    permute), SqueezeExcite and DropPath, against the linearised reference."""
    L = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), L.BatchNormAct2d(8), L.SqueezeExcite(8, rd_channels=4), L.LayerNorm2d(8),
        L.DropPath(0.5), nn.Conv2d(8, 6, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    _randomize(model)
    with torch.no_grad():
        model[3].weight.uniform_(-2, 2)
    model.train()
    g = check_against_reference(model, (3, 3, 3))
    assert [p["param"] for p in g.offpath] == ["2.fc1.weight", "2.fc2.weight"]


class RandomRearrange(nn.Module):
    """A random channel permutation, a split into random parts, a cat in random order."""

    def __init__(self, c, perm, sizes, order, dup):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 1)
        self.perm, self.sizes, self.order, self.dup = perm, sizes, order, dup
        self.head = nn.Conv2d(c + (sizes[0] if dup else 0), 3, 1)
        self.fc = nn.Linear(3 * 4, 2)

    def forward(self, x):
        x = self.stem(x)[:, self.perm]
        parts = torch.split(x, self.sizes, dim=1)
        y = torch.cat([parts[i] for i in self.order] + ([parts[0]] if self.dup else []), 1)
        return self.fc(torch.flatten(self.head(y), 1))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_random_rearrangements_are_exact(data):
    c = data.draw(st.integers(2, 7))
    perm = data.draw(st.permutations(range(c)))
    cuts = sorted(data.draw(st.sets(st.integers(1, c - 1), max_size=c - 1)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, c])]
    order = data.draw(st.permutations(range(len(sizes))))
    dup = data.draw(st.booleans())
    torch.manual_seed(data.draw(st.integers(0, 1000)))
    check_against_reference(RandomRearrange(c, list(perm), sizes, list(order), dup), (2, 2, 2))


class InstanceNormNet(nn.Module):
    """InstanceNorm in its forms: affine, with running statistics (eval), plain on a 1-d map,
    or (``functional=True``) the plain one as ``F.instance_norm``."""

    def __init__(self, functional=False):
        super().__init__()
        self.functional = functional
        self.stem = _conv(3, 6)
        self.inorm = nn.InstanceNorm2d(6, affine=True)
        self.tracked = nn.InstanceNorm2d(6, affine=True, track_running_stats=True)
        self.conv = _conv(6, 4)
        self.plain = nn.InstanceNorm1d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.conv(self.tracked(self.inorm(self.stem(x)))).flatten(2)  # (batch, 4, positions)
        return self.fc((F.instance_norm(x) if self.functional else self.plain(x)).mean(-1))


def test_instancenorm_rules_match_the_linearised_network():
    torch.manual_seed(0)
    model = InstanceNormNet()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in (model.inorm, model.tracked):
            m.weight.copy_((torch.rand(6, generator=g) + 0.5) * torch.sign(torch.randn(6, generator=g)))
        model.tracked.running_var.copy_(torch.rand(6, generator=g) * 2 + 0.2)
    graph = check_against_reference(model, (3, 5, 5))
    functional = InstanceNormNet(functional=True)
    functional.load_state_dict(model.state_dict())
    same = netgraph.from_torch(functional, (3, 5, 5))  # F.instance_norm: the module's rule
    assert flows.log10_synflow_R(same) == flows.log10_synflow_R(graph)
    with pytest.raises(netgraph.UnsupportedModelError, match="InstanceNorm of a tensor that is not"), \
            pytest.warns(UserWarning, match="num_features"):  # torch reads (1, 3) as 1 channel of 3
        netgraph.from_torch(nn.Sequential(nn.Linear(4, 3), nn.InstanceNorm1d(3)), (4,))
