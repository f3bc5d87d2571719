"""Pruning a model masked before (iterative pruning), mixing apply modes, tied and frozen
weights: the probe's cases, each a property of the result."""

import filecmp

import pytest
import torch
from torch import nn

import netgraph
from netgraph import export
from netgraph.errors import InvalidInputError, UnsupportedModelError

SHAPE = (32,)
DATA = (torch.randn(32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 10)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def _revived(new, old) -> int:
    return sum(int((new[k] & ~old[k]).sum()) for k in dict(old.items()))


@pytest.mark.parametrize("how", ["prune", "parametrize"])
@pytest.mark.parametrize("method, opts", [("phew", {}), ("phew", {"bias": "uniform"}),
                                          ("phew", {"kernel_conserved": True}), ("magnitude", {}),
                                          ("synflow", {}), ("synflow-l2", {}), ("snip", {"data": DATA}),
                                          ("grasp", {"data": DATA})])
def test_a_weight_pruned_before_stays_pruned(method, opts, how):
    m = _net()
    old = netgraph.sparsify(m, "random", 0.2, seed=0, input_shape=SHAPE)
    old.apply(m, how=how)
    new = netgraph.sparsify(m, method, 0.08, seed=0, input_shape=SHAPE, **opts)
    assert _revived(new, old) == 0
    assert abs(new.num_kept - round(0.08 * old.num_total)) <= 3  # PHEW may overshoot by a walk


def test_phew_walks_cross_only_nonzero_weights_and_stay_on_paths():
    """A unit whose outgoing weights are all zero is a dead end: no walk through it is kept."""
    from analysis.summary import measure

    m = _net()
    with torch.no_grad():
        m[2].weight[:, :16] = 0  # half of the second layer's inputs lead nowhere
    g = netgraph.from_torch(m, SHAPE)
    ms = netgraph.sparsify(g, "phew", 0.05, seed=0)
    assert not ms["0.weight"][:16].any()  # no kept weight into a dead-end unit
    assert measure(g, ms, max_flow=False)["dead"] == 0


def test_mixed_apply_modes_are_one_clear_line_and_stacked_masks_read_back_and_ed():
    m = _net()
    a = netgraph.sparsify(m, "random", 0.5, seed=0, input_shape=SHAPE)
    b = netgraph.sparsify(m, "random", 0.5, seed=1, input_shape=SHAPE)
    both = sum(int((a[k] & b[k]).sum()) for k in dict(a.items()))
    for first, second, words in (("prune", "parametrize", "pruned already"), ("prune", "multiply", "pruned already"),
                                 ("parametrize", "prune", "parametrized already"),
                                 ("parametrize", "multiply", "parametrized already")):
        m = _net()
        a.apply(m, how=first)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        with pytest.raises(InvalidInputError, match=words):
            b.apply(m, how=second)
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # nothing changed
    for how in ("prune", "parametrize"):
        m = _net()
        a.apply(m, how=how)
        b.apply(m, how=how)
        assert export.masks_from_model(m).num_kept == both
        assert sum(int((m[i].weight != 0).sum()) for i in (0, 2, 4)) == both


def test_multiply_of_a_weight_computed_by_a_parametrization_is_refused():
    m = _net()
    nn.utils.parametrizations.weight_norm(m[0])
    ms = netgraph.sparsify(_net(), "random", 0.5, seed=0, input_shape=SHAPE)
    with pytest.raises(InvalidInputError, match="not a netgraph Mask"):
        ms.apply(m, how="multiply")
    ms.apply(m, how="parametrize")
    assert int((m[0].weight != 0).sum()) == int(ms["0.weight"].sum())


def test_offpath_magnitude_reads_a_masked_models_weights():
    timm = pytest.importorskip("timm")
    m = timm.create_model("test_vit", num_classes=4, img_size=32, pretrained=False)
    shape = (3, 32, 32)
    for how in ("prune", "parametrize"):
        mm = netgraph.masks.copy_model(m)
        a = netgraph.sparsify(mm, "magnitude", 0.5, input_shape=shape, offpath="magnitude")
        a.apply(mm, how=how)
        b = netgraph.sparsify(mm, "magnitude", 0.4, input_shape=shape, offpath="magnitude")
        assert _revived(b, a) == 0 and b.achieved_density == pytest.approx(0.4, abs=1e-4)


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_tied_weights_are_refused_clearly():
    with pytest.raises(UnsupportedModelError, match=r"a\.weight, b\.weight are one parameter \(tied weights\)"):
        netgraph.from_torch(_Tied(), (8,))


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_saliency_methods_take_frozen_weights(method):
    m = _net()
    m[0].requires_grad_(False)
    full = netgraph.sparsify(_net(), method, 0.3, seed=0, input_shape=SHAPE, data=DATA)
    part = netgraph.sparsify(m, method, 0.3, seed=0, input_shape=SHAPE, data=DATA)
    m.requires_grad_(False)
    frozen = netgraph.sparsify(m, method, 0.3, seed=0, input_shape=SHAPE, data=DATA)
    assert all(torch.equal(full[k], part[k]) and torch.equal(full[k], frozen[k]) for k in dict(full.items()))
    assert not any(p.requires_grad for p in m.parameters())  # the caller's model is left as it was


def test_mask_file_bytes_do_not_depend_on_the_name_and_unwritable_paths_are_one_line(tmp_path):
    ms = netgraph.sparsify(_net(), "random", 0.3, seed=0, input_shape=SHAPE)
    ms.save(tmp_path / "a.pt")
    ms.save(tmp_path / "a_much_longer_name.pt")
    assert filecmp.cmp(tmp_path / "a.pt", tmp_path / "a_much_longer_name.pt", shallow=False)
    assert netgraph.load_masks(tmp_path / "a.pt").num_kept == ms.num_kept
    (tmp_path / "file").write_text("x")
    for name in ("m.pt", "m.safetensors"):
        with pytest.raises(InvalidInputError, match="cannot write"):
            export.save(ms, tmp_path / "file" / name)
