"""SynFlow with a custom schedule; PHEW with per-layer densities."""

import pytest
import torch

import netgraph
from netgraph import flows, zoo
from netgraph.errors import InvalidInputError
from netgraph.sparsifiers.constrained import layer_targets, schedule_fractions
from tests import models as M


@pytest.fixture(scope="module")
def r20():
    return zoo.graph_of("resnet20")[1]


def test_exponential_schedule_is_synflow(r20):
    a = netgraph.sparsify(r20, "synflow", 0.05, iterations=10)
    b = netgraph.sparsify(r20, "synflow-schedule", 0.05, schedule="exponential", iterations=10)
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "0.6,0.3,0.1"])
def test_custom_schedules_exact_and_on_paths(r20, schedule):
    ms = netgraph.sparsify(r20, "synflow-schedule", 0.02, schedule=schedule, iterations=8)
    assert ms.num_kept == round(0.02 * r20.num_weights)
    fr = ms.meta["details"]["schedule"]
    assert fr[-1] == 0.02 and all(a >= b for a, b in zip(fr, fr[1:]))


def test_list_schedule_on_a_torch_model():
    torch.manual_seed(0)
    model = M.mlp((12, 9, 7, 4))
    ms = netgraph.sparsify(model, "synflow-schedule", 0.3, input_shape=(12,), schedule="0.8,0.5", iterations=1)
    assert ms.meta["details"]["schedule"] == [0.8, 0.5, 0.3]
    assert ms.num_kept == round(0.3 * sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")))


def test_bad_schedules(r20):
    for bad in ("0.1,0.5", "x", "1.5"):
        with pytest.raises(InvalidInputError, match="schedule"):
            netgraph.sparsify(r20, "synflow-schedule", 0.05, schedule=bad)


@pytest.mark.parametrize("spec", ["erk", "uniform"])
def test_phew_layerwise_respects_layer_budgets_and_paths(r20, spec):
    ms = netgraph.sparsify(r20, "phew-layerwise", 0.05, seed=0, layer_densities=spec)
    want = layer_targets(r20, spec, round(0.05 * r20.num_weights), 0.05)
    got = [int(m.sum()) for m in r20.layer_masks(ms)]
    assert got == want.tolist() and ms.num_kept == round(0.05 * r20.num_weights)
    fl = flows.path_flows(r20, "count", ms)
    on = sum(int((m & ((fl.backward[l.dst] > 0)[:, None] & l.gather(fl.forward[l.src] > 0))[:, :, None]).sum())
             for l, m in zip(r20.layers, r20.layer_masks(ms)))
    off = ms.meta["details"]["off_path_fill"]
    assert on >= ms.num_kept - off  # every weight but the off-path fill lies on an input-output path
    if spec == "erk":
        assert off == 0 and on == ms.num_kept
    again = netgraph.sparsify(r20, "phew-layerwise", 0.05, seed=0, layer_densities=spec)
    assert all(torch.equal(ms[n], again[n]) for n in ms)


def test_phew_layerwise_explicit_list(r20):
    dens = ",".join(["0.5"] + ["0.05"] * (len(r20.layers) - 2) + ["1.0"])
    ms = netgraph.sparsify(r20, "phew-layerwise", 0.05, seed=1, layer_densities=dens)
    got = [int(m.sum()) for m in r20.layer_masks(ms)]
    sizes = [l.numel for l in r20.layers]
    assert got == [max(1, round(float(d) * s)) for d, s in zip(dens.split(","), sizes)]
    with pytest.raises(InvalidInputError, match="one per layer"):
        netgraph.sparsify(r20, "phew-layerwise", 0.05, layer_densities="0.1,0.2")
