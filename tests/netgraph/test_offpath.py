"""Off-path policies ("dense", "magnitude"): exact counts over all conv/linear weights,
magnitude order within each off-path entry, determinism, metadata, masks that apply."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import analysis
import netgraph
from netgraph.errors import InvalidInputError
from netgraph.offpath import OFFPATH_POLICIES, split_counts
from netgraph.sparsifiers import sparsify

torchvision = pytest.importorskip("torchvision")

SHAPE = (3, 32, 32)
_CACHE = {}


def _mobilenet():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.25)  # 9 SE gates


def _vit():
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=16, mlp_dim=32, num_classes=10)
    with torch.no_grad():
        m.heads.head.weight.normal_()  # torchvision zero-initialises the head
    return m


def _swin():
    from torchvision.models import swin_transformer as st_

    torch.manual_seed(0)
    return st_.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                               window_size=[4, 4], num_classes=10)


NETS = {"mobilenet_v3_small": _mobilenet, "vit": _vit, "swin": _swin}


def _net(name):
    if name not in _CACHE:
        model = NETS[name]()
        _CACHE[name] = (model, netgraph.from_torch(model, SHAPE))
    return _CACHE[name]


def _masked_total(model, g):
    """Conv/linear weights, attention input projections and the graph's off-path tables."""
    names = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    names |= {f"{n}.in_proj_weight" for n, m in model.named_modules() if isinstance(m, torch.nn.MultiheadAttention)}
    names |= {p["param"] for p in g.offpath}
    params = dict(model.named_parameters())
    return sum(params[n].numel() for n in names)


def _hamilton(total, sizes):
    """Largest remainders, written independently: quotas with exact fractions."""
    from fractions import Fraction

    s = sum(sizes)
    quotas = [Fraction(total * n, s) for n in sizes]
    base = [int(q) for q in quotas]
    ranked = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - base[i]), i))
    for i in ranked[:total - sum(base)]:
        base[i] += 1
    return base


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000), st.lists(st.integers(1, 500), min_size=1, max_size=8), st.floats(0.001, 1.0))
def test_magnitude_split_is_exact_and_proportional(n, sizes, d):
    total = round(d * (n + sum(sizes)))
    if _hamilton(total, [n, *sizes])[0] < 1:
        with pytest.raises(InvalidInputError):
            split_counts(d, n, sizes, "magnitude")
        return
    layers, off = split_counts(d, n, sizes, "magnitude")
    assert layers + sum(off) == total
    assert [layers, *off] == _hamilton(total, [n, *sizes])
    for k, size in zip([layers, *off], [n, *sizes]):  # every part within one weight of its quota
        assert abs(k - total * size / (n + sum(sizes))) < 1


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("method,opts", [("magnitude", {}), ("random", {}), ("synflow", {"iterations": 5}),
                                         ("phew", {})])
@pytest.mark.parametrize("policy", OFFPATH_POLICIES)
def test_exact_counts_and_masks_apply(net, method, opts, policy):
    model, g = _net(net)
    n_off = sum(p["numel"] for p in g.offpath)
    total = _masked_total(model, g)
    assert g.num_weights + n_off == total  # every weight is a layer weight or off-path, once
    d = 0.45  # above the dense off-path fraction of each net (mobilenet: 0.28, vit: 0.14)
    ms = sparsify(g, method, d, seed=1, offpath=policy, **opts)
    overshoot = ms.meta["details"].get("overshoot", 0) if method == "phew" else 0  # PHEW ends on a whole walk
    assert ms.num_total == total and ms.num_kept == round(d * total) + overshoot
    assert ms.meta["offpath"] == {"policy": policy, "weights": n_off, "kept": ms.meta["offpath"]["kept"]}
    assert ms.meta["target"] == round(d * total)
    expect = split_counts(d, g.num_weights, [p["numel"] for p in g.offpath], policy)[1]
    for p, k in zip(g.offpath, expect):
        rows = p.get("rows") or (0, p["shape"][0])
        m = ms[p["param"]][rows[0]:rows[1]]
        assert int(m.sum()) == k
        if policy == "dense":
            assert bool(m.all())
        else:  # the largest |w| of the entry: every kept one at least as large as every pruned one
            w = g.offpath_weights[p["param"]][rows[0]:rows[1]]
            a = np.abs(w)[m.numpy()]
            b = np.abs(w)[~m.numpy()]
            assert a.size == 0 or b.size == 0 or a.min() >= b.max()
    if method in ("random", "phew"):  # the seeded ones: same seed, same mask
        again = sparsify(g, method, d, seed=1, offpath=policy, **opts)
        assert all(torch.equal(ms[n], again[n]) for n in ms)
    if method == "magnitude":  # once per net and policy: measure, apply, run
        rec = analysis.measure(g, ms, max_flow=False)
        assert (rec["kept"], rec["total"]) == (ms.num_kept, ms.num_total)  # every masked parameter
        assert rec["graph_kept"] == ms.num_kept - ms.meta["offpath"]["kept"]  # the graph's layers
        copy = NETS[net]()
        ms.apply(copy)
        assert torch.isfinite(copy(torch.randn(2, *SHAPE))).all()
        off = [p["param"] for p in g.offpath if "rows" not in p]
        for n in off:  # the pruned off-path weights are zero in the model
            path, _, attr = n.rpartition(".")
            assert torch.equal(getattr(copy.get_submodule(path), attr) != 0, ms[n])


def test_magnitude_policy_prunes_what_dense_cannot():
    model, g = _net("vit")
    frac = sum(p["numel"] for p in g.offpath) / (g.num_weights + sum(p["numel"] for p in g.offpath))
    with pytest.raises(InvalidInputError, match="offpath='magnitude'"):
        sparsify(g, "magnitude", frac / 2, offpath="dense")
    ms = sparsify(g, "magnitude", frac / 2, offpath="magnitude")
    assert ms.num_kept == round(frac / 2 * ms.num_total)
    assert abs(ms.meta["layer_density"] - frac / 2) < 1e-3


