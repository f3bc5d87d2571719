"""`netgraph report` (the command module; main.py registers it)."""

import os

import pytest
from click.testing import CliRunner

import netgraph
from analysis.cli import main
from analysis.cli.report_command import report_cmd
from netgraph import export, zoo


def test_report_writes_figures_and_markdown(tmp_path):
    _, g = zoo.graph_of("digits_cnn")
    ms = netgraph.sparsify(g, "expander", 0.2, seed=0)
    for name in ("m.pt", "m.safetensors"):
        export.save(ms, tmp_path / name)
        out = tmp_path / f"rep_{name}"
        res = CliRunner().invoke(report_cmd, [str(tmp_path / name), "--out", str(out), "--formats", "png"])
        assert res.exit_code == 0, res.output
        assert sorted(os.listdir(out)) == ["layer_density.png", "report.md", "spectral_by_layer.png", "widths.png"]
        text = (out / "report.md").read_text()
        assert "ramanujan_gap_mean" in text and "| conv1 |" in text


def test_the_same_report_gives_the_same_bytes(tmp_path):
    """SVG clip-path ids were salted with a random uuid: every report's SVGs differed."""
    _, g = zoo.graph_of("digits_cnn")
    export.save(netgraph.sparsify(g, "phew", 0.2, seed=0), tmp_path / "m.pt")
    for out in ("a", "b"):
        res = CliRunner().invoke(report_cmd, [str(tmp_path / "m.pt"), "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    files = sorted(os.listdir(tmp_path / "a"))
    assert any(f.endswith(".svg") for f in files) and files == sorted(os.listdir(tmp_path / "b"))
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_report_errors(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"nope")
    from analysis.cli import main

    res = CliRunner().invoke(main, ["report", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a mask file" in res.output


def test_report_refuses_a_non_empty_out_unless_force(tmp_path):
    """As `compare`: a non-empty --out is refused (status 2, one line, nothing written) unless --force,
    which replaces the report's files and leaves the others."""
    _, g = zoo.graph_of("digits_mlp")
    mask = tmp_path / "m.pt"
    export.save(netgraph.sparsify(g, "random", 0.3, seed=0), mask)
    res = CliRunner().invoke(main, ["report", str(mask), "--out", str(tmp_path), "--formats", "png"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip() == (f"Error: Invalid value for '--out': {str(tmp_path)!r} is not empty (1 entry, "
                                  "e.g. m.pt); choose a new folder, or pass --force to replace the files a report "
                                  "writes there")
    assert os.listdir(tmp_path) == ["m.pt"]
    (tmp_path / "notes.txt").write_text("mine")
    for fmt in ("svg", "png"):  # a second --force run replaces the first one's files, also those of another format
        res = CliRunner().invoke(main, ["report", str(mask), "--out", str(tmp_path), "--formats", fmt, "--force"])
        assert res.exit_code == 0, res.output
        assert sorted(os.listdir(tmp_path)) == [f"layer_density.{fmt}", "m.pt", "notes.txt", "report.md",
                                                f"spectral_by_layer.{fmt}", f"widths.{fmt}"]


def test_report_formats_is_compares_and_format_still_works(tmp_path):
    """report takes compare's --formats (one definition, its choices); the old --format is a hidden alias."""
    report, compare = main.commands["report"], main.commands["compare"]
    new, = (p for p in report.params if p.opts == ["--formats"])
    old, = (p for p in report.params if p.opts == ["--format"])
    same, = (p for p in compare.params if p.opts == ["--formats"])
    assert (new.help, new.default) == (same.help, same.default) and old.hidden and not new.hidden
    help_text = CliRunner().invoke(main, ["report", "--help"]).output
    assert "--formats" in help_text and "--format " not in help_text and "--force" in help_text
    _, g = zoo.graph_of("digits_mlp")
    export.save(netgraph.sparsify(g, "random", 0.3, seed=0), tmp_path / "m.pt")
    for option, fmt in (("--format", "pdf"), ("--formats", "SVG,png")):
        out = tmp_path / option.strip("-")
        res = CliRunner().invoke(main, ["report", str(tmp_path / "m.pt"), "--out", str(out), option, fmt])
        assert res.exit_code == 0, res.output
        figures = sorted(f for f in os.listdir(out) if f.startswith("widths."))
        assert figures == sorted(f"widths.{f}" for f in fmt.lower().split(","))


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("model,shape", [("tests.analysis.cli.user_models:ok", "1,8,8"), ("resnet20", None)])
def test_report_widths_figure_layout(tmp_path, monkeypatch, model, shape):
    """widths.png: the legend clear of the title and the panel, the title and y label inside the figure."""
    from analysis import plots

    figures, save = {}, plots.save
    monkeypatch.setattr(plots, "save", lambda fig, stem, **kw: figures.setdefault(os.path.basename(stem), fig)
                        and save(fig, stem, **kw))
    mask = tmp_path / "m.pt"
    args = ["--model", model] + (["--input-shape", shape] if shape else [])
    assert CliRunner().invoke(main, ["prune", *args, "--method", "random", "--density", "0.3", "--out", str(mask),
                                     "--quiet"]).exit_code == 0
    res = CliRunner().invoke(main, ["report", str(mask), "--out", str(tmp_path / "r"), "--formats", "png"])
    assert res.exit_code == 0, res.output
    fig = figures["widths"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(150)  # as saved
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # the constrained layout is made when the figure is drawn
    renderer = canvas.get_renderer()
    box = fig.bbox
    title = fig._suptitle.get_window_extent(renderer)
    (legend,) = fig.legends
    legend = legend.get_window_extent(renderer)
    ax = fig.axes[0]
    ylabel = ax.yaxis.label.get_window_extent(renderer)
    for part in (title, legend, ylabel):
        assert box.x0 <= part.x0 and part.x1 <= box.x1 and box.y0 <= part.y0 and part.y1 <= box.y1, (part, box)
    assert not _overlap(legend, title) and not _overlap(legend, ax.get_tightbbox(renderer))
    assert not _overlap(title, ax.title.get_window_extent(renderer))
    assert model in fig._suptitle.get_text().replace("\n", " ")
