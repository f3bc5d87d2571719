"""Attention: each rule against autograd on the network linearised by it (tests/linearised.py).

Under the linearisation every token is alike, so the attention probabilities are uniform
and attention is ``out_proj(V(x))`` on channel units; the query/key weights are off-path.
The models here have no class token (a constant token would make tokens unlike), so the
channel graph must equal the float64 reference to 1e-9 relative.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

import netgraph
from netgraph import flows
from netgraph.sparsifiers import sparsify
from tests.netgraph.test_trace_ops import check_against_reference
from tests.reference import randomise


class Block(nn.Module):
    """Patch embedding, a pre-norm transformer block, mean over tokens, head."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 12), nn.GELU(), nn.Linear(12, dim))
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(x.mean(1))



def test_multihead_attention_fused_matches_linearised_reference():
    model = randomise(Block())
    g = check_against_reference(model, (3, 8, 8))
    e = 8
    v = g.layer("attn")
    assert v.param == "attn.in_proj_weight" and v.rows == (2 * e, 3 * e) and v.weight.shape == (e, e, 1)
    assert [(p["param"], p.get("rows"), p["numel"]) for p in g.offpath] == [("attn.in_proj_weight", (0, 2 * e), 2 * e * e)]
    scores = flows.synflow_scores(g)["attn.in_proj_weight"]
    assert scores.shape == (3 * e, e) and np.all(scores[:2 * e] == 0) and np.all(scores[2 * e:] > 0)


def test_multihead_attention_fused_masks_keep_query_key_dense():
    model = randomise(Block())
    g = netgraph.from_torch(model, (3, 8, 8))
    ms = sparsify(g, "random", 0.5, seed=0)
    m = ms["attn.in_proj_weight"]
    assert m.shape == (24, 8) and bool(m[:16].all()) and not bool(m[16:].all())
    lm = g.layer_masks(ms)[g.layer("attn").index]
    assert np.array_equal(lm.reshape(8, 8), m[16:].numpy())
    assert ms.num_total == g.num_weights + 2 * 8 * 8  # the dense query/key rows are counted
    assert ms.num_kept == round(0.5 * ms.num_total)


def test_multihead_attention_refusals():
    class Cross(Block):
        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            return self.head(self.attn(x, self.ln1(x), x)[0].mean(1))

    with pytest.raises(netgraph.UnsupportedModelError, match="only self-attention"):
        netgraph.from_torch(Cross(), (3, 8, 8))


def _vit():
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=16, mlp_dim=32, num_classes=10)
    with torch.no_grad():
        m.heads.head.weight.normal_()  # torchvision zero-initialises the head: no path would survive
    return m


@pytest.mark.parametrize("method", ["synflow", "magnitude", "random", "snip", "grasp", "phew"])
def test_vit_small_traces_and_every_sparsifier_masks_it(method):
    model = _vit()
    g = netgraph.from_torch(model, (3, 32, 32))
    assert len(g.offpath) == 2 and all(p["role"] == "attention query/key" for p in g.offpath)
    assert flows.log10_synflow_R(g) > -np.inf
    data = (torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    ms = sparsify(model, method, 0.5, seed=0, input_shape=(3, 32, 32), graph=g,
                  data=data if method in ("snip", "grasp") else None)
    for p in g.offpath:
        assert bool(ms[p["param"]][p["rows"][0]:p["rows"][1]].all())
    if method in ("random", "magnitude", "synflow"):
        assert ms.num_kept == round(0.5 * ms.num_total)
    ms.apply(model)
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def _swin(v2=False):
    from torchvision.models import swin_transformer as st
    torch.manual_seed(0)
    extra = dict(block=st.SwinTransformerBlockV2, downsample_layer=st.PatchMergingV2) if v2 else {}
    return st.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                              window_size=[4, 4], num_classes=10, **extra)


@pytest.mark.parametrize("v2", [False, True])
def test_swin_small_matches_linearised_reference(v2):
    model = randomise(_swin(v2))
    g = check_against_reference(model, (3, 32, 32))
    qkv = g.layer("features.1.0.attn.qkv")
    assert qkv.rows == (32, 48)
    roles = sorted({p["role"] for p in g.offpath})
    assert roles == ["attention position bias", "attention query/key"]
    assert any(p["param"].endswith("relative_position_bias_table") for p in g.offpath) != v2
    scores = flows.synflow_scores(g)
    assert np.all(scores["features.1.0.attn.qkv.weight"][:32] == 0)


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("method", ["synflow", "magnitude", "random", "snip", "grasp", "phew"])
def test_swin_small_every_sparsifier_masks_it(method, v2):
    model = _swin(v2)
    g = netgraph.from_torch(model, (3, 32, 32))
    data = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    ms = sparsify(model, method, 0.5, seed=0, input_shape=(3, 32, 32), graph=g,
                  data=data if method in ("snip", "grasp") else None)
    for p in g.offpath:
        rows = p.get("rows") or (0, p["shape"][0])
        assert bool(ms[p["param"]][rows[0]:rows[1]].all())
    if method in ("random", "magnitude", "synflow"):
        assert ms.num_kept == round(0.5 * ms.num_total)
    ms.apply(model)
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def _timm_vit(**kw):
    vt = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(0)
    return vt.VisionTransformer(img_size=32, patch_size=8, depth=2, embed_dim=16, num_heads=2, num_classes=10, **kw)


