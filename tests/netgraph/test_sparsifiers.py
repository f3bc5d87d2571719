"""Sparsifiers: exact densities, invariants, agreement with autograd, determinism, errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import MaskSet, flows, zoo
from netgraph.data import digits_prune_batch, random_batch
from netgraph.errors import InvalidInputError, MaskMismatchError
from netgraph.sparsifiers import names
from netgraph.sparsifiers.phew import phew_walks
from tests import models as M
from tests.reference import autograd_synflow_prune

DATA_FREE = [("random", {}), ("random", {"distribution": "global"}), ("random", {"distribution": "erk"}),
             ("magnitude", {}), ("synflow", {"iterations": 20}), ("synflow-l2", {"iterations": 20}),
             ("synflow-l2", {"iterations": 20, "form": "w_grad"})]


@pytest.fixture(scope="module")
def r20():
    model = zoo.build("resnet20", seed=0)
    return model, netgraph.from_torch(model, (3, 32, 32))


def _on_path_fraction(g, ms):
    """Fraction of kept weights on an input-output path of kept weights (count flows)."""
    fl = flows.path_flows(g, "count", ms)
    kept = on = 0
    for layer, m in zip(g.layers, g.layer_masks(ms)):
        live = (fl.backward[layer.dst] > 0)[:, None] & (fl.forward[layer.src] > 0)[None, :]
        kept += int(m.sum())
        on += int((m & live[:, :, None]).sum())
    return on / kept


def test_registry_names():
    assert {"phew", "synflow", "synflow-l2", "random", "magnitude", "snip", "grasp"} <= set(names())


@pytest.mark.parametrize("method,opts", DATA_FREE, ids=lambda x: str(x))
@pytest.mark.parametrize("density", [0.2, 0.01, 0.001])
def test_exact_density_data_free(r20, method, opts, density):
    _, g = r20
    ms = netgraph.sparsify(g, method, density, seed=0, **opts)
    assert ms.num_kept == round(density * g.num_weights)
    assert ms.meta["target"] == ms.num_kept


@pytest.mark.parametrize("method", ["snip", "grasp"])
@pytest.mark.parametrize("density", [0.1, 0.01])
def test_exact_density_data_dependent(r20, method, density):
    model, g = r20
    data = random_batch((3, 32, 32), 10, n=16, seed=0)
    ms = netgraph.sparsify(model, method, density, seed=0, graph=g, data=data)
    assert ms.num_kept == round(density * g.num_weights)


def test_data_dependent_with_digits_and_a_loader():
    model = zoo.build("digits_cnn")
    x, y = digits_prune_batch((1, 8, 8))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    a = netgraph.sparsify(model, "snip", 0.1, input_shape=(1, 8, 8), data=(x, y))
    b = netgraph.sparsify(model, "snip", 0.1, input_shape=(1, 8, 8), data=loader)
    assert a.num_kept == b.num_kept == round(0.1 * 9872)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    netgraph.sparsify(model, "grasp", 0.1, input_shape=(1, 8, 8), data=loader)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # model untouched


@pytest.mark.parametrize("opts", [{}, {"bias": "uniform"}, {"bias": "inverse"}, {"bias": "square"},
                                  {"kernel_conserved": True}, {"branch": "authors"}], ids=str)
@pytest.mark.parametrize("density", [0.1, 0.01])
def test_phew_keeps_only_weights_on_input_output_paths(r20, opts, density):
    _, g = r20
    ms = netgraph.sparsify(g, "phew", density, seed=1, **opts)
    assert _on_path_fraction(g, ms) == 1.0
    target = round(density * g.num_weights)
    walk_len = len(g.layers) * (9 if opts.get("kernel_conserved") else 1)
    assert target <= ms.num_kept < target + walk_len
    assert ms.meta["details"]["overshoot"] == ms.num_kept - target


def test_phew_on_mlp_and_vgg_style_chain():
    g = netgraph.from_torch(zoo.build("mlp"), (1, 28, 28))
    ms = netgraph.sparsify(g, "phew", 0.02, seed=0)
    assert _on_path_fraction(g, ms) == 1.0
    lm = g.layer_masks(ms)
    assert lm[0].any(axis=(0, 2)).sum() > 100  # forward walks start at many input pixels


def test_random_masks_leave_dead_weights(r20):
    _, g = r20
    ms = netgraph.sparsify(g, "random", 0.01, seed=0)
    assert _on_path_fraction(g, ms) < 0.9


def test_kernel_conserved_keeps_whole_kernels(r20):
    _, g = r20
    ms = netgraph.sparsify(g, "phew", 0.05, seed=0, kernel_conserved=True)
    for layer, m in zip(g.layers, g.layer_masks(ms)):
        per_bundle = m.sum(axis=2)
        assert np.all((per_bundle == 0) | (per_bundle == layer.k))


def test_phew_nested_growth(r20, tmp_path):
    _, g = r20
    small = netgraph.sparsify(g, "phew", 0.01, seed=0)
    big = netgraph.sparsify(g, "phew", 0.05, seed=0, init_mask=small)
    for n in small:
        assert torch.all(big[n] | ~small[n])  # small is a subset of big
    path = tmp_path / "small.pt"
    small.save(path)
    big2 = netgraph.sparsify(g, "phew", 0.05, seed=0, init_mask=str(path))
    assert all(torch.equal(big[n], big2[n]) for n in big)
    assert _on_path_fraction(g, big) == 1.0
    with pytest.raises(InvalidInputError, match="more than the target"):
        netgraph.sparsify(g, "phew", 0.005, seed=0, init_mask=small)
    other = netgraph.sparsify(netgraph.from_torch(zoo.build("mlp"), (1, 28, 28)), "phew", 0.01)
    with pytest.raises(MaskMismatchError, match="init_mask"):
        netgraph.sparsify(g, "phew", 0.05, init_mask=other)


@pytest.mark.parametrize("method,opts", [("phew", {}), ("phew", {"bias": "uniform"}), ("random", {}),
                                         ("random", {"distribution": "erk"}), ("random", {"distribution": "global"})],
                         ids=str)
def test_same_seed_same_mask_different_seed_different_mask(r20, method, opts):
    _, g = r20
    a = netgraph.sparsify(g, method, 0.05, seed=3, **opts)
    b = netgraph.sparsify(g, method, 0.05, seed=3, **opts)
    c = netgraph.sparsify(g, method, 0.05, seed=4, **opts)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


@pytest.mark.parametrize("case", ["mlp", "conv", "residual"])
@pytest.mark.parametrize("method,power,form", [("synflow", 1, "abs_grad"), ("synflow-l2", 2, "abs_grad"),
                                               ("synflow-l2", 2, "w_grad")])
@pytest.mark.parametrize("density", [0.3, 0.05])
def test_synflow_masks_agree_with_autograd_synflow(case, method, power, form, density):
    torch.manual_seed(0)
    model, shape = {"mlp": (M.mlp((12, 9, 7, 4)), (12,)),
                    "conv": (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
                    "residual": (M.randomize_bn(M.Residual1x1()), M.RESIDUAL_INPUT)}[case]
    opts = {"iterations": 10} if method == "synflow" else {"iterations": 10, "form": form}
    ms = netgraph.sparsify(model, method, density, input_shape=shape, **opts)
    ref = autograd_synflow_prune(model, shape, density, 10, power=power, form=form)
    assert all(torch.equal(ms[n], ref[n]) for n in ref)


def test_synflow_avoids_layer_collapse_on_vgg19_at_0_1_percent():
    g = netgraph.from_torch(zoo.build("vgg19"), (3, 32, 32))
    ms = netgraph.sparsify(g, "synflow", 0.001)
    assert ms.num_kept == round(0.001 * g.num_weights)
    assert min(r["kept"] for r in ms.report()) > 0


def test_phew_edge_frequencies_match_weight_probabilities():
    """Forward steps from one unit take weight w with probability |w| / (fan-out sum).

    200,000 walks from input channel 0 of a small conv net; each first-layer element's
    count must lie within 5 standard deviations of its binomial expectation (fixed seed).
    The same for backward steps from output unit 0 through the last layer.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, (2, 3)), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 2, 3))
    g = netgraph.from_torch(model, (2, 4, 4))
    n = 200_000
    for direction, layer, unit in [("forward", g.layers[0], 0), ("backward", g.layers[1], 0)]:
        w, li, idx = phew_walks(g, n, direction, seed=0, start=unit)
        sel = li == layer.index
        counts = np.bincount(idx[sel], minlength=layer.numel).reshape(layer.weight.shape)
        W = np.abs(layer.weight.astype(np.float64))
        p = W[:, unit, :] / W[:, unit, :].sum() if direction == "forward" else W[unit] / W[unit].sum()
        got = counts[:, unit, :] if direction == "forward" else counts[unit]
        z = (got - n * p) / np.sqrt(n * p * (1 - p))
        assert np.abs(z).max() < 5, (direction, np.abs(z).max())
        other = counts.sum() - got.sum()
        assert other == 0  # nothing outside the fan-out (fan-in) of the seed unit


