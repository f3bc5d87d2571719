"""Token mixing (MLP-Mixer, ResMLP, gMLP): each rule against autograd on the network
linearised by it.

The reference is built here from the real timm model, independently of the graph code:
every token-mixing Linear (or token MLP) becomes a fixed factor equal to its tokens-alike
value (the mean over output tokens of ``|W|`` applied to all-ones tokens), ResMLP's
``Affine`` the factor ``alpha``, and gMLP's spatial gating unit ``u`` times the gate read
from the real model on the all-ones input (mean over tokens of ``|proj output|``); then
``tests/linearised.py`` linearises the rest (``|w| ** p``, zero biases, LayerNorm as
``|gamma| ** p``, activations as identity, and every ``factor`` buffer as ``|factor| ** p``).
No zero padding and no class token: tokens are alike, so the channel graph must equal the
reference to 1e-9 relative (R, SynFlow scores, R2, the path-kernel trace, path counts;
dense and under a random mask).
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import flows
from netgraph.sparsifiers import sparsify
from tests.linearised import reference
from tests.reference import assert_matches_linearised, close, random_masks, randomise

mm = pytest.importorskip("timm.models.mlp_mixer")

REL = 1e-9
SHAPE = (3, 32, 32)  # patch 8: 16 tokens


class Hold(nn.Module):
    """``x`` (its first ``take`` channels of the last dimension, if given) times a fixed
    ``factor`` buffer (``tests/linearised.py`` raises it to ``|factor| ** p``)."""

    def __init__(self, factor, take=None):
        super().__init__()
        self.register_buffer("factor", torch.as_tensor(factor, dtype=torch.float64).detach().clone())
        self.take = take

    def forward(self, x):
        return (x if self.take is None else x[..., :self.take]) * self.factor


class HeldResBlock(mm.ResBlock):
    """ResMLP's block with its layer scales as ``Hold`` modules (same parameter names)."""

    def forward(self, x):
        x = x + self.hold1(self.linear_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return x + self.hold2(self.mlp_channels(self.norm2(x)))


def _tokens_alike(linear):
    """The tokens-alike value of a token Linear: mean over output tokens of ``|W| @ 1``."""
    w = linear.weight.detach().double().abs()
    return (w @ torch.ones(w.shape[1], dtype=torch.float64)).mean()


def _randomise(model):
    return randomise(model).eval()


def _mixer(**kw):
    torch.manual_seed(0)
    # 16 tokens and 16 channels: token mixing must be told from channel mixing by dimension, not size
    return mm.MlpMixer(num_classes=5, img_size=32, patch_size=8, num_blocks=2, embed_dim=16,
                       mlp_ratio=(0.5, 2.0), **kw)


def _resmlp():
    torch.manual_seed(0)
    return mm.MlpMixer(num_classes=5, img_size=32, patch_size=8, num_blocks=2, embed_dim=12, mlp_ratio=2,
                       block_layer=mm.ResBlock, norm_layer=mm.Affine)


def _gmlp():
    torch.manual_seed(0)
    return mm.MlpMixer(num_classes=5, img_size=32, patch_size=8, num_blocks=2, embed_dim=12, mlp_ratio=2,
                       block_layer=mm.SpatialGatingBlock, mlp_layer=mm.GatedMlp)


def _held_mixer(model):
    m = copy.deepcopy(model)
    for blk in m.blocks:
        t = blk.mlp_tokens
        blk.mlp_tokens = Hold(_tokens_alike(t.fc1) * _tokens_alike(t.fc2))  # GELU as identity
    return m


def _held_resmlp(model):
    m = copy.deepcopy(model)
    for blk in m.blocks:
        blk.__class__ = HeldResBlock
        blk.hold1, blk.hold2 = Hold(blk.ls1), Hold(blk.ls2)
        blk.linear_tokens = Hold(_tokens_alike(blk.linear_tokens))
        blk.norm1, blk.norm2 = Hold(blk.norm1.alpha), Hold(blk.norm2.alpha)
    m.norm = Hold(m.norm.alpha)
    return m


def _held_gmlp(model):
    """Each spatial gating unit -> ``u * g``, ``g`` the real gate on the all-ones input
    (its ``proj`` output, float64, eval), mean of ``|g|`` over tokens."""
    real = copy.deepcopy(model).double().eval()
    gates, hooks = {}, []
    for i, blk in enumerate(real.blocks):
        def hook(_, __, out, i=i):  # out: (1, channels, tokens)
            gates[i] = out.detach().abs().mean(-1).flatten()
        hooks.append(blk.mlp_channels.gate.proj.register_forward_hook(hook))
    with torch.no_grad():
        real(torch.ones((1, *SHAPE), dtype=torch.float64))
    m = copy.deepcopy(model)
    for i, blk in enumerate(m.blocks):
        blk.mlp_channels.gate = Hold(gates[i], take=gates[i].numel())
    return m


def _check(model, held):
    g = netgraph.from_torch(model, SHAPE)
    assert_matches_linearised(g, held, SHAPE, (None, random_masks(g, 0.7, 1)), REL)
    return g


def test_mixer_token_mlp_matches_linearised_reference():
    model = _randomise(_mixer())
    g = _check(model, _held_mixer(model))
    tok = [p for p in g.offpath if p["role"] == "token mixing"]
    assert [p["param"] for p in tok] == [f"blocks.{i}.mlp_tokens.fc{j}.weight" for i in (0, 1) for j in (1, 2)]
    assert [p["numel"] for p in tok] == [8 * 16] * 4 and len(g.offpath) == 4
    assert not any("mlp_tokens" in layer.param for layer in g.layers)
    assert g.layer("blocks.0.mlp_channels.fc1").weight.shape == (32, 16, 1)  # channel mixing: a layer


def test_resmlp_affine_and_token_linear_match_linearised_reference():
    model = _randomise(_resmlp())
    g = _check(model, _held_resmlp(model))
    assert [(p["param"], p["numel"], p["role"]) for p in g.offpath] == [
        (f"blocks.{i}.linear_tokens.weight", 16 * 16, "token mixing") for i in (0, 1)]


def test_gmlp_spatial_gating_matches_linearised_reference():
    model = _randomise(_gmlp())
    g = _check(model, _held_gmlp(model))
    fc1 = g.layer("blocks.0.mlp_channels.fc1")
    assert fc1.rows == (0, 12) and fc1.param_shape == (24, 12)
    assert [(p["param"], p.get("rows"), p["numel"], p["role"]) for p in g.offpath[:2]] == [
        ("blocks.0.mlp_channels.fc1.weight", (12, 24), 12 * 12, "gate"),
        ("blocks.0.mlp_channels.gate.proj.weight", None, 16 * 16, "gate")]
    assert len(g.offpath) == 4
    scores = flows.synflow_scores(g)["blocks.0.mlp_channels.fc1.weight"]
    assert scores.shape == (24, 12) and np.all(scores[12:] == 0) and np.all(scores[:12] > 0)


def test_token_linear_on_an_image_map_is_told_by_its_last_dimension():
    """A Linear over the width of a (batch, C, H, W) map mixes positions (W == C here)."""

    class WidthMix(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 1)
            self.mix = nn.Linear(6, 4)
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.mix(self.conv(x)).mean((2, 3)))

    model = _randomise(WidthMix())

    class Held(WidthMix):
        def forward(self, x):
            return self.head(self.hold(self.conv(x)).mean((2, 3)))

    held = copy.deepcopy(model)
    held.__class__ = Held
    held.hold = Hold(_tokens_alike(model.mix))
    del held.mix
    g = netgraph.from_torch(model, (3, 5, 6))
    ref = reference(held, (3, 5, 6))
    assert close(10 ** flows.log10_synflow_R(g), ref["R"], REL)
    assert [p["param"] for p in g.offpath] == ["mix.weight"]


