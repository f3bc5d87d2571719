"""Bad options and data for the sparsifiers: one clear InvalidInputError each, and the edge
cases that are not errors (PHEW at density 1, schedules ending on the target, integer labels
of any width) give the right masks."""

import math

import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import zoo
from netgraph.errors import InvalidInputError
from netgraph.sparsifiers.constrained import schedule_fractions


@pytest.fixture(scope="module")
def digits():
    return zoo.graph_of("digits_mlp")


def _small(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


# ---- PHEW: max_walks, density 1, densities the walks cannot reach

@pytest.mark.parametrize("bad", [-1, -5])
def test_phew_negative_max_walks_is_refused(digits, bad):
    with pytest.raises(InvalidInputError, match=rf"max_walks of method 'phew' must be 0 .* got {bad}$"):
        netgraph.sparsify(digits[1], "phew", 0.1, max_walks=bad)


@pytest.mark.parametrize("opts", [{}, {"bias": "inverse", "kernel_conserved": True}, {"branch": "authors"}], ids=str)
def test_phew_at_density_one_is_the_dense_mask_without_walks(opts):
    _, g = zoo.graph_of("digits_cnn")
    ms = netgraph.sparsify(g, "phew", 1.0, seed=0, **opts)
    assert ms.num_kept == g.num_weights and all(bool(ms[n].all()) for n in ms)
    assert ms.meta["details"]["walks"] == 0 and ms.meta["details"]["overshoot"] == 0
    grown = netgraph.sparsify(g, "phew", 1.0, seed=0, init_mask=netgraph.sparsify(g, "phew", 0.1, seed=0))
    assert grown.num_kept == g.num_weights


def test_phew_reaches_densities_that_need_many_walks(digits):
    """digits_mlp has no zero weight; at 0.99 the last weights are drawn about once in 10^6
    walks. The automatic stop (formerly after three empty batches, about 3,000 walks) now
    waits as long as all the walks before, and reaches the target on paths."""
    _, g = digits
    ms = netgraph.sparsify(g, "phew", 0.99, seed=0)
    assert 0 <= ms.num_kept - round(0.99 * g.num_weights) < len(g.layers)
    assert ms.meta["details"]["walks"] > 10_000


def test_phew_says_why_it_cannot_reach_a_density():
    """Five exact zeros beside nonzero weights are never drawn under |w|: a target needing
    them fails, naming the walks that found nothing and the zeros; with max_walks, the cap."""
    model = _small()
    with torch.no_grad():
        model[0].weight[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] = 0.0
    g = netgraph.from_torch(model, (6,))
    n = g.num_weights
    with pytest.raises(InvalidInputError, match=r"cannot reach density .* keeps 40 of the 43 weights wanted, and the last "
                                                r"\d+ walks took no new weight: the 5 weights not taken \(5 of them exact zeros\)"):
        netgraph.sparsify(g, "phew", (n - 2) / n, seed=0)
    with pytest.raises(InvalidInputError, match=r"keeps 40 of the 43 .* stopped by max_walks=20000; raise max_walks"):
        netgraph.sparsify(g, "phew", (n - 2) / n, seed=0, max_walks=20_000)
    assert netgraph.sparsify(g, "phew", (n - 5) / n, seed=0).num_kept == n - 5  # every nonzero weight: reachable
    assert netgraph.sparsify(g, "phew", 1.0, seed=0).num_kept == n  # density 1 is the dense network


# ---- SynFlow schedules

@pytest.mark.parametrize("bad,words", [
    ("nan", "schedule entry nan is not a finite number"),
    ("0.5,inf", "schedule entry inf is not a finite number"),
    ("0.05", "schedule entry 0.05 is outside (0.1, 1]"),
    ("-3", "schedule entry -3 is outside (0.1, 1]"),
    ("1.5,0.5", "schedule entry 1.5 is outside (0.1, 1]"),
    ("0.5,0.1,0.1", "schedule entry 0.1 is outside (0.1, 1]"),
    ("0.5,0.5", "must strictly decrease, but 0.5 is followed by 0.5"),
    ("0.3,0.6", "must strictly decrease, but 0.3 is followed by 0.6"),
    ("0.5,,0.2", "schedule must be one of exponential, linear, cosine or densities"),
    ("fast", "got 'fast'"),
])
def test_bad_schedules_are_refused_naming_the_entry(bad, words):
    with pytest.raises(InvalidInputError) as err:
        schedule_fractions(bad, 0.1, 10)
    assert words in str(err.value)
    with pytest.raises(InvalidInputError, match="empty list"):
        schedule_fractions([], 0.1, 10)


def test_schedules_that_are_accepted():
    assert schedule_fractions("0.5,0.2", 0.1, 7) == schedule_fractions("0.5, 0.2, 0.1", 0.1, 7) == [0.5, 0.2, 0.1]
    assert schedule_fractions([1, 0.3], 0.1, 7) == [1.0, 0.3, 0.1]
    assert schedule_fractions("0.1", 0.1, 7) == [0.1]  # one step, on the target


def test_bad_schedule_through_sparsify(digits):
    with pytest.raises(InvalidInputError, match=r"schedule entry 0.05 is outside \(0.1, 1\]"):
        netgraph.sparsify(digits[1], "synflow-schedule", 0.1, schedule="0.05")


# ---- GraSP temperature; SNIP/GraSP labels and dtypes

@pytest.mark.parametrize("t", [0.0, -1.0, math.nan, math.inf])
def test_grasp_temperature_must_be_finite_and_positive(t):
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    with pytest.raises(InvalidInputError, match=r"temperature of method 'grasp' must be a finite number > 0"):
        netgraph.sparsify(_small(), "grasp", 0.5, input_shape=(6,), data=(x, y), temperature=t)


@pytest.mark.parametrize("method", ["snip", "grasp"])
@pytest.mark.parametrize("case,words", [
    ("too-high", r"class indices in \[0, 2\] \(the model has 3 outputs\), got labels from 3 to 5"),
    ("negative", r"class indices in \[0, 2\] .*got labels from -1 to 1"),
    ("float", r"integer class indices .*got float32 labels"),
    ("bool", r"integer class indices .*got bool labels"),
    ("column", r"labels have shape \(8, 1\); the model's outputs \(8, 3\) need labels of shape \(8,\)"),
    ("float64-inputs", r"inputs are float64 but the model's weights are float32"),
    ("half-model", r"inputs are float32 but the model's weights are float16"),
])
def test_bad_data_for_data_dependent_methods(method, case, words):
    model = _small()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    data = {"too-high": (x, y + 3), "negative": (x, y - 1), "float": (x, y.float()), "bool": (x, y.bool()),
            "column": (x, y[:, None]), "float64-inputs": (x.double(), y), "half-model": (x, y)}[case]
    if case == "half-model":
        model = model.half()
    with pytest.raises(InvalidInputError, match=words):
        netgraph.sparsify(model, method, 0.5, input_shape=(6,), data=data)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_integer_labels_of_any_width_give_the_same_mask(method):
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    ref = netgraph.sparsify(_small(), method, 0.5, input_shape=(6,), data=(x, y))
    for dtype in (torch.int32, torch.int16, torch.uint8):
        ms = netgraph.sparsify(_small(), method, 0.5, input_shape=(6,), data=(x, y.to(dtype)))
        assert all(torch.equal(ms[n], ref[n]) for n in ref), dtype


def test_half_model_with_half_inputs_runs():
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    ms = netgraph.sparsify(_small().half(), "snip", 0.5, input_shape=(6,), data=(x.half(), y))
    assert ms.num_kept == round(0.5 * 45)


@pytest.mark.parametrize("method", ["synflow", "synflow-l2"])
def test_synflow_names_the_layer_whose_weights_are_all_zero(method):
    """torchvision initialises ViT's head to zero: no path carries flow, and the error said
    only that 'some layer' might be zero."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    nn.init.zeros_(model[2].weight)
    with pytest.raises(InvalidInputError, match=r"^no input-output path carries flow: every weight of '2.weight' "
                                                r"is zero .*draw them anew before pruning"):
        netgraph.sparsify(model, method, 0.5, input_shape=(4,), seed=0)