@pytest.mark.parametrize("density", [0, -0.1, 1.5, float("nan"), "0.1", None, True])
def test_density_out_of_range(r20, density):
    _, g = r20
    with pytest.raises(InvalidInputError, match=r"density"):
        netgraph.sparsify(g, "phew", density)


def test_density_one_keeps_everything(r20):
    _, g = r20
    assert netgraph.sparsify(g, "magnitude", 1.0).num_kept == g.num_weights


def test_unknown_method_and_option(r20):
    _, g = r20
    with pytest.raises(InvalidInputError, match=r"unknown method 'phwe'.*phew"):
        netgraph.sparsify(g, "phwe", 0.1)
    with pytest.raises(InvalidInputError, match=r"unknown option.*'biass'.*bias="):
        netgraph.sparsify(g, "phew", 0.1, biass="uniform")
    with pytest.raises(InvalidInputError, match=r"bias='nope'.*must be one of"):
        netgraph.sparsify(g, "phew", 0.1, bias="nope")
    with pytest.raises(InvalidInputError, match="iterations"):
        netgraph.sparsify(g, "synflow", 0.1, iterations=0)


def test_data_dependent_methods_need_data_and_a_model(r20):
    model, g = r20
    with pytest.raises(InvalidInputError, match="data-dependent"):
        netgraph.sparsify(model, "snip", 0.1, graph=g)
    with pytest.raises(InvalidInputError, match="needs the torch model"):
        netgraph.sparsify(g, "grasp", 0.1, data=random_batch((3, 32, 32), 10, 4))
    with pytest.raises(InvalidInputError, match="per sample"):
        netgraph.sparsify(model, "snip", 0.1, graph=g, data=random_batch((3, 16, 16), 10, 4))