def test_timm_attention_matches_linearised_reference():
    model = randomise(_timm_vit(class_token=False, global_pool="avg", init_values=0.5))
    g = check_against_reference(model, (3, 32, 32))
    assert g.layer("blocks.0.attn.qkv").rows == (32, 48)
    assert [p["rows"] for p in g.offpath] == [(0, 32), (0, 32)]


@pytest.mark.parametrize("method", ["synflow", "random", "snip", "grasp", "phew"])
def test_timm_vit_with_class_token_every_sparsifier_masks_it(method):
    model = _timm_vit()
    g = netgraph.from_torch(model, (3, 32, 32))
    data = (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    ms = sparsify(model, method, 0.5, seed=0, input_shape=(3, 32, 32), graph=g,
                  data=data if method in ("snip", "grasp") else None)
    assert all(bool(ms[p["param"]][:32].all()) for p in g.offpath)
    ms.apply(model)
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_timm_attention_refusals():
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _timm_vit(class_token=False, global_pool="avg")

        def forward(self, x):
            t = self.body.patch_embed(x)
            return self.body.blocks[0].attn(t, attn_mask=torch.zeros(16, 16)).mean(1)

    with pytest.raises(netgraph.UnsupportedModelError, match="with a mask"):
        netgraph.from_torch(Masked(), (3, 32, 32))


def test_row_range_layer_indexes_and_refuses_overlaps():
    import dataclasses

    g = netgraph.from_torch(randomise(Block()), (3, 8, 8))
    v = g.layer("attn")
    assert v.rows_shape == (8, 8) and v.param_shape == (24, 8)
    assert [i.tolist() for i in v.bundle_elements(v=3, u=5)] == [[19], [5]]
    assert v.take(np.arange(24 * 8).reshape(24, 8))[0, 0] == 16 * 8
    scores = flows.synflow_scores(g)
    masks = g.masks_to_params(g.layer_masks(None))
    assert masks["attn.in_proj_weight"].all() and scores["attn.in_proj_weight"].shape == (24, 8)
    other = dataclasses.replace(v, index=len(g.layers), rows=(8, 16))  # disjoint rows: accepted
    netgraph.NetGraph(groups=g.groups, layers=[*g.layers, other], shortcuts=g.shortcuts)
    clash = dataclasses.replace(v, index=len(g.layers), rows=(12, 20))
    with pytest.raises(ValueError, match="shared weights"):
        netgraph.NetGraph(groups=g.groups, layers=[*g.layers, clash], shortcuts=g.shortcuts)


class GridAttention(nn.Module):
    """MaxViT's relative-position attention on (batch, groups, positions, features)."""

    def __init__(self):
        super().__init__()
        from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
        self.patch = nn.Conv2d(3, 8, 2, stride=2)
        self.attn = RelativePositionalMultiHeadAttention(8, 4, 4)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.patch(x)  # (1, 8, 4, 4)
        b, c, h, w = x.shape
        x = x.reshape(b, c, 4, 4).permute(0, 2, 3, 1)  # 4 groups of 4 positions
        return self.head(self.attn(x).mean((1, 2)))


def test_maxvit_attention_matches_linearised_reference():
    g = check_against_reference(randomise(GridAttention()), (3, 8, 8))
    assert g.layer("attn.to_qkv").rows == (16, 24)
    assert sorted(p["role"] for p in g.offpath) == ["attention position bias", "attention query/key"]


@pytest.mark.parametrize("method", ["synflow", "random", "snip", "grasp", "phew"])
def test_maxvit_small_traces_and_every_sparsifier_masks_it(method):
    from torchvision.models.maxvit import MaxVit
    torch.manual_seed(0)
    model = MaxVit(input_size=(64, 64), stem_channels=8, partition_size=2, block_channels=[16, 32],
                   block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=10)
    g = netgraph.from_torch(model, (3, 64, 64))
    assert len(g.offpath) >= 8  # per attention: query/key rows and a position bias table
    data = (torch.randn(2, 3, 64, 64), torch.randint(0, 10, (2,)))
    ms = sparsify(model, method, 0.6, seed=0, input_shape=(3, 64, 64), graph=g,
                  data=data if method in ("snip", "grasp") else None)
    for p in g.offpath:
        rows = p.get("rows") or (0, p["shape"][0])
        assert bool(ms[p["param"]][rows[0]:rows[1]].all())
    ms.apply(model)
    assert torch.isfinite(model.eval()(torch.randn(2, 3, 64, 64))).all()
