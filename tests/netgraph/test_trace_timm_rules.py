"""Subtraction and the timm leaf rules, each against autograd on the network it linearises.

Each test builds a small network from timm's own modules (no zero padding, so every
position is alike), traces it, and compares R, SynFlow scores, R2, the path-kernel trace
and path counts (dense and under a random mask) with ``tests/linearised.py`` run on a copy
in which the rule's module is replaced by what the rule says it is:

* ``a - b`` -> ``a + b`` (``PoolPlus``); ``a - constant`` -> ``a``;
* ``StarReLU`` -> the factor ``|s|`` (a buffer named ``factor``: ``|.| ** p`` there);
* ``GlobalResponseNorm`` -> the per-channel factor ``1 + |gamma|``;
* weight-standardised convs -> a plain ``Conv2d`` holding the effective weight (checked
  against timm's own forward), which the reference then makes ``|w_eff| ** p * mask``;
* EfficientFormer's ``Attention`` -> the *real* attention (softmax of ``q k^T`` plus the
  position bias) written out here on the linearised ``qkv``/``proj``: tokens are alike, so
  the graph's ``proj(V(x))`` must equal it whatever the bias.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import flows
from netgraph._trace_leaves import effective_weight
from netgraph.masks import prunable_parameter_names
from tests.linearised import reference
from tests.reference import assert_matches_linearised, random_masks, randomise

timm = pytest.importorskip("timm")
from timm.layers import GlobalResponseNormMlp, ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d  # noqa: E402
from timm.layers.grn import GlobalResponseNorm  # noqa: E402
from timm.models.efficientformer import Attention as EfficientFormerAttention  # noqa: E402
from timm.models.metaformer import Pooling, SquaredReLU, StarReLU  # noqa: E402

REL = 1e-9


def _close(a, b, rel=REL):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def check(model, linearised, shape):
    """The graph of ``model`` against the autograd reference of ``linearised``."""
    g = netgraph.from_torch(model, shape)
    assert_matches_linearised(g, linearised, shape, (None, random_masks(g, 0.7, 1)), REL)
    return g



def _swap(model, name, new):
    *path, last = name.split(".")
    parent = model.get_submodule(".".join(path)) if path else model
    setattr(parent, last, new)


class Factor(nn.Module):
    """``x * factor`` (the reference raises a buffer named ``factor`` to ``|.| ** p``)."""

    def __init__(self, f, shape=(-1,)):
        super().__init__()
        self.register_buffer("factor", torch.as_tensor(f).detach().double().reshape(shape).clone())

    def forward(self, x):
        return x * self.factor


class PoolPlus(nn.Module):
    """PoolFormer's token mixer linearised: ``pool(x) + x``."""

    def __init__(self, mixer):
        super().__init__()
        self.pool = mixer.pool

    def forward(self, x):
        return self.pool(x) + x


# -- subtraction and MetaFormer activations -----------------------------------------------------

class MetaNet(nn.Module):
    """PoolFormer V1/V2 pieces: ``pool(x) - x``, StarReLU/SquaredReLU, ``torch.sub``, ``c - x``."""

    def __init__(self, plus=False):
        super().__init__()
        self.plus = plus  # the linearised forward: every subtraction an addition, constants dropped
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.norm = nn.GroupNorm(2, 8)
        self.mixer = Pooling(3)
        self.fc1 = nn.Conv2d(8, 12, 1)
        self.act = StarReLU(scale_value=0.8, bias_value=-0.4)
        self.fc2 = nn.Conv2d(12, 8, 1)
        self.side = nn.Conv2d(8, 8, 1)
        self.sq = SquaredReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.mixer(self.norm(x))
        x = x + self.fc2(self.act(self.fc1(x)))
        if self.plus:
            x = self.sq(torch.add(self.side(x), x))
        else:
            x = 0.5 - self.sq(torch.sub(self.side(x), x)) - 1.0
        return self.head(x.mean((2, 3)))


def _meta_linearised(model):
    lin = copy.deepcopy(model)
    lin.plus = True
    _swap(lin, "mixer", PoolPlus(model.mixer))
    _swap(lin, "act", Factor(model.act.scale))
    _swap(lin, "sq", nn.Identity())
    return lin


def test_subtraction_and_polynomial_activations_match_the_linearised_network():
    model = randomise(MetaNet())
    g = check(model, _meta_linearised(model), (3, 6, 6))
    assert np.isfinite(flows.log10_synflow_R(g))
    assert [l.param for l in g.layers] == ["stem.weight", "fc1.weight", "fc2.weight", "side.weight", "head.weight"]
    # pool(x) - x is exactly 0 on equal positions: the real network would collapse R there


