"""Layer-collapse margin by bisection."""

import netgraph
from analysis.connectivity import connectivity
from analysis.experiments.collapse import collapse_margin, collapse_margins
from netgraph import zoo


def test_margin_brackets_the_switch_and_phew_never_collapses():
    _, g = zoo.graph_of("vgg11")
    r = collapse_margin(g, "magnitude", rtol=0.02)
    assert r["upper"] <= 1.02 * r["margin"]
    for d, want in ((r["margin"], False), (r["upper"], True)):
        assert connectivity(g, netgraph.sparsify(g, "magnitude", d))["connected"] is want
    assert collapse_margin(g, "phew")["margin"] is None
    rows = collapse_margins(g, ["random", ("synflow", {"iterations": 5})], seeds=(0, 1), rtol=0.1)
    assert [(x["method"], x["seed"]) for x in rows] == [("random", 0), ("random", 1), ("synflow", 0), ("synflow", 1)]
    assert all(x["model"] == "vgg11" for x in rows)
    syn = [x for x in rows if x["method"] == "synflow"][0]
    assert syn["margin"] < r["margin"]  # SynFlow stays connected far below magnitude's margin


def test_collapse_margin_figure(tmp_path):
    from analysis import plots

    _, g = zoo.graph_of("digits_cnn")
    rows = collapse_margins(g, ["magnitude", "phew", ("random", {"distribution": "erk"})], seeds=(0, 1), rtol=0.1)
    fig = plots.plot_collapse_margin(rows)
    paths = plots.save(fig, str(tmp_path / "collapse"), formats=("png",))
    assert [p.endswith("collapse.png") for p in paths] == [True]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["magnitude", "phew", "random:distribution=erk"]


def test_compare_reports_collapse_margins(tmp_path):
    import os

    import analysis

    df = analysis.compare("digits_cnn", ["phew", "magnitude", "snip"], [0.1], seeds=1, data="digits", collapse=True,
                          max_flow=False)
    rows = df.attrs["collapse"]
    assert [r["method"] for r in rows] == ["phew", "magnitude"]  # data-dependent methods are skipped
    files = analysis.write_comparison(df, tmp_path, formats=("png",))
    assert {"collapse.csv", "collapse_margin.png"} <= {os.path.basename(f) for f in files}
    text = (tmp_path / "summary.md").read_text()
    assert "Layer-collapse margin" in text and "| digits_cnn | phew | 0 | never |" in text
