"""Densities of masks with off-path parameters: ``kept``/``total``/``achieved_density`` are the
mask set's counts (what a target density refers to), ``graph_*`` the graph's layers only;
and the bottleneck's 0 (a disconnection in a chain, an emptied inner group in a residual net)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netgraph
from analysis.experiments.run import run_one
from analysis.table import measure_masked
from analysis.widths import bottleneck, layer_table
from netgraph.masked import as_masked

COUNTS = ("kept", "total", "achieved_density", "density", "graph_kept", "graph_total", "graph_density",
          "effective", "dead")
SHAPE = (3, 8, 8)


class Gate(nn.Module):
    """Squeeze-and-excitation: both convs are off-path parameters."""

    linearise = "gate"

    def __init__(self, c, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class GatedAttention(nn.Module):
    """Patch conv, SE gate, attention (fused in_proj: query/key rows off-path), MLP, head."""

    def __init__(self, dim=8):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.gate = Gate(dim, 3)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 12), nn.GELU(), nn.Linear(12, dim))
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.gate(self.patch(x)).flatten(2).transpose(1, 2)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        x = x + self.mlp(x)
        return self.head(x.mean(1))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = GatedAttention()
    return model, netgraph.from_torch(model, SHAPE)


def _offpath_counts(g, ms):
    """Kept and total entries of the off-path rows, straight from the mask set."""
    kept = total = 0
    for p in g.offpath:
        m = ms[p["param"]] if p["param"] in ms else torch.ones(p["shape"], dtype=torch.bool)
        r = p.get("rows") or (0, p["shape"][0])
        kept, total = kept + int(m[r[0]:r[1]].sum()), total + m[r[0]:r[1]].numel()
    return kept, total


@pytest.mark.parametrize("offpath", ["dense", "magnitude"])
def test_achieved_density_is_the_mask_sets_and_graph_counts_are_the_layers(net, offpath):
    model, g = net
    assert {p["param"] for p in g.offpath} == {"gate.fc1.weight", "gate.fc2.weight", "attn.in_proj_weight"}
    ms = netgraph.sparsify(model, "phew", 0.3, graph=g, seed=0, offpath=offpath)
    rec = measure_masked(as_masked(g, ms), keys=COUNTS)
    assert (rec["kept"], rec["total"]) == (ms.num_kept, ms.num_total)
    assert rec["achieved_density"] == rec["density"] == ms.achieved_density
    layer_kept = sum(int(m.sum()) for m in g.layer_masks(ms))
    assert (rec["graph_kept"], rec["graph_total"]) == (layer_kept, sum(l.numel for l in g.layers))
    assert rec["graph_density"] == layer_kept / g.num_weights
    assert rec["effective"] + rec["dead"] == rec["graph_kept"]
    off_kept, off_total = _offpath_counts(g, ms)
    assert (rec["kept"] - rec["graph_kept"], rec["total"] - rec["graph_total"]) == (off_kept, off_total)
    assert off_total == sum(p["numel"] for p in g.offpath) > 0
    assert (off_kept == off_total) == (offpath == "dense")  # magnitude prunes the off-path rows too
    assert rec["graph_density"] != rec["achieved_density"]


def test_off_path_parameters_a_mask_does_not_hold_count_as_dense(net):
    model, g = net
    ms = netgraph.sparsify(model, "random", 0.3, graph=g, seed=1, offpath="magnitude")
    off_total = sum(p["numel"] for p in g.offpath)
    rec = measure_masked(as_masked(g, g.layer_masks(ms)), keys=COUNTS)  # per-layer arrays: no off-path mask
    assert rec["kept"] == rec["graph_kept"] + off_total and rec["total"] == g.num_weights + off_total
    layer_only = {p: ms[p] for p in g.param_names}  # the gate convs left out; in_proj's query/key rows in
    rec = measure_masked(as_masked(g, layer_only), keys=COUNTS)
    off_kept = _offpath_counts(g, layer_only)[0]
    assert off_kept < off_total and _offpath_counts(g, ms)[0] < off_kept
    assert rec["kept"] == rec["graph_kept"] + off_kept and rec["total"] == g.num_weights + off_total
    rec = measure_masked(as_masked(g, None), keys=COUNTS)
    assert rec["kept"] == rec["total"] == g.num_weights + off_total and rec["achieved_density"] == 1.0


def test_comparison_rows_report_the_mask_sets_density(net):
    model, _ = net
    res = run_one(model, "phew", 0.3, 0, input_shape=SHAPE, metrics=COUNTS)
    assert res.row["achieved_density"] == res.masks.achieved_density
    assert res.row["achieved_density"] == pytest.approx(0.3, abs=0.01) and res.row["graph_density"] < 0.3


# -- bottleneck ----------------------------------------------------------------------------------

class Residual(nn.Module):
    """in (3) -> h (4) -> [a (5) -> b] + h -> out (2): group a is inside a residual block."""

    def __init__(self):
        super().__init__()
        self.inp, self.a, self.b, self.out = nn.Linear(3, 4), nn.Linear(4, 5), nn.Linear(5, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = F.relu(self.inp(x))
        return self.out(F.relu(h + self.b(F.relu(self.a(h)))))


def test_an_emptied_residual_branch_is_the_bottleneck_while_paths_go_round_it():
    """The bottleneck is the narrowest hidden group; 0 there does not mean disconnected in a
    residual net (the metric's description says so; the shortcut carries the paths)."""
    g = netgraph.from_torch(Residual(), (3,))
    masks = {p: torch.ones(g.layer(p).param_shape, dtype=torch.bool) for p in g.param_names}
    masks["a.weight"][:] = False      # the block's inner group: no active unit, paths go round it
    masks["inp.weight"][:2] = False   # 2 of the 4 units every path crosses
    widths = {r["layer"]: r["active_units"] for r in layer_table(g, masks)}
    assert widths == {"inp": 2, "a": 0, "b": 2, "out": 2}
    assert bottleneck(g, masks) == {"width": 0, "layer": "a", "fraction": 0.0}
    rec = measure_masked(as_masked(g, masks), keys=("connected", "min_vertex_cut", "bottleneck_width"))
    assert (rec["connected"], rec["min_vertex_cut"], rec["bottleneck_width"]) == (True, 2, 0)


def test_in_a_chain_the_bottleneck_is_zero_exactly_when_disconnected_and_bounds_the_cut():
    g = netgraph.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)),
                            (3,))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        masks = [rng.random(l.weight.shape) < rng.uniform(0.05, 0.6) for l in g.layers]
        rec = measure_masked(as_masked(g, masks), keys=("connected", "bottleneck_width", "min_vertex_cut"))
        assert (rec["bottleneck_width"] == 0) == (not rec["connected"])
        assert rec["min_vertex_cut"] <= rec["bottleneck_width"]
        seen.add(rec["connected"])
    assert seen == {True, False}


@pytest.mark.parametrize("emptied, named", [(0, "0"), (1, "2"), (2, "4"), (3, "4")])
def test_a_disconnected_chain_names_the_emptied_layer(emptied, named):
    """Every hidden group is empty once one layer keeps nothing: the name points at that layer
    (the group it writes; the last layer writes the output, so the group it reads)."""
    g = netgraph.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6),
                                          nn.ReLU(), nn.Linear(6, 2)), (3,))
    masks = [np.ones(l.weight.shape, bool) for l in g.layers]
    masks[emptied][:] = False
    assert bottleneck(g, masks)["width"] == 0
    assert bottleneck(g, masks)["layer"] == named