def test_subtraction_of_a_tensor_from_itself_and_alpha():
    class Twice(nn.Module):
        def __init__(self, alpha=1):
            super().__init__()
            self.a, self.b, self.alpha = nn.Linear(3, 4), nn.Linear(4, 2), alpha

        def forward(self, x):
            h = self.a(x)
            return self.b(torch.sub(h, h, alpha=self.alpha))

    model = Twice()
    g = netgraph.from_torch(model, (3,))  # x - x: a weight-1 and a weight-(-1) path, as x + x
    plain = netgraph.from_torch(nn.Sequential(model.a, model.b), (3,))
    assert flows.log10_synflow_R(g) == pytest.approx(flows.log10_synflow_R(plain) + np.log10(2), rel=1e-12)
    assert flows.log10_R2(g) == pytest.approx(flows.log10_R2(plain) + np.log10(4), rel=1e-12)
    assert flows.log10_num_paths(g) == pytest.approx(flows.log10_num_paths(plain), rel=1e-12)
    with pytest.raises(netgraph.UnsupportedModelError, match="alpha=2"):
        netgraph.from_torch(Twice(alpha=2), (3,))


class InPlace(nn.Module):
    """Results of in-place operations dropped, the mutated tensor read later (NFNet's skipinit)."""

    def __init__(self):
        super().__init__()
        self.a, self.c, self.b = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(4, 2)
        self.register_buffer("factor", torch.tensor(3.0))  # the reference raises it to |.| ** p

    def forward(self, x):
        h = self.a(x)
        h.mul_(self.factor)
        h.add_(self.c(x))
        return self.b(h)


def test_tensors_changed_in_place_are_read_after_the_change():
    model = randomise(InPlace())
    g = check(model, model, (3,))
    assert [grp.size for grp in g.groups] == [3, 4, 2]  # a and c write one group, none dangles
    from timm.models.nfnet import NfCfg, NormFreeNet
    torch.manual_seed(0)
    nf = NormFreeNet(NfCfg(depths=(1, 1), channels=(8, 8), group_size=4, skipinit=True, num_features=0), num_classes=3)
    gains = [p for n, p in nf.named_parameters() if n.endswith("skipinit_gain")]
    r = []
    for gain in (1.0, 0.0):
        with torch.no_grad():
            for p in gains:
                p.fill_(gain)
        r.append(flows.log10_synflow_R(netgraph.from_torch(nf, (3, 16, 16))))
    assert r[1] < r[0]  # the gain is on the residual branch (it used to be dropped)


# -- ConvNeXt V2's global response normalisation ------------------------------------------------

