"""Regression tests of the audit's correctness defects (issue 11), one per defect."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import analysis
import netgraph
from netgraph import flows
from tests import models as M


def _deep_chain(depth=60, width=3, scale=1e-3):
    layers = [nn.Linear(width, width, bias=False) for _ in range(depth)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.fill_(scale)
    return model


def test_1_snip_and_grasp_same_seed_same_mask_with_dropout():
    model = M.ConvNoPad()
    g = netgraph.from_torch(model, M.CONV_NOPAD_INPUT)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(16, *M.CONV_NOPAD_INPUT, generator=gen), torch.randint(0, 3, (16,), generator=gen))
    state = torch.random.get_rng_state()
    for method in ("snip", "grasp"):
        a = netgraph.sparsify(model, method, 0.3, seed=5, graph=g, data=data)
        torch.rand(7)  # the caller's own use of the global generator must not matter
        b = netgraph.sparsify(model, method, 0.3, seed=5, graph=g, data=data)
        assert all(torch.equal(a[n], b[n]) for n in a)
    torch.random.set_rng_state(state)
    netgraph.sparsify(model, "snip", 0.3, seed=5, graph=g, data=data)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's random state changed"


def test_3_reachability_is_boolean_not_underflowing_magnitudes():
    # Unit 0 of the last hidden layer is reached by one path, the others by about 9**400
    # paths each: relative to them its path-count flow underflows float64, but it is alive.
    model = _deep_chain(depth=400, width=10)
    g = netgraph.from_torch(model, (10,))
    lm = g.dense_masks()
    for m in lm[:-1]:
        m[0, :, :] = False          # unit 0 of every hidden layer has no input...
        m[0, 0, :] = True           # ...except from unit 0 before it
    fl = flows.path_flows(g, "count", lm)
    assert fl.forward[len(g.groups) - 2][0] == 0.0  # the float flow underflowed
    active = analysis.active_units(g, lm)
    assert active[-2][0], "a unit on a real path was reported dead"
    assert analysis.connectivity(g, lm)["dead"] == 0


def test_5_disconnected_mask_has_no_paths_not_one():
    g = netgraph.from_torch(M.mlp(), (6,))
    lm = g.dense_masks()
    lm[1][:] = False
    rec = analysis.measure(g, lm)
    assert rec["connected"] is False
    assert rec["log10_paths"] == -math.inf
    assert rec["path_entropy"] == -math.inf and rec["log10_effective_paths"] == -math.inf


def test_7_synflow_l2_scores_do_not_overflow_on_a_deep_net():
    model = _deep_chain(depth=200, width=4, scale=20.0)
    g = netgraph.from_torch(model, (4,))
    assert flows.log10_R2(g) > 400  # past float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rel = flows.synflow_l2_scores(g, relative=True)
        logs = flows.synflow_l2_scores(g, log=True)
    assert all(np.isfinite(v).all() for v in rel.values())
    assert all(np.isfinite(v).all() for v in logs.values())
    log_R2 = flows.path_flows(g, "square").log_R
    for name in rel:  # the log form and the relative form are the same scores
        np.testing.assert_allclose(np.exp(logs[name] - log_R2), rel[name], rtol=1e-9)


def test_9_relative_scores_of_a_disconnected_mask_are_zero_without_warnings():
    g = netgraph.from_torch(M.mlp(), (6,))
    lm = g.dense_masks()
    lm[0][:] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = flows.synflow_scores(g, lm, relative=True)
    assert all((v == 0).all() for v in s.values())


def test_10_networkx_keeps_parallel_edges():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)

        def forward(self, x):
            x = self.a(x)
            return self.b(x) + x  # a layer and an identity shortcut between the same groups

    g = netgraph.from_torch(Res(), (3,))
    G = g.to_networkx()
    assert G.number_of_edges() == g.num_edges == 9 + 9 + 3
    assert G.number_of_edges(3, 6) == 2  # hidden unit 0 -> output unit 0: the weight and the shortcut


def test_masks_and_sweep_rows_record_provenance(tmp_path):
    g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    ms = netgraph.sparsify(g, "random", 0.5, seed=0)
    ms.save(tmp_path / "m.pt")
    meta = torch.load(tmp_path / "m.pt", weights_only=True)["meta"]
    prov = meta["provenance"]
    assert prov["library_version"] == netgraph.__version__ and prov["torch"] == torch.__version__
    assert prov["numpy"] == np.__version__ and "command" in prov and "git_commit" in prov


def test_a_mask_saved_from_python_records_a_model_spec_that_rebuilds_the_model(tmp_path):
    model = netgraph.zoo.build("resnet20", seed=3)
    g = netgraph.from_torch(model, (3, 32, 32))
    assert g.model_spec == {"name": "resnet20", "seed": 3, "input_shape": [3, 32, 32]}
    ms = netgraph.sparsify(g, "random", 0.1, seed=0)
    ms.save(tmp_path / "m.pt")
    rebuilt = netgraph.zoo.build(netgraph.load_masks(tmp_path / "m.pt").meta["model"])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), rebuilt.parameters()))


class _ReadsInputTwice(nn.Module):
    """Reads its input as channels (a conv) and flattened (a linear layer)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
        self.fc = nn.Linear(2 * 4 * 4, 3)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1)) + self.fc(x.flatten(1))


