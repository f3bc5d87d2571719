"""The metric table is the one list of metrics: a new entry reaches every report."""

import json
import os
import re

import pytest
from click.testing import CliRunner

import analysis
import netgraph
from analysis import table
from analysis.cli import main
from analysis.experiments import sweep
from tests import ROOT


@pytest.fixture
def dummy_metric():
    saved = list(table.METRICS)
    yield table.register_metric(table.Metric(
        "dummy_units_per_layer", lambda mg: mg.graph.num_units / len(mg.graph.layers), "units", True,
        "a dummy metric added by a test", "units per layer"))
    table.METRICS[:] = saved


def test_a_new_metric_appears_everywhere(dummy_metric, tmp_path):
    key = dummy_metric.key
    g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    expected = g.num_units / len(g.layers)
    # 1. analyze --json
    ms = netgraph.sparsify(g, "random", 0.2, seed=0)
    ms.save(tmp_path / "m.pt")
    res = CliRunner().invoke(main, ["analyze", str(tmp_path / "m.pt"), "--model", "digits_mlp", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["summary"][key] == pytest.approx(expected)
    # 2. the comparison CSV
    df = analysis.compare("digits_mlp", ["random"], [0.2], seeds=1)
    analysis.write_comparison(df, tmp_path / "cmp", formats=())
    assert analysis.read_results(tmp_path / "cmp" / "results.csv")[key].tolist() == [pytest.approx(expected)]
    # 3. a new sweep database
    out = tmp_path / "sw"
    cfg = sweep.load_config({"name": "d", "models": ["digits_mlp"], "methods": ["random"], "densities": [0.2],
                             "seeds": 1, "save_masks": False})
    db = sweep.connect(str(tmp_path / "new.sqlite"))
    sweep.record(db, sweep.execute(cfg.expand(str(out))[0]))
    cols = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
    (value,) = db.execute(f"SELECT {key} FROM runs").fetchone()
    db.close()
    assert key in cols and value == pytest.approx(expected)
    # 4. the generated docs table
    assert f"| `{key}` | units | higher | a dummy metric added by a test |" in table.markdown()
    # and the plots' axis labels
    assert table.label_of(key) == "units per layer"


def test_docs_metric_table_is_generated_from_the_table():
    with open(os.path.join(ROOT, "docs", "metrics.md"), encoding="utf-8") as f:
        assert f.read() == table.markdown(), "docs/metrics.md is stale: run `netgraph metrics --markdown > docs/metrics.md`"


def test_markdown_rows_have_four_cells_and_one_max_flow_flag():
    rows = [l for l in table.markdown().splitlines() if l.startswith("| `")]
    assert len(rows) == len(table.METRICS)
    for line, m in zip(rows, table.METRICS):
        cells = re.split(r"(?<!\\)\|", line)[1:-1]  # split on pipes not escaped
        assert len(cells) == 4, line
        text = cells[3].strip().replace("\\|", "|")
        assert text == m.description + (" (max flow)" if m.max_flow else "")
        assert "(max flow)" not in m.description
    assert sum(r.endswith("(max flow) |") for r in rows) == sum(m.max_flow for m in table.METRICS) == 2
    assert any("\\|w\\|" in r for r in rows)


def test_every_metric_is_declared_once_and_complete():
    keys = table.metric_keys()
    assert len(keys) == len(set(keys))
    for m in table.METRICS:
        assert m.unit and m.description and m.label and m.higher_is_better in (True, False, None)
    g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    assert list(analysis.measure(g)) == keys


def test_register_metric_rejects_other_things():
    with pytest.raises(netgraph.InvalidInputError, match="Metric"):
        table.register_metric({"key": "x"})


def test_measure_masked_computes_only_the_asked_keys():
    from analysis.table import measure_masked, metric_keys
    from netgraph.errors import InvalidInputError
    from netgraph.masked import as_masked

    g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    mg = as_masked(g, netgraph.sparsify(g, "random", 0.2, seed=0))
    full = measure_masked(mg, max_flow=False)
    part = measure_masked(mg, max_flow=False, keys=("kept", "log10_path_kernel_trace"))
    assert list(part) == metric_keys()
    assert {k for k, v in part.items() if v is not None} == {"kept", "log10_path_kernel_trace"}
    assert part["kept"] == full["kept"] and part["log10_path_kernel_trace"] == full["log10_path_kernel_trace"]
    with pytest.raises(InvalidInputError, match="unknown metric"):
        measure_masked(mg, keys=("kept", "nope"))


def test_metric_families_select_the_studies_columns():
    families = {m.family for m in table.METRICS}
    assert families == {"topology", "path norm", "spectral"}
    topo = table.metric_keys("topology", max_flow=False, aliases=False)
    assert "density" not in topo and "min_vertex_cut" not in topo and "edge_disjoint_paths" not in topo
    assert not set(topo) & set(table.metric_keys("spectral") + table.metric_keys("path norm"))
    assert {"achieved_density", "bottleneck_width", "log10_path_kernel_trace"} <= set(topo)
    for m in table.METRICS:  # an alias names a metric of the same value
        if m.alias_of is not None:
            assert m.compute is table.get_metric(m.alias_of).compute
    from analysis.experiments import modern
    assert list(modern.METRIC_KEYS) == topo
