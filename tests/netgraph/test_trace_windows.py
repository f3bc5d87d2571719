"""Window attention (timm Swin V1/V2, TinyViT): against autograd on the linearised network.

Windows are folded into the batch dimension and back (a rearrangement of positions, which
are all alike); the window-attention modules are ``proj(V(x))`` per token with off-path
query/key rows and position-bias parameters. The models here have resolutions divisible by
their windows (no padded tokens), so the channel graph must equal the float64 autograd
computation of the network linearised by the documented rules (tests/linearised.py).
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netgraph
from netgraph import flows
from netgraph.sparsifiers import sparsify
from tests.netgraph.test_trace_ops import check_against_reference
from tests.reference import randomise

timm = pytest.importorskip("timm")



def _swin(v2=False):
    from timm.models import swin_transformer as s1, swin_transformer_v2 as s2
    torch.manual_seed(0)
    cls = s2.SwinTransformerV2 if v2 else s1.SwinTransformer
    # 8x8 tokens in windows of 4 (4 windows folded into the batch, the second block shifted),
    # then 4x4 tokens: one window
    return cls(img_size=16, patch_size=2, embed_dim=8, depths=(2, 2), num_heads=(2, 2), window_size=4,
               mlp_ratio=2.0, num_classes=10)


def _tiny_vit():
    from timm.models.tiny_vit import TinyVit
    torch.manual_seed(0)
    # 32x32 input: 8x8 conv stage, then 4x4 tokens in 2x2 windows (4 windows, 2 heads), 2x2
    # tokens = one window of 2, 1x1
    return TinyVit(embed_dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 2),
                   window_sizes=(2, 2, 2, 1), mlp_ratio=2.0, num_classes=10)


def _offpath_numel(model, names) -> int:
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in names)


@pytest.mark.parametrize("v2", [False, True])
def test_timm_swin_matches_linearised_reference(v2):
    model = randomise(_swin(v2))
    g = check_against_reference(model, (3, 16, 16))
    qkv = g.layer("layers.0.blocks.1.attn.qkv")
    assert qkv.rows == (16, 24) and qkv.weight.shape == (8, 8, 1)
    attn = [n for n, m in model.named_modules() if type(m).__name__ == "WindowAttention"]
    assert len(attn) == 4
    qk = [p for p in g.offpath if p["role"] == "attention query/key"]
    assert [(p["param"], p["rows"]) for p in qk] == [
        (f"{a}.qkv.weight", (0, 2 * model.get_submodule(a).qkv.in_features)) for a in attn]
    bias = sorted(p["param"] for p in g.offpath if p["role"] == "attention position bias")
    own = [f"{a}.{n}" for a in attn for n in
           (("cpb_mlp.0.weight", "cpb_mlp.2.weight") if v2 else ("relative_position_bias_table",))]
    assert bias == sorted(own)
    expected = _offpath_numel(model, own) + sum(2 * model.get_submodule(a).qkv.in_features ** 2 for a in attn)
    assert sum(p["numel"] for p in g.offpath) == expected
    scores = flows.synflow_scores(g)
    assert np.all(scores["layers.0.blocks.1.attn.qkv.weight"][:16] == 0)
    assert np.all(scores["layers.0.blocks.1.attn.qkv.weight"][16:] > 0)


def test_tiny_vit_matches_linearised_reference():
    model = randomise(_tiny_vit())
    for m in model.modules():  # all positions alike in the reference too: no zero padding at borders
        if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
            m.padding_mode = "circular"
    g = check_against_reference(model, (3, 32, 32))
    a = model.stages[1].blocks[0].attn  # 2 heads, key_dim 8, val_dim 8: qkv rows [q k v][q k v]
    assert (a.num_heads, a.key_dim, a.val_dim) == (2, 8, 8)
    heads = [g.layer(f"stages.1.blocks.0.attn.qkv.v{h}") for h in range(2)]
    assert [v.rows for v in heads] == [(16, 24), (40, 48)]
    qk = [p["rows"] for p in g.offpath if p["param"] == "stages.1.blocks.0.attn.qkv.weight"]
    assert qk == [(0, 16), (24, 40)]
    bias = [p["param"] for p in g.offpath if p["role"] == "attention position bias"]
    assert bias == [f"stages.{s}.blocks.0.attn.attention_biases" for s in (1, 2, 3)]
    scores = flows.synflow_scores(g)["stages.1.blocks.0.attn.qkv.weight"]
    assert np.all(scores[0:16] == 0) and np.all(scores[24:40] == 0) and np.all(scores[40:48] > 0)


@pytest.mark.parametrize("which, method, density", [("swin", "synflow", 0.5), ("swinv2", "random", 0.9),
                                                    ("tiny_vit", "synflow", 0.5)])
def test_window_models_sparsify_to_the_exact_count_and_masks_apply(which, method, density):
    model, shape = (_tiny_vit(), (3, 32, 32)) if which == "tiny_vit" else (_swin(which == "swinv2"), (3, 16, 16))
    g = netgraph.from_torch(model, shape)
    ms = sparsify(model, method, density, seed=0, input_shape=shape, graph=g)
    assert ms.num_kept == round(density * ms.num_total)
    assert ms.num_total == g.num_weights + sum(p["numel"] for p in g.offpath if "rows" in p) + \
        sum(p["numel"] for p in g.offpath if "rows" not in p and p["param"] in ms)
    for p in g.offpath:
        rows = p.get("rows") or (0, p["shape"][0])
        if p["param"] in ms:
            assert bool(ms[p["param"]][rows[0]:rows[1]].all())
    ms.apply(model)
    params = dict(model.named_parameters())
    for name in ms:
        if name in params:
            assert not bool(params[name][~ms[name]].any())  # pruned weights are zero in the model
    assert torch.isfinite(model.eval()(torch.randn(2, *shape))).all()


class Folded(nn.Module):
    """Patches in windows of 2x2 folded into the batch, a per-token Linear, then ``tail``."""

    def __init__(self, tail):
        super().__init__()
        self.patch = nn.Conv2d(3, 4, 2, stride=2)
        self.fc = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)
        self.act = nn.GELU()
        self.tail = tail

    def forward(self, x):
        x = F.pad(self.patch(x).permute(0, 2, 3, 1), (0, 0, 0, 0, 0, 0))  # (1, 4, 4, 4), no-op pad
        w = x.view(1, 2, 2, 2, 2, 4).transpose(2, 3).reshape(-1, 4, 4)  # (4 windows, 4 tokens, 4)
        w = self.act(self.fc(w))
        if self.tail == "pool":
            return self.head(w.mean(1))  # (4, 6): a sample's windows are never put back
        if self.tail == "output":
            return w
        if self.tail == "mixed":  # a folded tensor plus one that is not, broadcast over the windows
            return self.head((w + self.fc(x).reshape(1, 16, 6)[:, :4]).mean(1))
        x = w.reshape(1, 2, 2, 2, 2, 6).transpose(2, 3).reshape(1, 16, 6)
        return self.head(x.mean(1))


def test_folded_windows_are_per_token_and_refused_where_the_batch_is_needed():
    g = check_against_reference(randomise(Folded("unfold")), (3, 8, 8))
    assert [grp.size for grp in g.groups] == [3, 4, 6, 3]
    with pytest.raises(netgraph.UnsupportedModelError, match="windows are folded"):
        netgraph.from_torch(Folded("pool"), (3, 8, 8))
    with pytest.raises(netgraph.UnsupportedModelError, match="must return a single tensor of shape"):
        netgraph.from_torch(Folded("output"), (3, 8, 8))
    with pytest.raises(netgraph.UnsupportedModelError, match="different foldings"):
        netgraph.from_torch(Folded("mixed"), (3, 8, 8))


def test_pad_of_channels_last_map_is_nothing_and_of_channels_is_refused():
    class Pad(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.channels = channels
            self.fc = nn.Linear(3, 5)
            self.head = nn.Linear(5 + channels, 2)

        def forward(self, x):
            x = self.fc(x.permute(0, 2, 3, 1))
            return self.head(F.pad(x, (0, self.channels, 1, 1, 0, 2)).mean((1, 2)))

    g = netgraph.from_torch(Pad(0), (3, 4, 4))
    assert [grp.size for grp in g.groups] == [3, 5, 2]
    with pytest.raises(netgraph.UnsupportedModelError, match="pads the channel"):
        netgraph.from_torch(Pad(1), (3, 4, 4))


class MobileVit(nn.Module):
    """A stem and one timm ``MobileVitBlock``: 2x2 patches unfolded into the batch (``(B * 4,
    4 patches, C)``), a transformer over them, folded back; 3x3 convs with circular padding."""

    def __init__(self):
        super().__init__()
        from timm.models.mobilevit import MobileVitBlock
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.block = MobileVitBlock(8, 12, transformer_dim=8, transformer_depth=1, patch_size=2, num_heads=2)
        self.head = nn.Linear(12, 5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
                m.padding_mode = "circular"

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def test_mobilevit_unfold_into_the_batch_matches_linearised_reference():
    model = randomise(MobileVit())
    g = check_against_reference(model, (3, 8, 8))
    assert g.layer("block.transformer.0.attn.qkv").rows == (16, 24)
    assert [p["param"] for p in g.offpath] == ["block.transformer.0.attn.qkv.weight"]
