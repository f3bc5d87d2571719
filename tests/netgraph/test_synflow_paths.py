"""SynFlow's fast paths give the masks of the straightforward computations (issue 13), and
``level="pixel"`` is the original algorithm (issue 11, item 11). No wall-clock assertion."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph.errors import InvalidInputError
from netgraph.sparsifiers import _flowprune, _flowstep
from tests import models as M
from tests.reference import autograd_synflow_prune

CASES = {
    "mlp": lambda: (M.mlp((12, 9, 7, 4)), (12,)),
    "conv": lambda: (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
    "residual": lambda: (M.randomize_bn(M.Residual1x1()), M.RESIDUAL_INPUT),
}


def _equal(a, b):
    return all(np.array_equal(np.asarray(a[n]), np.asarray(b[n])) for n in b)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method,opts", [("synflow", {}), ("synflow-l2", {}), ("synflow-l2", {"form": "w_grad"})])
def test_compaction_and_sampled_bracket_change_nothing(case, method, opts, monkeypatch):
    """Compacting survivors (CSR flows) at once or never, and a tiny sample for the threshold
    bracket (so that it often misses and the exact fallback runs), give identical masks."""
    torch.manual_seed(1)
    model, shape = CASES[case]()
    g = netgraph.from_torch(model, shape)
    runs = []
    for compact, sample in ((0.0, 1 << 13), (1.01, 1 << 13), (0.5, 4)):
        monkeypatch.setattr(_flowprune, "COMPACT_BELOW", compact)
        monkeypatch.setattr(_flowprune, "RAW_COMPACT_BELOW", compact)
        monkeypatch.setattr(_flowstep, "SAMPLE_SIZE", sample)
        runs.append(netgraph.sparsify(g, method, 0.05, iterations=12, **opts))
    assert _equal(runs[0], runs[1]) and _equal(runs[0], runs[2])
    assert runs[0].num_kept == round(0.05 * g.num_weights)


@pytest.mark.parametrize("side", ["below", "above"])
@pytest.mark.parametrize("widened", ["holds", "misses"])
def test_a_missed_bracket_is_walked_again_on_the_thresholds_side(side, widened, monkeypatch):
    """A sampled bracket that misses the threshold (all of it below or above the scores that
    matter), then a widened one that holds it or misses again (then the unbounded walk): the
    masks of a run whose brackets hold, and one more walk per miss."""
    from netgraph.sparsifiers._synflow_fast import FastLayerState

    torch.manual_seed(1)
    model, shape = CASES["conv"]()
    g = netgraph.from_torch(model, shape)
    want = netgraph.sparsify(g, "synflow", 0.05, iterations=6)
    brackets, walks = [], []

    def wrong(sample, valid, keep_count, widen=1.0):  # below: the smallest scores; above: beyond the largest
        ends = np.sort(sample)[[0, -1]]
        lo, hi = (ends[0] / 8, ends[0] / 4) if side == "below" else (2 * ends[1], 4 * ends[1])
        if widen > 1:  # the widened bracket: around the threshold, or still on the wrong side of it
            lo, hi = _real(sample, valid, keep_count, widen) if widened == "holds" else (lo / 2, hi * 2)
        brackets.append(widen)
        return lo, hi

    def counted(states, cs, lo, hi, form, pool):
        walks.append((lo, hi))
        return _walk_all(states, cs, lo, hi, form, pool)

    _real, _walk_all = _flowstep._bracket, FastLayerState.walk_all
    monkeypatch.setattr(_flowstep, "_bracket", wrong)
    monkeypatch.setattr(FastLayerState, "walk_all", staticmethod(counted))
    got = netgraph.sparsify(g, "synflow", 0.05, iterations=6)
    assert _equal(got, want)
    assert len(walks) == 6 * (2 if widened == "holds" else 3) and brackets.count(_flowstep.WIDER) == 6
    if widened == "misses":
        assert walks[2] == (-np.inf, np.inf)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method,power,form", [("synflow", 1, "abs_grad"), ("synflow-l2", 2, "w_grad")])
def test_pixel_level_is_the_original_algorithm_and_equals_the_graph_without_padding(case, method, power, form):
    torch.manual_seed(2)
    model, shape = CASES[case]()
    opts = {"iterations": 6} if method == "synflow" else {"iterations": 6, "form": form}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pixel = netgraph.sparsify(model, method, 0.1, input_shape=shape, level="pixel", **opts)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    ref = autograd_synflow_prune(model, shape, 0.1, 6, power=power, form=form)
    unit = netgraph.sparsify(model, method, 0.1, input_shape=shape, **opts)
    assert _equal(pixel, ref) and _equal(unit, ref)
    assert pixel.meta["details"]["level"] == "pixel"


def test_pixel_level_sees_zero_padding_and_circular_padding_removes_the_difference():
    from netgraph import flows
    from netgraph.sparsifiers._pixel import pixel_scores

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
                          nn.Flatten(), nn.Linear(3 * 6 * 6, 5))
    g = netgraph.from_torch(model, (2, 6, 6))
    log_r, _ = pixel_scores(model, (2, 6, 6), g.param_names)
    assert flows.log10_synflow_R(g) > log_r / np.log(10) + 0.05  # borders lose paths
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.padding_mode = "circular"
    log_r, scores = pixel_scores(model, (2, 6, 6), g.param_names)
    assert flows.log10_synflow_R(g) == pytest.approx(log_r / np.log(10), rel=1e-9)
    ours = flows.synflow_scores(g)
    for p in g.param_names:
        np.testing.assert_allclose(ours[p], scores[p], rtol=1e-9, atol=1e-300)


def test_pixel_level_needs_the_model_and_checks_the_level():
    model, shape = CASES["mlp"]()
    g = netgraph.from_torch(model, shape)
    with pytest.raises(InvalidInputError, match="pixel"):
        netgraph.sparsify(g, "synflow", 0.1, level="pixel")
    with pytest.raises(InvalidInputError, match="level"):
        netgraph.sparsify(g, "synflow", 0.1, level="voxel")


@pytest.mark.parametrize("density", [0.02, 0.5])
def test_sparse_and_blockwise_aggregates_equal_the_plain_sums(density, monkeypatch):
    """The masked graph's aggregates (bincount over kept indices, or row blocks) equal the
    plain numpy sums over the mask, and so do every metric computed from them."""
    from analysis.summary import measure
    from netgraph import masked

    torch.manual_seed(4)
    model, shape = CASES["residual"]()
    g = netgraph.from_torch(model, shape)
    ms = netgraph.sparsify(g, "random", density, seed=1)
    lm = g.layer_masks(ms)
    plain = {"count": [m.sum(axis=2).astype(float) for m in lm],
             "abs": [(np.abs(l.weight.astype(float)) * m).sum(axis=2) for l, m in zip(g.layers, lm)],
             "square": [(l.weight.astype(float) ** 2 * m).sum(axis=2) for l, m in zip(g.layers, lm)]}
    records = []
    for below in (0.0, 1.1):
        monkeypatch.setattr(masked, "SPARSE_BELOW", below)
        mg = masked.as_masked(g, ms)
        for w, ref in plain.items():
            for a, b in zip(mg.aggregates(w), ref):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)
        records.append(measure(g, mg))
    assert records[0].keys() == records[1].keys()
    for k, v in records[0].items():
        assert v == pytest.approx(records[1][k], rel=1e-9) if isinstance(v, float) else v == records[1][k]


@pytest.mark.parametrize("forward", [True, False])
def test_phew_dense_table_draws_like_the_general_table(forward):
    """The binary-search table of an ungrouped layer draws what the general flat-CDF table draws."""
    from netgraph.sparsifiers._tables import _DenseTable, _fan, _Table

    torch.manual_seed(5)
    model, shape = CASES["mlp"]()
    layer = netgraph.from_torch(model, shape).layers[1]
    bundle = layer.abs_sum.copy()
    bundle[2] = 0.0  # a unit with no usable weight: uniform fallback in both
    bundle[:, 3] = 0.0
    n = layer.n_src if forward else layer.n_dst
    general = _Table(n, [(layer, *_fan(layer, bundle, forward))], authors=False)
    dense = _DenseTable(layer, bundle, forward)
    rng = np.random.default_rng(0)
    units = rng.integers(0, n, 20000)
    r = rng.random(units.size)
    e1, u1 = general.draw(units, r)
    e2, u2 = dense.draw(units, r)
    assert np.array_equal(e1, e2) and np.array_equal(u1, u2)