def test_8_input_read_flattened_and_as_channels_is_exact():
    from tests.reference import autograd_flow

    torch.manual_seed(0)
    model = _ReadsInputTwice()
    g = netgraph.from_torch(model, (2, 4, 4))
    R, _, _ = autograd_flow(model, (2, 4, 4))
    assert flows.log10_synflow_R(g) == pytest.approx(math.log10(float(R)), rel=1e-12)


def test_6_synflow_below_the_shortest_path_refuses_with_the_smallest_feasible_density():
    g = netgraph.from_torch(M.mlp(), (6,))  # 3 layers: a path needs 3 weights
    with pytest.raises(netgraph.InvalidInputError) as info:
        netgraph.sparsify(g, "synflow", 2 / g.num_weights, seed=0)
    msg = str(info.value)
    assert "shortest input-output path" in msg and f"{3 / g.num_weights:.3g}" in msg and "\n" not in msg
    ms = netgraph.sparsify(g, "synflow", 3 / g.num_weights, seed=0)  # the smallest feasible density works
    assert ms.num_kept == 3 and analysis.measure(g, ms)["connected"]


def test_4_phew_inverse_is_the_papers_two_stage_rule():
    """Kernel chosen with probability 1 / (its L1 norm), then a tap with 1 / |w|; the old
    rule (1 / |w| summed over the kernel) is the separate 'inverse_element'."""
    from netgraph.sparsifiers.phew import WalkGraph, _bundle_totals, element_weights

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(5 * 4 * 4, 2))
    g = netgraph.from_torch(model, (3, 6, 6))
    conv = g.layers[0]
    a = np.abs(conv.weight.astype(np.float64))
    np.testing.assert_allclose(_bundle_totals(conv, "inverse"), 1.0 / a.sum(axis=2))
    np.testing.assert_allclose(_bundle_totals(conv, "inverse_element"), (1.0 / a).sum(axis=2), rtol=1e-6)
    np.testing.assert_allclose(element_weights(conv, "inverse"), 1.0 / a, rtol=1e-6)
    # one forward step from input channel 0: empirical next-channel frequencies follow 1 / L1 norm
    wg = WalkGraph(g, "inverse")
    rng = np.random.default_rng(0)
    n = 40000
    ei, nxt = wg.fwd[0].draw(np.zeros(n, dtype=np.int64), rng.random(n))
    freq = np.bincount(nxt, minlength=5) / n
    p = 1.0 / a.sum(axis=2)[:, 0]
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.01)
    old = (1.0 / a).sum(axis=2)[:, 0]
    assert np.abs(old / old.sum() - p / p.sum()).sum() > 0.02  # the two rules are distinguishable here
    for bias in ("inverse", "inverse_element"):
        ms = netgraph.sparsify(g, "phew", 0.2, seed=0, bias=bias)
        assert analysis.measure(g, ms)["effective_fraction"] == 1.0
