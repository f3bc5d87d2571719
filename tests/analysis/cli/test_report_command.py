"""`netgraph report` (the command module; main.py registers it)."""

import os

from click.testing import CliRunner

import netgraph
from analysis.cli.report_command import report_cmd
from netgraph import export, zoo


def test_report_writes_figures_and_markdown(tmp_path):
    _, g = zoo.graph_of("digits_cnn")
    ms = netgraph.sparsify(g, "expander", 0.2, seed=0)
    for name in ("m.pt", "m.safetensors"):
        export.save(ms, tmp_path / name)
        out = tmp_path / f"rep_{name}"
        res = CliRunner().invoke(report_cmd, [str(tmp_path / name), "--out", str(out), "--format", "png"])
        assert res.exit_code == 0, res.output
        assert sorted(os.listdir(out)) == ["layer_density.png", "report.md", "spectral_by_layer.png", "widths.png"]
        text = (out / "report.md").read_text()
        assert "ramanujan_gap_mean" in text and "| conv1 |" in text


def test_report_errors(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"nope")
    from analysis.cli import main

    res = CliRunner().invoke(main, ["report", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a mask file" in res.output