def test_an_entry_pruned_entirely_is_said():
    model, g = _net("mobilenet_v3_small")
    sizes = [p["numel"] for p in g.offpath]
    d = 0.2 / min(sizes)  # the smallest entry's quota is 0.2 weights
    _, off = split_counts(d, g.num_weights, sizes, "magnitude")
    assert 0 in off
    with pytest.warns(UserWarning, match="prunes every weight of"):
        sparsify(g, "random", d, offpath="magnitude")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparsify(g, "random", 0.5, offpath="magnitude")


def test_bad_policy_and_graph_without_values():
    model, g = _net("mobilenet_v3_small")
    with pytest.raises(InvalidInputError, match="offpath='sparse' must be one of 'dense', 'magnitude'"):
        sparsify(g, "random", 0.5, offpath="sparse")
    import dataclasses

    bare = dataclasses.replace(g, offpath_weights={})
    with pytest.raises(InvalidInputError, match="needs the values of off-path parameter"):
        sparsify(bare, "random", 0.5, offpath="magnitude")
    assert sparsify(bare, "random", 0.5).meta["offpath"]["policy"] == "dense"


NEW_METHODS = [("expander", {}), ("expander", {"distribution": "erk"}), ("npb", {}),
               ("synflow-schedule", {"iterations": 5}), ("synflow-schedule", {"schedule": "cosine", "iterations": 5,
                                                                              "power": 2}),
               ("phew-layerwise", {}), ("phew-layerwise", {"layer_densities": "uniform"})]


def _new_cases():
    for net in ("vit", "swin"):
        for i, (method, opts) in enumerate(NEW_METHODS):
            policy = OFFPATH_POLICIES[i % 2]  # the policy only changes the count the method is given
            yield pytest.param(net, method, opts, policy, id=f"{net}-{method}-{opts}-{policy}")


@pytest.mark.parametrize("net,method,opts,policy", list(_new_cases()))
def test_newer_methods_on_attention(net, method, opts, policy):
    """The contract of the newer methods on small ViT and Swin: exact counts over every
    weight (off-path included), determinism, PHEW paths, masks apply, measure runs."""
    model, g = _net(net)
    d = 0.3
    ms = sparsify(g, method, d, seed=2, offpath=policy, **opts)
    assert ms.num_kept == round(d * ms.num_total) == ms.meta["target"]
    assert ms.num_total == g.num_weights + sum(p["numel"] for p in g.offpath)
    again = sparsify(g, method, d, seed=2, offpath=policy, **opts)
    assert all(torch.equal(ms[n], again[n]) for n in ms)
    if method == "phew-layerwise":  # every kept layer weight on an input-output path of kept weights
        fl = netgraph.flows.path_flows(g, "count", ms)
        for layer, m in zip(g.layers, g.layer_masks(ms)):
            live = (fl.backward[layer.dst] > 0)[:, None] & layer.gather(fl.forward[layer.src] > 0)
            assert not (m & ~live[:, :, None]).any()
    rec = analysis.measure(g, ms, max_flow=False)
    assert rec["kept"] == ms.num_kept and rec["graph_kept"] == ms.num_kept - ms.meta["offpath"]["kept"]
    copy = NETS[net]()
    ms.apply(copy, how="parametrize")
    assert torch.isfinite(copy(torch.randn(2, *SHAPE))).all()


def test_grasp_through_hardsigmoid_gates():
    """GraSP needs a double backward; torch has none for hardsigmoid (MobileNetV3's SE gates)."""
    model, g = _net("mobilenet_v3_small")
    original = torch.nn.functional.hardsigmoid
    data = (torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 3]))
    ms = sparsify(model, "grasp", 0.45, graph=g, data=data)
    assert ms.num_kept == round(0.45 * ms.num_total)
    assert torch.nn.functional.hardsigmoid is original  # restored
    x = torch.linspace(-4, 4, 17)  # the stand-in has the same values
    torch.testing.assert_close(original(x), torch.clamp(x / 6 + 0.5, 0, 1), rtol=0, atol=1e-7)


def test_magnitude_keeps_every_head_of_a_shared_qkv_parameter():
    """Several off-path entries of one parameter (the query/key rows of each head of
    EfficientFormer's fused qkv) each keep their own count; none is overwritten."""
    timm = pytest.importorskip("timm")
    from timm.models.efficientformer import Attention

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(4, 16)
            self.att = Attention(dim=16, key_dim=4, num_heads=2, attn_ratio=1, resolution=2)
            self.out = torch.nn.Linear(16, 3)

        def forward(self, x):  # (B, 4 features, 4 tokens)
            return self.out(self.att(self.inp(x.transpose(1, 2))).mean(1))

    torch.manual_seed(0)
    model = Net().eval()
    g = netgraph.from_torch(model, (4, 4))
    heads = [e["rows"] for e in g.offpath if e["param"] == "att.qkv.weight"]
    assert len(heads) == 2
    ms = sparsify(g, "magnitude", 0.3, offpath="magnitude", seed=0)
    assert ms.num_kept == ms.meta["target"]
    qkv = ms.masks["att.qkv.weight"] if hasattr(ms, "masks") else ms._masks["att.qkv.weight"]
    per_head = [int(qkv[a:b].sum()) for a, b in heads]
    assert all(0 < k < 128 for k in per_head), per_head
    assert ms.meta["offpath"]["kept"] == sum(per_head) + int(ms._masks["att.attention_biases"].sum())
