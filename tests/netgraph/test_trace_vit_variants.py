"""Attention variants of timm's vision transformers, each rule against autograd.

The reference is the float64 autograd computation of the network linearised by the rule
(``tests/linearised.py``) after the variant is replaced by its linearised form written here
independently of the graph code (XCA: a mean over the value channels of each head; talking
heads: values times the row sums of the mixed probabilities; class attention: the class
token's update from the mean token). Every conv has circular padding (no border effects)
and the position encodings are zero (additive constants), so the graph must equal the
reference to 1e-9 relative: R, SynFlow scores, R2, the path-kernel trace and path counts,
dense and under a random mask.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import flows
from netgraph.masks import prunable_parameter_names
from netgraph.sparsifiers import sparsify
from tests.linearised import linearised_flow
from tests.netgraph.test_trace_ops import REL, _close, _random_mask
from tests.reference import randomise

timm = pytest.importorskip("timm")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small float64 models: one thread is faster than several on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



def _circular(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding):
            m.padding_mode = "circular"
    return model


def check_rule(model, linearised, shape):
    """Graph of ``model`` against autograd on ``linearised(p)``: the model with the variant
    replaced by its linearised form for weights raised to ``p`` (0: path counting)."""
    g = netgraph.from_torch(model, shape)
    for masks in [None, _random_mask(g, 0.7, 1)]:
        R, g1, v1 = linearised_flow(linearised(1), shape, 1, masks)
        assert _close(10 ** flows.log10_synflow_R(g, masks), R)
        ours = flows.synflow_scores(g, masks)
        for p, grad in g1.items():
            s = (grad * v1[p]).numpy()
            np.testing.assert_allclose(ours[p], s, rtol=REL, atol=REL * np.abs(s).max())
        R2, g2, _ = linearised_flow(linearised(2), shape, 2, masks)
        assert _close(10 ** flows.log10_R2(g, masks), R2)
        trace = sum(float((gr if masks is None else gr * masks[n].to(gr.dtype)).sum()) for n, gr in g2.items())
        assert _close(flows.path_kernel_trace(g, masks), trace)
        Rc, _, _ = linearised_flow(linearised(0), shape, masks=masks, count=True)
        assert _close(10 ** flows.log10_num_paths(g, masks), Rc)
    return g


def check_masks(model, g, shape, density=0.5):
    """Off-path weights dense, the exact kept count, and the masks apply to the model."""
    ms = sparsify(g, "synflow", density, seed=0)
    for p in g.offpath:
        rows = p.get("rows") or (0, p["shape"][0])
        assert bool(ms[p["param"]][rows[0]:rows[1]].all())
    names = prunable_parameter_names(model)
    params = dict(model.named_parameters())
    assert ms.num_total == sum(params[n].numel() for n in names) == g.num_weights + sum(p["numel"] for p in g.offpath)
    assert ms.num_kept == round(density * ms.num_total)
    ms.apply(model)
    assert torch.isfinite(model.eval()(torch.randn(2, *shape))).all()
    return ms


# -- EdgeNeXt: cross-covariance attention ---------------------------------------------------------

class XcaUniform(nn.Module):
    """XCA with uniform probabilities over the channels of a head: ``proj(M V(x))``, ``M`` the
    head mean with weights ``(1/d) ** p``."""

    def __init__(self, xca, p):
        super().__init__()
        self.qkv, self.proj, self.heads, self.p = xca.qkv, xca.proj, xca.num_heads, p

    def forward(self, x):
        b, n, c = x.shape
        v = self.qkv(x)[..., 2 * c:].reshape(b, n, self.heads, -1)
        mixed = v.sum(-1, keepdim=True).expand_as(v) * (1.0 / v.shape[-1]) ** self.p
        return self.proj(mixed.reshape(b, n, c))


def _edgenext():
    from timm.models.edgenext import EdgeNeXt
    torch.manual_seed(0)
    m = EdgeNeXt(dims=(8, 12, 8, 8), depths=(1, 2, 1, 1), global_block_counts=(0, 1, 0, 0),
                 kernel_sizes=(3, 3, 3, 3), heads=(2, 3, 2, 2), d2_scales=(2, 2, 2, 2),
                 use_pos_emb=(False, True, False, False), num_classes=5)
    return _circular(randomise(m))


def _edgenext_linearised(model):
    def at(p):
        m = copy.deepcopy(model)
        for name, mod in list(m.named_modules()):
            if type(mod).__name__ == "CrossCovarianceAttn":
                parent = m.get_submodule(name.rsplit(".", 1)[0])
                parent.xca = XcaUniform(mod, p)
            if getattr(mod, "pos_embd", None) is not None:
                mod.pos_embd = None  # an additive constant: zero
        return m
    return at


def test_xca_matches_linearised_reference():
    model = _edgenext()
    g = check_rule(model, _edgenext_linearised(model), (3, 64, 64))
    qkv = g.layer("stages.1.blocks.1.xca.qkv")
    assert qkv.rows == (24, 36) and qkv.weight.shape == (12, 12, 1)
    roles = sorted((p["role"], p["param"], p.get("rows"), p["numel"]) for p in g.offpath)
    assert roles == [("attention query/key", "stages.1.blocks.1.xca.qkv.weight", (0, 24), 24 * 12),
                     ("constant", "stages.1.blocks.1.pos_embd.token_projection.weight", None, 12 * 64)]
    scores = flows.synflow_scores(g)["stages.1.blocks.1.xca.qkv.weight"]
    assert np.all(scores[:24] == 0) and np.all(scores[24:] > 0)
    # the head mean: 3 heads of 4 channels, 4 index maps of weight 1/4 into the mixed units
    mixes = [s for s in g.shortcuts if g.groups[s.dst].name.endswith("head_mean")]
    assert len(mixes) == 4 and all(np.allclose(s.scale, 0.25) for s in mixes)


def test_edgenext_masks_keep_offpath_dense_and_apply():
    model = _edgenext()
    g = netgraph.from_torch(model, (3, 64, 64))
    check_masks(model, g, (3, 64, 64))


class ConstantBranches(nn.Module):
    """A signal path plus constants computed by a Linear module, by ``F.linear`` / ``F.conv1d`` and
    matrix products on the model's own parameters (also through a transpose), and on a buffer
    (not a weight) and a 1-D parameter (not a weight)."""

    def __init__(self):
        super().__init__()
        self.fc, self.enc = nn.Linear(5, 4), nn.Linear(6, 4)
        self.w, self.wt = nn.Parameter(torch.randn(4, 5)), nn.Parameter(torch.randn(5, 4))
        self.k = nn.Parameter(torch.randn(4, 2, 3))
        self.m, self.mt = nn.Parameter(torch.randn(5, 4)), nn.Parameter(torch.randn(4, 5))
        self.v = nn.Parameter(torch.randn(4))
        self.register_buffer("buf", torch.randn(4, 5))

    def forward(self, x):
        c = torch.ones(1, 5)
        conv = nn.functional.conv1d(torch.ones(1, 2, 3), weight=self.k).flatten(1)
        const = nn.functional.linear(c, self.w) + nn.functional.linear(c, self.wt.t()) + conv
        const = const + c @ self.m + torch.matmul(c, self.mt.T) + c @ self.buf.T + self.v * 2
        return self.fc(x) + self.enc(torch.ones(1, 6)) + const


def test_weights_used_only_on_constants_are_offpath_and_dense():
    """Module calls and functional calls on constants: off-path (role "constant"), kept dense; the
    masks count and cover every weight (a bare parameter too) and apply to the model."""
    model = ConstantBranches()
    g = netgraph.from_torch(model, (5,))
    assert [layer.name for layer in g.layers] == ["fc"]
    assert sorted((p["param"], p["role"], p["numel"]) for p in g.offpath) == [
        ("enc.weight", "constant", 24), ("k", "constant", 24), ("m", "constant", 20), ("mt", "constant", 20),
        ("w", "constant", 20), ("wt", "constant", 20)]
    ms = sparsify(g, "synflow", 0.9, seed=0)
    assert ms.num_total == 20 + 24 + 24 + 4 * 20 and ms.num_kept == round(0.9 * ms.num_total)
    assert all(bool(ms[p["param"]].all()) for p in g.offpath)
    ms.apply(model)
    assert torch.isfinite(model.eval()(torch.randn(2, 5))).all()


# -- CaiT: talking heads, class attention, the final [cls, x] norm ---------------------------------

class TalkingHeadsUniform(nn.Module):
    """Talking heads at uniform probabilities: ``proj(t ** p V(x))`` with the row sums
    ``t_h = |sum_g W_w[h, g] + N b_w[h]|`` of the head-mixed probabilities (real weights)."""

    def __init__(self, attn, tokens, p):
        super().__init__()
        self.qkv, self.proj, self.heads, self.p = attn.qkv, attn.proj, attn.num_heads, p
        w, b = attn.proj_w.weight.detach().double(), attn.proj_w.bias.detach().double()
        self.register_buffer("t", (w.sum(1) + tokens * b).abs())

    def forward(self, x):
        b, n, c = x.shape
        v = self.qkv(x)[..., 2 * c:].reshape(b, n, self.heads, -1) * self.t[:, None].to(x.dtype) ** self.p
        return self.proj(v.mean(1, keepdim=True).expand_as(v).reshape(b, n, c))


class ClassAttnUniform(nn.Module):
    """The class token's uniform attention over ``[cls, x]``: ``proj(a ** p V(cls) + b ** p V(x))``,
    ``a = 1 / (N + 1)``, ``b = N / (N + 1)`` (the patch tokens are alike)."""

    def __init__(self, attn, p):
        super().__init__()
        self.v, self.proj, self.p = attn.v, attn.proj, p

    def forward(self, u):
        v = self.v(u)
        n = v.shape[1] - 1
        return self.proj((1 / (n + 1)) ** self.p * v[:, :1] + (n / (n + 1)) ** self.p * v[:, 1:].mean(1, keepdim=True))


def _cait(**kw):
    from timm.models.cait import Cait
    torch.manual_seed(0)
    return randomise(Cait(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, depth_token_only=2,
                           num_classes=5, **kw))


def _cait_linearised(model, tokens):
    def at(p):
        m = copy.deepcopy(model)
        for blk in m.blocks:
            blk.attn = TalkingHeadsUniform(blk.attn, tokens, p)
        for blk in m.blocks_token_only:
            blk.attn = ClassAttnUniform(blk.attn, p)
        return m
    return at


def test_cait_matches_linearised_reference():
    model = _cait()
    g = check_rule(model, _cait_linearised(model, 16), (3, 32, 32))
    assert g.layer("blocks.0.attn.qkv").rows == (32, 48)
    off = {p["param"]: (p["role"], p.get("rows"), p["numel"]) for p in g.offpath}
    assert off["blocks.1.attn.qkv.weight"] == ("attention query/key", (0, 32), 32 * 16)
    assert off["blocks.1.attn.proj_w.weight"] == ("attention head mixing", None, 4)
    assert off["blocks_token_only.1.attn.k.weight"] == ("attention query/key", None, 256)
    assert len(off) == 2 * 3 + 2 * 2
    scores = flows.synflow_scores(g)
    assert np.all(scores["blocks.0.attn.qkv.weight"][:32] == 0)
    # the patch tokens reach the head only through class attention: no shortcut to the output
    head = g.layer("head")
    assert g.groups[head.src].size == 16


def test_cait_masks_keep_offpath_dense_and_apply():
    model = _cait()
    g = netgraph.from_torch(model, (3, 32, 32))
    ms = check_masks(model, g, (3, 32, 32))
    n_off = 2 * (32 * 16 + 2 * 4) + 2 * (2 * 16 * 16)
    assert ms.meta["offpath"] == {"policy": "dense", "weights": n_off, "kept": n_off}


def test_variant_refusals_name_the_module():
    from timm.models.cait import TalkingHeadAttn
    from timm.models.edgenext import CrossCovarianceAttn

    class ChannelsAsTokens(nn.Module):  # attention over (batch, C, H*W): channels taken for tokens
        def __init__(self, attn):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 2, stride=2)
            self.attn = attn
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.attn(self.stem(x).flatten(2)).mean(1))

    for attn, kind in ((TalkingHeadAttn(16, num_heads=2), "TalkingHeadAttn"),
                       (CrossCovarianceAttn(16, 2), "CrossCovarianceAttn")):
        with pytest.raises(netgraph.UnsupportedModelError, match=rf"'attn' \({kind}\): attention on a tensor that is not"):
            netgraph.from_torch(ChannelsAsTokens(attn), (3, 8, 8))


# -- PiT: a class token computed by a Linear, concatenated with the patch tokens -------------------

class MeanTokenStage(nn.Module):
    """PiT's ``Transformer`` stage with ``cat([cls, x])`` replaced by the mean token
    ``a ** p cls + b ** p x`` (``a = 1/(N+1)``, ``b = N/(N+1)``) on every token; the first
    stage's class token is a parameter (a constant): left out, so the mean token is ``x``."""

    def __init__(self, stage, p):
        super().__init__()
        self.pool, self.norm, self.blocks, self.p = stage.pool, stage.norm, stage.blocks, p

    def forward(self, x):
        x, cls = x
        n_cls = cls.shape[1]
        if self.pool is not None:
            x, cls = self.pool(x, cls)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        n = x.shape[1]
        m = x.mean(1, keepdim=True)
        if self.pool is not None:
            m = (1 / (n + 1)) ** self.p * cls + (n / (n + 1)) ** self.p * m
        x = self.blocks(self.norm(m.expand(b, n + n_cls, c)))
        return x[:, n_cls:].transpose(1, 2).reshape(b, c, h, w), x[:, :n_cls]


