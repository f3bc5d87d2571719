"""Property test: on random small architectures and random masks (disconnected ones
included), every metric of the table is finite or explicitly flagged, with no exception and
no warning."""

import math
import warnings

import numpy as np
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings, strategies as st

import analysis
import netgraph

#: Metrics that are -inf exactly when no input-output path survives (flagged by `connected`).
LOG_OF_PATHS = {"log10_paths", "log10_synflow_R", "log10_R2", "log10_path_kernel_trace", "path_entropy",
                "log10_path_norm_1", "log10_path_norm_2", "log10_path_norm_inf",
                "log10_effective_paths"}


class RandomConvNet(nn.Module):
    def __init__(self, channels, kernels, residual, pool, classes):
        super().__init__()
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        c_in = 2
        self.adds = []  # a residual add where the block keeps its width (decided here, not in forward)
        for c, k in zip(channels, kernels):
            self.convs.append(nn.Conv2d(c_in, c, k, padding=k // 2))
            self.bns.append(nn.BatchNorm2d(c))
            self.adds.append(residual and c == c_in)
            c_in = c
        self.pool = pool
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            y = torch.relu(bn(conv(x)))
            x = y + x if self.adds[i] else y
            if self.pool and i == 0:
                x = nn.functional.max_pool2d(x, 2)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


@st.composite
def nets(draw):
    depth = draw(st.integers(1, 4))
    width = draw(st.integers(1, 5))
    channels = [draw(st.sampled_from([width, width + 1])) for _ in range(depth)]
    kernels = [draw(st.sampled_from([1, 3])) for _ in range(depth)]
    return RandomConvNet(channels, kernels, draw(st.booleans()), draw(st.booleans()), draw(st.integers(1, 4)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=nets(), seed=st.integers(0, 2**16), density=st.sampled_from([0.0, 0.02, 0.2, 0.7, 1.0]),
       cut_layer=st.booleans())
def test_every_metric_is_finite_or_flagged(net, seed, density, cut_layer):
    torch.manual_seed(0)  # weights only; the hypothesis seed drives the mask
    g = netgraph.from_torch(net, (2, 6, 6))
    rng = np.random.default_rng(seed)
    masks = [rng.random(layer.weight.shape) < density for layer in g.layers]
    if cut_layer:
        masks[rng.integers(len(masks))][:] = False  # a disconnected mask (unless a shortcut bridges it)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = analysis.measure(g, masks)
        rows = analysis.layer_table(g, masks)
    assert list(rec) == analysis.metric_keys()
    for key, value in rec.items():
        if isinstance(value, float) and math.isnan(value):  # spectral means of no non-empty layer
            assert analysis.table.get_metric(key).family == "spectral" and rec["graph_kept"] == 0, (key, value)
        elif isinstance(value, float) and not math.isfinite(value):
            assert key in LOG_OF_PATHS and value == -math.inf and rec["connected"] is False, (key, value)
    if not rec["connected"]:
        assert rec["log10_paths"] == -math.inf and rec["effective"] == 0 and rec["bottleneck_width"] == 0
    else:
        assert all(math.isfinite(rec[k]) for k in LOG_OF_PATHS)
    assert all(0 <= r["active_units"] <= r["units"] for r in rows)
    assert rec["kept"] == sum(int(m.sum()) for m in masks)