class GRNNet(nn.Module):
    """A ConvNeXt V2 block (channels-last GRN MLP) and a channels-first GRN."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.mlp = GlobalResponseNormMlp(8, 16, use_conv=False)
        self.grn = GlobalResponseNorm(8, channels_last=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(self.grn(x).mean((2, 3)))


def test_global_response_norm_is_the_scale_one_plus_abs_gamma():
    model = randomise(GRNNet())
    lin = copy.deepcopy(model)
    _swap(lin, "mlp.grn", Factor(1 + model.mlp.grn.weight.double().abs(), (1, 1, 1, -1)))
    _swap(lin, "grn", Factor(1 + model.grn.weight.double().abs(), (1, -1, 1, 1)))
    g = check(model, lin, (3, 6, 6))
    assert [l.param for l in g.layers] == ["stem.weight", "mlp.fc1.weight", "mlp.fc2.weight", "head.weight"]
    # gamma = 0 (timm's initialisation): the GRN is the identity under the rule
    with torch.no_grad():
        model.grn.weight.zero_()
        model.mlp.grn.weight.zero_()
    plain = copy.deepcopy(model)
    _swap(plain, "grn", nn.Identity())
    _swap(plain, "mlp.grn", nn.Identity())
    assert flows.log10_synflow_R(netgraph.from_torch(model, (3, 6, 6))) == pytest.approx(
        flows.log10_synflow_R(netgraph.from_torch(plain, (3, 6, 6))), rel=1e-12)


# -- weight-standardised convolutions (NFNet, BiT) ----------------------------------------------

class StdNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ScaledStdConv2d(3, 8, 2, stride=2, padding=0, gain_init=0.7)
        self.c2 = StdConv2d(8, 6, 1, padding=0)
        self.c3 = ScaledStdConv2dSame(6, 6, 1, groups=2)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.c3(torch.relu(self.c2(self.stem(x)))).mean((2, 3)))


def _plain_conv(m):
    conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, 0, m.dilation, m.groups,
                     bias=m.bias is not None).double()
    with torch.no_grad():
        conv.weight.copy_(effective_weight(m))
        if m.bias is not None:
            conv.bias.copy_(m.bias)
    return conv


def test_weight_standardised_convs_hold_their_effective_weights():
    model = randomise(StdNet()).double()
    lin = copy.deepcopy(model)
    x = torch.randn(2, 3, 6, 6, dtype=torch.double)
    for name in ("stem", "c2", "c3"):
        m = model.get_submodule(name)
        conv = _plain_conv(m)
        y = torch.randn(2, m.in_channels, 5, 5, dtype=torch.double)
        torch.testing.assert_close(conv(y), m(y), rtol=1e-10, atol=1e-10)  # timm's own standardisation
        _swap(lin, name, conv)
    torch.testing.assert_close(lin(x), model(x), rtol=1e-10, atol=1e-10)
    g = check(model, lin, (3, 6, 6))
    layer = g.layer("stem")
    assert layer.param_shape == tuple(model.stem.weight.shape) and layer.groups == 1
    np.testing.assert_array_equal(layer.weight.reshape(layer.param_shape), effective_weight(model.stem).numpy())
    assert g.layer("c3").groups == 2
    # masks are per parameter element and apply to the model; masking changes the real
    # statistics (the graph freezes them at the dense values)
    masks = netgraph.sparsify(g, "synflow", 0.5, seed=0)
    assert set(masks) == set(prunable_parameter_names(model))
    masked = copy.deepcopy(model)
    masks.apply(masked)
    kept = masks["stem.weight"].to(torch.double)
    assert not torch.allclose(effective_weight(masked.stem), effective_weight(model.stem) * kept)


# -- EfficientFormer's attention ----------------------------------------------------------------

class RealBiasedAttention(nn.Module):
    """EfficientFormer's attention written out (softmax of ``q k^T * scale + bias``)."""

    def __init__(self, a):
        super().__init__()
        self.qkv, self.proj = a.qkv, a.proj
        self.register_buffer("pos_bias", a.attention_biases[:, a.attention_bias_idxs].detach().clone())
        self.h, self.kd, self.vd = a.num_heads, a.key_dim, a.val_dim

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, self.h, -1).permute(0, 2, 1, 3).split([self.kd, self.kd, self.vd], 3)
        p = torch.softmax(q @ k.transpose(-2, -1) * self.kd ** -0.5 + self.pos_bias, dim=-1)
        return self.proj((p @ v).transpose(1, 2).reshape(b, n, -1))


class EFNet(nn.Module):
    def __init__(self, heads=2):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.attn = EfficientFormerAttention(8, key_dim=3, num_heads=heads, attn_ratio=2, resolution=2)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm(x))
        return self.head(x.mean(1))


@pytest.mark.parametrize("heads", [1, 3])
def test_efficientformer_attention_is_the_value_path_whatever_the_position_bias(heads):
    model = randomise(EFNet(heads))
    lin = copy.deepcopy(model)
    _swap(lin, "attn", RealBiasedAttention(lin.attn))
    assert lin.attn.pos_bias.std() > 0.1  # the probabilities are far from uniform
    g = check(model, lin, (3, 8, 8))
    kd, per = 3, 12  # key dim, rows per head (q, k: 3 each; v: 6)
    v_layers = [l for l in g.layers if l.param == "attn.qkv.weight"]
    assert [l.rows for l in v_layers] == [(i * per + 2 * kd, (i + 1) * per) for i in range(heads)]
    off = [(p["param"], p.get("rows"), p["role"]) for p in g.offpath]
    assert off == [("attn.qkv.weight", (i * per, i * per + 2 * kd), "attention query/key") for i in range(heads)] + \
        [("attn.attention_biases", None, "attention position bias")]
    scores = flows.synflow_scores(g)["attn.qkv.weight"]
    qk = np.concatenate([np.arange(i * per, i * per + 2 * kd) for i in range(heads)])
    assert np.all(scores[qk] == 0) and np.all(np.delete(scores, qk, axis=0) > 0)
    ref = reference(lin, (3, 8, 8))["scores"]["attn.qkv.weight"]
    assert np.abs(ref[qk]).max() <= 1e-12 * np.abs(ref).max()  # the real q/k gradient vanishes too
    masks = netgraph.sparsify(g, "random", 0.6, seed=0)
    assert bool(masks["attn.qkv.weight"][qk].all()) and bool(masks["attn.attention_biases"].all())


class FastVitNet(nn.Module):
    def __init__(self):
        super().__init__()
        from timm.models.fastvit import Attention
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.attn = Attention(8, head_dim=4)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        return self.head((x + self.attn(x)).mean((2, 3)))


