"""The plots' boundary: a results table is checked once (one clear line for a wrong table,
model or metric), seeds with no path are marked rather than dropped, and ``save`` takes one
format name or several."""

import numpy as np
import pandas as pd
import pytest
from torch import nn

import analysis
from analysis import plots
from netgraph.errors import InvalidInputError


@pytest.fixture(scope="module")
def table():
    net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    nn.init.constant_(net[0].weight, 0.5)
    return analysis.compare(net, ["random", "phew"], [0.15, 0.1], seeds=6, input_shape=(8,), max_flow=False)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_xlabel() for ax in fig.axes]


def test_seeds_with_no_path_are_counted_not_dropped(table):
    paths = table.groupby(["method", "target_density"], sort=False)["log10_paths"]
    infinite = {key: int(np.isinf(v.astype(float)).sum()) for key, v in paths}
    assert any(infinite.values()), "the fixture should disconnect some random seeds"
    texts = _texts(plots.plot_metric(table, "log10_paths"))
    for (method, d), k in infinite.items():
        if k:
            assert f"{k}/6 −∞" in texts
    assert any("seeds infinite (no path)" in t for t in texts)
    # a metric without infinite values has no marks
    assert not any("/6" in t for t in _texts(plots.plot_metric(table, "achieved_density")))


@pytest.mark.parametrize("call, words", [
    (lambda t: plots.plot_metric(t, "log10_path"), "no column 'log10_path' in the table; its metrics: kept"),
    (lambda t: plots.plot_metric(t, "bottleneck_layer"), "'bottleneck_layer' holds names, not numbers"),
    (lambda t: plots.plot_metric(t.iloc[:0], "log10_paths"), "the table has no rows"),
    (lambda t: plots.plot_metric([1, 2], "log10_paths"), "takes a results table"),
    (lambda t: plots.plot_width_profile(t, model="resnet20"), "model 'resnet20' is not in the table; its models"),
    (lambda t: plots.plot_path_norms(t.drop(columns=["log10_path_norm_inf"])), "no column 'log10_path_norm_inf'"),
    (lambda t: plots.plot_metric_grid(t.iloc[:0], "log10_paths"), "the table has no rows"),
    (lambda t: plots.plot_collapse_margin([]), "takes the rows of collapse_margins"),
    (lambda t: plots.plot_width_profile(t.drop(columns=["layer_widths"])), "no layer_widths column"),
])
def test_a_wrong_table_metric_or_model_is_one_clear_line(table, call, words):
    with pytest.raises(InvalidInputError) as err:
        call(table)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_several_models_are_refused_unless_one_is_picked(table):
    other = table.assign(model="other")
    both = pd.concat([table, other], ignore_index=True)
    for fn in (lambda **kw: plots.plot_metric(both, "log10_paths", **kw),
               lambda **kw: plots.plot_width_profile(both, **kw), lambda **kw: plots.plot_path_norms(both, **kw)):
        with pytest.raises(InvalidInputError, match="the table holds 2 .*pass model="):
            fn()
        assert fn(model="other") is not None
    assert len(plots.plot_metric_grid(both, "log10_paths").axes) == 2
    # rows of one label from networks of different widths
    wider = other.assign(model=table["model"].iloc[0], layer_units=[[7, 5, 3]] * len(other))
    with pytest.raises(InvalidInputError, match="different layer widths"):
        plots.plot_width_profile(pd.concat([table, wider], ignore_index=True))


def test_save_takes_one_format_name_or_several(table, tmp_path):
    fig = plots.plot_metric(table, "log10_paths")
    assert plots.save(fig, tmp_path / "a", formats="svg") == [f"{tmp_path / 'a'}.svg"]
    assert len(plots.save(fig, tmp_path / "b", formats=("png", "svg"))) == 2
    with pytest.raises(InvalidInputError, match="formats among png, svg"):
        plots.save(fig, tmp_path / "c", formats=("bmp",))
