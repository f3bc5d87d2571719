"""The topology study on modern architectures: block types, collapse brackets, and a quick
study whose tables are byte-identical across runs."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import netgraph
from analysis.connectivity import connectivity
from analysis.experiments import modern
from analysis.experiments.collapse import collapse_margin, sparsify_density
from netgraph import zoo
from netgraph.masked import as_masked

pytest.importorskip("timm")

TABLES = ("modern_results.csv", "modern_blocks.csv", "modern_collapse.csv", "modern_layers.csv")


class _Block(torch.nn.Module):
    """Stem, depthwise, 1x1 widening, grouped, 1x1 narrowing, then attention and an MLP on tokens."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = torch.nn.Conv2d(8, 16, 1)
        self.grouped = torch.nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.project = torch.nn.Conv2d(16, 8, 1)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc1 = torch.nn.Linear(8, 32)
        self.fc2 = torch.nn.Linear(32, 8)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = self.project(torch.relu(self.grouped(torch.relu(self.pw(self.dw(torch.relu(self.stem(x))))))))
        t = x.flatten(2).transpose(1, 2)
        t = t + self.attn(t, t, t, need_weights=False)[0]
        t = t + self.fc2(torch.relu(self.fc1(t)))
        return self.head(t.mean(1))


def test_layer_types_follow_the_structure():
    g = netgraph.from_torch(_Block(), (3, 6, 6))
    assert dict(zip([layer.name for layer in g.layers], modern.layer_types(g))) == {
        "stem": "stem", "dw": "depthwise conv", "pw": "1x1 conv, widening", "grouped": "grouped conv",
        "project": "1x1 conv, narrowing", "attn": "attention value", "attn.out_proj": "attention proj",
        "fc1": "linear, widening", "fc2": "linear, narrowing", "head": "classifier"}


def test_block_widths_sum_the_layer_widths_of_each_type():
    layers = pd.DataFrame({"model": "m", "type": ["a", "b", "a"]})
    runs = pd.DataFrame([{"model": "m", "method": "x", "target_density": 0.1, "seed": 0,
                          "layer_units": [4, 10, 6], "layer_widths": [4, 0, 1]}])
    b = modern.block_widths(runs, layers).set_index("type")
    assert b.loc["a", ["layers", "units", "active", "narrow", "empty"]].tolist() == [2, 10, 5, 1, 0]
    assert b.loc["a", "width"] == 0.5 and b.loc["a", "min_width"] == pytest.approx(1 / 6)
    assert b.loc["b", ["width", "empty", "narrow"]].tolist() == [0.0, 1, 1]


def test_collapse_starts_from_known_evaluations_and_counts_layer_weights_only():
    _, g = zoo.graph_of("digits_cnn")
    full = collapse_margin(g, "magnitude", rtol=0.05)  # nested masks: one switch
    # known points bracket the switch: no mask is built for them again, the same boundary results
    known = [(full["upper"] * 1.5, True), (full["margin"] / 1.5, False)]
    narrowed = collapse_margin(g, "magnitude", rtol=0.05, known=known)
    assert all(d not in dict(known) for d, _ in narrowed["evaluations"])
    assert len(narrowed["evaluations"]) < len(full["evaluations"])
    assert narrowed["margin"] < full["upper"] and narrowed["upper"] > full["margin"]
    assert sparsify_density(g, 0.01) == 0.01  # no off-path parameters


def test_sparsify_density_inverts_the_off_path_policy():
    g = netgraph.from_torch(_Block(), (3, 6, 6))
    assert g.offpath  # the attention's query/key rows
    d = sparsify_density(g, 0.02)
    ms = netgraph.sparsify(g, "random", d, seed=0)
    kept = connectivity(g, as_masked(g, ms))["kept"]
    assert kept == max(1, round(0.02 * g.num_weights))


def test_quick_study_tables_are_byte_identical(tmp_path):
    from analysis.experiments import reproduce

    a, claimed = reproduce.run_study("modern", quick=True, out_dir=tmp_path / "a")  # the CLI's path
    s = modern.QUICK_MODERN
    assert len(a) == len(s.models) * len(s.methods) * len(s.densities)
    assert claimed and {"claim", "measured", "holds"} <= set(claimed[0])
    want = np.array([max(1, round(0.01 * t)) / t for t in a["graph_total"]])  # densities of the layers
    exact = ~a["method"].str.startswith("phew").to_numpy()  # PHEW's last walk may overshoot a little
    assert np.array_equal(a["graph_density"].to_numpy()[exact], want[exact])
    assert np.allclose(a["graph_density"], want, rtol=0.01)
    assert (a["total"] > a["graph_total"]).all()  # off-path rows kept dense: counted in kept and total
    assert (a["kept"] - a["graph_kept"] == a["total"] - a["graph_total"]).all()
    assert (a["narrow_layers"] >= a["empty_layers"]).all()
    # a second run (without the collapse bisections, which the first run's table fixes) gives the same bytes
    again = dataclasses.replace(s, collapse=False)
    modern.run_modern(again, tmp_path / "b")
    for name in TABLES[:2] + TABLES[3:]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    results = pd.read_csv(tmp_path / "a" / "modern_results.csv")
    assert not {"seconds", "measure_seconds"} & set(results.columns)
    assert "ramanujan_gap_mean" not in results  # skipped metrics are not written as empty columns
    assert "redrawn" in pd.read_csv(tmp_path / "a" / "modern_layers.csv")
    coll = pd.read_csv(tmp_path / "a" / "modern_collapse.csv")
    assert len(coll) == len(s.models) * len(s.methods)
    md = (tmp_path / "a" / "modern.md").read_text()
    assert "## Active width by block type" in md and "attention value" in md and "depthwise conv" in md
    for fig in ("modern_blocks_0p01", "modern_collapse", "modern_widths_test_vit"):
        assert (tmp_path / "a" / f"{fig}.png").exists()


def test_redraw_zero_layers_reinitialises_only_all_zero_layers_seeded():
    def net():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        torch.nn.init.zeros_(m[2].weight)
        return m

    a, b = net(), net()
    kept = a[0].weight.detach().clone()
    assert modern.redraw_zero_layers(a, seed=3) == ["2"] and modern.redraw_zero_layers(b, seed=3) == ["2"]
    assert torch.equal(a[0].weight, kept) and a[2].weight.detach().abs().min() > 0
    assert torch.equal(a[2].weight, b[2].weight)
    assert modern.redraw_zero_layers(a, seed=3) == []


def test_one_study_covers_the_six_models_and_redraws_zero_layers():
    """ViT-B/16 is part of the one study (no second study), whose zero-initialised layers are redrawn."""
    from analysis.experiments import reproduce

    assert "modern-vit" not in reproduce.STUDIES and modern.ModernStudy().redraw_zero
    assert "torchvision:vit_b_16" in modern.MODELS