class RealFastVitAttention(nn.Module):
    """FastViT's own forward on the same submodules (a class the reference does not replace)."""

    def __init__(self, a):
        super().__init__()
        self.qkv, self.proj, self.attn_drop, self.proj_drop = a.qkv, a.proj, a.attn_drop, a.proj_drop
        self.head_dim, self.num_heads, self.scale, self.fused_attn = a.head_dim, a.num_heads, a.scale, False
        self._forward = type(a).forward

    def forward(self, x):
        return self._forward(self, x)


def test_fastvit_attention_on_a_channels_first_map():
    model = randomise(FastVitNet())
    lin = copy.deepcopy(model)
    _swap(lin, "attn", RealFastVitAttention(lin.attn))
    g = check(model, lin, (3, 6, 6))
    assert g.layer("attn.qkv").rows == (16, 24) and g.offpath[0]["rows"] == (0, 16)


# -- the real timm architectures, small ----------------------------------------------------------

def _small(name):
    from timm.models.convnext import ConvNeXt
    from timm.models.efficientformer import EfficientFormer
    from timm.models.fastvit import FastVit
    from timm.models.metaformer import GroupNorm1, GroupNorm1NoBias, MetaFormer
    from timm.models.nfnet import NfCfg, NormFreeNet
    dims = (8, 8, 16, 16)
    return {
        "poolformer": lambda: MetaFormer(depths=(1, 1, 1, 1), dims=dims, mlp_act=nn.GELU, norm_layers=GroupNorm1,
                                         layer_scale_init_values=1e-5, res_scale_init_values=None,
                                         use_mlp_head=False, num_classes=5),
        "poolformerv2": lambda: MetaFormer(depths=(1, 1, 1, 1), dims=dims, norm_layers=GroupNorm1NoBias,
                                           use_mlp_head=False, num_classes=5),
        "efficientformer": lambda: EfficientFormer(depths=(1, 1, 1, 2), embed_dims=dims, num_vit=1, num_classes=5),
        "fastvit": lambda: FastVit(layers=(1, 1, 1, 1), embed_dims=dims, mlp_ratios=(2,) * 4, num_classes=5),
        "convnextv2": lambda: ConvNeXt(depths=(1, 1, 1, 1), dims=dims, use_grn=True, ls_init_value=None,
                                       num_classes=5),
        "nfnet": lambda: NormFreeNet(NfCfg(depths=(1, 1, 1, 1), channels=(16, 16, 32, 32), group_size=8,
                                           bottle_ratio=0.25, extra_conv=True, num_features=32,
                                           attn_layer="se", attn_kwargs=dict(rd_ratio=0.25, rd_divisor=8)),
                                     num_classes=5),
    }[name]()


@pytest.mark.filterwarnings("ignore:.*layer scale")
@pytest.mark.parametrize("name", ["poolformer", "poolformerv2", "efficientformer", "fastvit", "convnextv2",
                                  "nfnet"])
def test_small_timm_architectures_trace_and_masks_apply(name):
    torch.manual_seed(0)
    model = _small(name)
    shape = (3, 224, 224) if name == "efficientformer" else (3, 32, 32)  # EfficientFormer's bias: 7x7
    g = netgraph.from_torch(model, shape)
    covered = set(g.param_names) | {p["param"] for p in g.offpath}
    assert set(prunable_parameter_names(model)) <= covered
    assert np.isfinite(flows.log10_synflow_R(g)) and np.isfinite(flows.log10_R2(g))
    masks = netgraph.sparsify(g, "random", 0.5, seed=0)
    masks.apply(model)  # strict: a mask for every conv/linear weight
    assert torch.isfinite(model.eval()(torch.ones(1, *shape))).all()


def test_to_sparse_leaves_weight_standardised_convs_dense():
    from netgraph.export import to_sparse
    model = nn.Sequential(ScaledStdConv2d(3, 4, 1, padding=0), StdConv2d(4, 4, 1, padding=0), nn.Conv2d(4, 2, 1))
    sparse = to_sparse(model)
    assert [type(m) for m in sparse[:2]] == [ScaledStdConv2d, StdConv2d] and type(sparse[2]) is not nn.Conv2d
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(sparse(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*layer scale")
@pytest.mark.parametrize("name", ["poolformer_s12", "poolformerv2_s12", "efficientformer_l1", "fastvit_t8",
                                  "fastvit_sa12", "convnextv2_atto", "nfnet_l0"])
def test_real_timm_models_trace(name):
    from netgraph import zoo
    spec = f"timm:{name}"
    model = zoo.build(spec, seed=0)
    g = netgraph.from_torch(model, zoo.input_shape(spec))
    assert set(prunable_parameter_names(model)) <= set(g.param_names) | {p["param"] for p in g.offpath}
    assert np.isfinite(flows.log10_synflow_R(g))