def _pit():
    from timm.models.pit import PoolingVisionTransformer
    torch.manual_seed(0)
    m = PoolingVisionTransformer(img_size=32, patch_size=4, stride=4, base_dims=(8, 8), depth=(1, 1),
                                 heads=(2, 4), mlp_ratio=2, num_classes=5)
    return _circular(randomise(m))


def _pit_linearised(model):
    def at(p):
        m = copy.deepcopy(model)
        for i, stage in enumerate(m.transformers):
            m.transformers[i] = MeanTokenStage(stage, p)
        return m
    return at


def test_pit_mean_token_matches_linearised_reference():
    model = _pit()
    g = check_rule(model, _pit_linearised(model), (3, 32, 32))
    fc, conv = g.layer("transformers.1.pool.fc"), g.layer("transformers.1.pool.conv")
    assert conv.groups == 16 and conv.weight.shape == (32, 1, 9)
    # the mean token of stage 1 (16 patch tokens): 1/17 from the class token, 16/17 from the patches
    # (the residual stream; the attention reads it after norm1's gamma)
    merged = {(s.src, round(float(s.scale[0]) * 17, 9)) for s in g.shortcuts if s.src in (fc.dst, conv.dst)}
    assert {(fc.dst, 1.0), (conv.dst, 16.0)} <= merged
    assert sorted(p["param"] for p in g.offpath) == ["transformers.0.blocks.0.attn.qkv.weight",
                                                    "transformers.1.blocks.0.attn.qkv.weight"]


