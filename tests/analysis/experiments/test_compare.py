"""Comparison grids: one table, its files, and bad input."""

import pytest

import analysis
import netgraph


def test_compare_table_and_plots(tmp_path):
    df = analysis.compare("digits_cnn", ["phew", "synflow:iterations=10", "random", "snip"], [0.2, 0.05], seeds=2,
                          data="digits")
    assert len(df) == 4 * 2 * 2
    assert set(df["method"]) == {"phew", "synflow:iterations=10", "random", "snip"}
    exact = df[df["base_method"] != "phew"]
    assert (exact["kept"] == (exact["target_density"] * 9872).round()).all()
    assert all(len(w) == 3 for w in df["layer_widths"])
    files = analysis.write_comparison(df, tmp_path, command="netgraph compare ...")
    assert {p.name for p in tmp_path.iterdir()} >= {"results.csv", "summary.md", "widths.png", "widths.svg",
                                                     "paths.png", "path_kernel_trace.svg", "bottleneck.png",
                                                     "effective_density.png"}
    back = analysis.read_results(tmp_path / "results.csv")
    assert back["layer_widths"].tolist() == df["layer_widths"].tolist()
    md = (tmp_path / "summary.md").read_text()
    assert "| phew | 0.2 |" in md and "±" in md
    fig = analysis.plots.plot_metric(df, "log10_paths", "log10 paths", "Paths")
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() == "log10 paths" and "digits_cnn" in ax.get_title()
    assert ax.get_legend() is not None and ax.get_xscale() == "log"
    assert len(files) == 15  # results.csv, provenance.json, summary.md and 6 figures in 2 formats


@pytest.mark.parametrize("kwargs,words", [
    ({"methods": []}, "method list is empty"),
    ({"methods": ["phwe"]}, "unknown method"),
    ({"methods": ["phew:bias"]}, "key=value"),
    ({"densities": [0.1, 1.5]}, "density must be in (0, 1]"),
    ({"densities": []}, "density list is empty"),
    ({"seeds": 0}, "seeds"),
    ({"methods": ["snip"]}, "needs data"),
])
def test_compare_bad_input(kwargs, words):
    args = {"model": "digits_mlp", "methods": ["phew"], "densities": [0.1], "seeds": 1, **kwargs}
    with pytest.raises(netgraph.InvalidInputError) as info:
        analysis.compare(**args)
    assert words in str(info.value)