def test_addcmul_forms_match_linearised_reference():
    """``addcmul`` with ``value=``, the factor first or second, and the method form."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv1d(3, 4, 1)
            self.alpha = nn.Parameter(torch.randn(4, 1))
            self.beta = nn.Parameter(torch.randn(4, 1))
            self.fc = nn.Conv1d(4, 2, 1)

        def forward(self, x):
            y = torch.addcmul(self.beta, self.stem(x), self.alpha, value=-2.0)
            return self.fc(self.beta.addcmul(self.alpha, y)).mean(-1)

    class Held(Net):
        def forward(self, x):
            return self.fc(self.hold2(self.hold1(self.stem(x)))).mean(-1)

    model = _randomise(Net())
    held = copy.deepcopy(model)
    held.__class__ = Held
    held.hold1, held.hold2 = Hold(-2.0 * model.alpha), Hold(model.alpha)
    g = netgraph.from_torch(model, (3, 5))
    for masks in (None, random_masks(g, 0.7, 1)):
        ref = reference(held, (3, 5), masks)
        assert close(10 ** flows.log10_synflow_R(g, masks), ref["R"], REL)
        assert close(10 ** flows.log10_R2(g, masks), ref["R2"], REL)
        assert close(10 ** flows.log10_num_paths(g, masks), ref["paths"], REL)


@pytest.mark.parametrize("make", [_mixer, _gmlp], ids=["mixer", "gmlp"])
@pytest.mark.parametrize("method", ["synflow", "random", "phew"])
def test_sparsify_hits_the_count_and_the_mask_applies(make, method):
    model = make()
    with torch.no_grad():
        model.head.weight.normal_()  # timm zero-initialises the head: no path would survive
    g = netgraph.from_torch(model, SHAPE)
    ms = sparsify(model, method, 0.4, seed=0, input_shape=SHAPE, graph=g)
    assert ms.num_kept == round(0.4 * ms.num_total)
    assert ms.num_total == sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    for p in g.offpath:  # off-path weights (rows) dense
        lo, hi = p.get("rows") or (0, p["shape"][0])
        assert bool(ms[p["param"]][lo:hi].all())
    ms.apply(model, strict=True)
    assert torch.isfinite(model(torch.randn(2, *SHAPE))).all()


def test_token_rules_refuse_what_they_do_not_know():
    class TwoSignals(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return torch.addcmul(torch.zeros(4), y, y)

    with pytest.raises(netgraph.UnsupportedModelError, match="addcmul of several"):
        netgraph.from_torch(TwoSignals(), (4,))

    seq = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 2))  # (batch, seq, features) input
    with pytest.raises(netgraph.UnsupportedModelError, match="input's dimension 1 is its channels"):
        netgraph.from_torch(seq, (5, 6))

    class Reused(nn.Module):  # the gated tensor also feeds the residual: its gate rows are not off-path
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv1d(3, 6, 1)
            self.fc = nn.Linear(6, 8)
            self.sgu = mm.SpatialGatingUnit(8, 5)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            y = self.fc(self.stem(x).transpose(1, 2))
            return self.head(self.sgu(y) + y[..., :4]).mean(1)

    assert Reused()(torch.ones(1, 3, 5)).shape == (1, 2)
    with pytest.raises(netgraph.UnsupportedModelError, match="used only by the gating unit"):
        netgraph.from_torch(Reused(), (3, 5))