def test_pit_masks_keep_offpath_dense_and_apply():
    model = _pit()
    g = netgraph.from_torch(model, (3, 32, 32))
    check_masks(model, g, (3, 32, 32))


def test_mean_token_refuses_other_layouts():
    from netgraph._trace_vit_variants import mean_token
    from netgraph._trace_values import _Term, _Value

    ids = torch.arange(6.0).reshape(1, 3, 2)  # every token of other units, but a unit per position
    v = _Value(n=6, spatial=(3, 2), raw=ids, terms=[_Term(src=1, src_units=np.arange(6), dst_units=np.arange(6))])
    assert mean_token(v).n == 2
    twice = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # unit 0 in both channel positions
    assert mean_token(v.with_(raw=twice, n=2)) is None
    assert mean_token(v.with_(raw=ids.reshape(1, 1, 3, 2))) is None  # not (batch, tokens, channels)


# -- LeViT: LinearNorm, per-head value rows, attention biases, subsampled queries ------------------

class LevitValues(nn.Module):
    """LeViT's ``Attention``/``AttentionDownsample`` with row-stochastic probabilities over alike
    tokens: ``proj(V(x))`` on ``tokens_out`` tokens, ``V`` the per-head value rows of ``qkv``/``kv``."""

    def __init__(self, attn, kv, offset):
        super().__init__()
        setattr(self, kv, getattr(attn, kv))  # the parameter keeps its name
        self.which, self.proj, self.heads, self.offset = kv, attn.proj, attn.num_heads, offset
        self.down = getattr(attn, "stride", 1)

    def forward(self, x):
        b, n, _ = x.shape
        v = getattr(self, self.which)(x).view(b, n, self.heads, -1)[..., self.offset:]
        n_out = (-(-round(n ** 0.5) // self.down)) ** 2  # ceil(side / stride) squared
        v = v.mean(1, keepdim=True).expand(b, n_out, *v.shape[2:])
        return self.proj(v.reshape(b, n_out, -1))


def _levit():
    from timm.models.levit import Levit
    torch.manual_seed(0)
    m = Levit(img_size=64, embed_dim=(16, 24), key_dim=4, depth=(1, 1), num_heads=(2, 3), num_classes=5)
    m = _circular(randomise(m))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d) or isinstance(mod, nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
    return m


def _levit_linearised(model):
    def at(p):
        m = copy.deepcopy(model)
        for name, mod in list(m.named_modules()):
            kind = type(mod).__name__
            if kind in ("Attention", "AttentionDownsample") and type(mod).__module__ == "timm.models.levit":
                kv, off = ("qkv", 2 * mod.key_dim) if kind == "Attention" else ("kv", mod.key_dim)
                parent, last = name.rsplit(".", 1)
                setattr(m.get_submodule(parent), last, LevitValues(mod, kv, off))
        return m
    return at


def test_levit_matches_linearised_reference():
    model = _levit()
    g = check_rule(model, _levit_linearised(model), (3, 64, 64))
    # stage 0 attention: 2 heads of [q 4, k 4, v 8] rows; one value layer per head
    heads = [l for l in g.layers if l.param == "stages.0.blocks.0.attn.qkv.linear.weight"]
    assert [l.rows for l in heads] == [(8, 16), (24, 32)]
    off = [(p["param"], p.get("rows"), p["role"]) for p in g.offpath]
    assert ("stages.0.blocks.0.attn.qkv.linear.weight", (16, 24), "attention query/key") in off
    assert ("stages.0.blocks.0.attn.attention_biases", None, "attention position bias") in off
    assert ("stages.1.downsample.attn_downsample.q.ln.linear.weight", None, "attention query/key") in off
    scores = flows.synflow_scores(g)["stages.0.blocks.0.attn.qkv.linear.weight"]
    assert np.all(scores[:8] == 0) and np.all(scores[8:16] > 0)


def test_levit_masks_keep_offpath_dense_and_apply():
    model = _levit()
    g = netgraph.from_torch(model, (3, 64, 64))
    biases = sum(p["numel"] for p in g.offpath if p["role"] == "attention position bias")
    ms = sparsify(g, "synflow", 0.5, seed=0)
    for p in g.offpath:
        rows = p.get("rows") or (0, p["shape"][0])
        assert bool(ms[p["param"]][rows[0]:rows[1]].all())
    params = dict(model.named_parameters())
    assert ms.num_total == sum(params[n].numel() for n in prunable_parameter_names(model)) + biases
    assert ms.num_kept == round(0.5 * ms.num_total)
    ms.apply(model)
    assert torch.isfinite(model.eval()(torch.randn(2, 3, 64, 64))).all()


SMALL = {"edgenext": (_edgenext, (3, 64, 64)), "cait": (_cait, (3, 32, 32)), "pit": (_pit, (3, 32, 32)),
         "levit": (_levit, (3, 64, 64))}


@pytest.mark.parametrize("method", ["synflow", "magnitude", "snip", "grasp", "phew"])
@pytest.mark.parametrize("name", list(SMALL))
def test_every_sparsifier_masks_the_variants(name, method):
    make, shape = SMALL[name]
    model = make()
    g = netgraph.from_torch(model, shape)
    data = (torch.randn(4, *shape), torch.randint(0, 5, (4,)))
    ms = sparsify(model, method, 0.5, seed=0, input_shape=shape, graph=g,
                  data=data if method in ("snip", "grasp") else None)
    for p in g.offpath:
        rows = p.get("rows") or (0, p["shape"][0])
        assert bool(ms[p["param"]][rows[0]:rows[1]].all())
    if method in ("synflow", "magnitude"):
        assert ms.num_kept == round(0.5 * ms.num_total)
    ms.apply(model)
    assert torch.isfinite(model.eval()(torch.randn(2, *shape))).all()