def test_nan_and_inf_weights_are_refused():
    for bad in (float("nan"), float("inf")):
        model = M.mlp((4, 3, 2))
        with torch.no_grad():
            model[1].weight[0, 0] = bad
        with pytest.raises(InvalidInputError, match="NaN or infinite"):
            netgraph.sparsify(model, "synflow", 0.5, input_shape=(4,))


def test_model_without_input_shape():
    with pytest.raises(InvalidInputError, match="input_shape is required"):
        netgraph.sparsify(M.mlp((4, 3, 2)), "random", 0.5)


def test_mask_files_from_sparsify_load_into_torch(r20, tmp_path):
    model, g = r20
    ms = netgraph.sparsify(g, "phew", 0.05, seed=2)
    ms.save(tmp_path / "p.pt")
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    assert blob["meta"]["method"] == "phew" and blob["meta"]["seed"] == 2
    assert blob["meta"]["options"]["bias"] == "magnitude"
    assert blob["meta"]["details"]["walks"] > 0
    MaskSet.load(tmp_path / "p.pt").apply(model)
    assert math.isclose(float((model.fc.weight != 0).float().mean()), float(ms["fc.weight"].float().mean()))


def test_phew_max_walks_is_a_hard_cap(r20):
    _, g = r20
    with pytest.raises(InvalidInputError, match="after 5 walks"):
        netgraph.sparsify(g, "phew", 0.05, max_walks=5)
    ms = netgraph.sparsify(g, "phew", 0.0001, max_walks=100)
    assert ms.meta["details"]["walks"] <= 100


def test_synflow_says_which_step_cut_every_path():
    """A schedule that prunes to 0.2% in its first step disconnects the net: the next
    iteration has no flow to score by, and the error names the step and the remedy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 2))
    with pytest.raises(InvalidInputError, match=r"iteration 1 of 2 left no input-output path .*0\.002.*more gradually"):
        netgraph.sparsify(net, "synflow-schedule", 0.001, input_shape=(4,), schedule="0.002,0.001", iterations=2)
