"""The command line: models, graph (JSON keys), user models, clean errors."""

import json

import pytest
from click.testing import CliRunner

from analysis.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def _run(*args, ok=True):
        res = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert res.exit_code == 0, res.output
        return res

    return _run


def test_netgraph_alone_prints_the_whole_help(run):
    """`netgraph` without a command prints the help `netgraph --help` prints (not flattened into one
    `Error:` line), with click's status for a missing command."""
    res = run(ok=False)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr == run("--help").stdout
    assert res.stderr.startswith("Usage: ") and "\nCommands:\n" in res.stderr and "  report " in res.stderr


def test_models_lists_the_zoo_with_counts(run):
    rows = json.loads(run("models", "--json").output)
    by = {r["name"]: r for r in rows}
    assert by["vgg19"]["prunable_weights"] == 20_024_000
    assert by["resnet20"]["prunable_weights"] == 270_896
    assert by["resnet18"]["prunable_weights"] == 11_261_632
    assert "resnet18" in run("models").output


def test_models_and_graph_json_give_the_input_shape_as_a_list(run):
    rows = {r["name"]: r for r in json.loads(run("models", "--json").output)}
    assert rows["resnet20"]["input_shape"] == [3, 32, 32] and rows["digits_mlp"]["input_shape"] == [1, 8, 8]
    graph = json.loads(run("graph", "--model", "digits_mlp", "--json").output)
    assert graph["input_shape"] == rows["digits_mlp"]["input_shape"]
    assert all(isinstance(s, int) for r in rows.values() for s in r["input_shape"])
    assert "3x32x32" in run("models").output  # the table keeps C x H x W


@pytest.mark.parametrize("name,conv,linear,weights", [
    ("vgg19", 16, 1, 20_024_000), ("resnet20", 21, 1, 270_896), ("resnet18", 20, 1, 11_261_632),
])
def test_graph_json(run, name, conv, linear, weights):
    out = json.loads(run("graph", "--model", name, "--json").output)
    assert out["prunable_weights"] == weights
    kinds = [l["kind"] for l in out["layers"]]
    assert kinds.count("conv") == conv and kinds.count("linear") == linear
    assert all({"name", "kind", "units"} <= set(l) for l in out["layers"])
    assert out["log10_synflow_R"] > 0 and out["log10_path_kernel_trace"] > 0


def test_graph_user_model(run):
    out = json.loads(run("graph", "--model", "tests.models:tiny_mlp", "--input-shape", "6", "--json").output)
    assert [l["units"] for l in out["layers"]] == [5, 4, 3]
    assert out["prunable_weights"] == 6 * 5 + 5 * 4 + 4 * 3
    text = run("graph", "--model", "tests.models:tiny_mlp", "--input-shape", "6").output
    assert "log10 SynFlow R" in text


def test_unsupported_user_model_is_a_clean_error(run):
    res = run("graph", "--model", "tests.models:lstm_model", "--input-shape", "5,4", ok=False)
    assert res.exit_code == 2
    assert "LSTM" in res.output and "Traceback" not in res.output


def test_unknown_model_is_a_clean_error(run):
    res = run("graph", "--model", "nope", ok=False)
    assert res.exit_code == 2 and "unknown model 'nope'" in res.output


def test_prune_writes_a_mask_file_and_reports(run, tmp_path):
    out = tmp_path / "m.pt"
    res = run("prune", "--model", "resnet20", "--method", "phew", "--density", "0.05", "--seed", "1",
              "--out", str(out), "--quiet")
    assert "phew: kept" in res.output and "density 0.05" in res.output and out.exists()
    import torch

    blob = torch.load(out, weights_only=True)
    assert blob["meta"]["method"] == "phew" and blob["meta"]["model"]["name"] == "resnet20"
    rep = json.loads(run("prune", "--model", "resnet20", "--method", "synflow", "--density", "0.05",
                         "-o", "iterations=10", "--json").output)
    assert rep["kept"] == round(0.05 * 270_896) == rep["target"]
    assert len(rep["layers"]) == 22 and rep["options"]["iterations"] == 10


def test_prune_data_dependent_needs_data(run):
    res = run("prune", "--model", "digits_cnn", "--method", "snip", "--density", "0.1", ok=False)
    assert res.exit_code == 2 and "--data" in res.output
    res = run("prune", "--model", "digits_cnn", "--method", "snip", "--density", "0.1", "--data", "digits")
    assert "scikit-learn digits" in res.output
    res = run("prune", "--model", "resnet20", "--method", "snip", "--density", "0.1", "--data", "random",
              "--data-samples", "8")
    assert "random inputs" in res.output
    res = run("prune", "--model", "resnet20", "--method", "snip", "--density", "0.1", "--data", "digits", ok=False)
    assert res.exit_code == 2 and "digits" in res.output


@pytest.mark.parametrize("args,words", [
    (["--density", "1.5"], "density must be in (0, 1]"),
    (["--density", "0.1", "-o", "bias=nope"], "must be one of"),
    (["--density", "0.1", "-o", "nokey"], "key=value"),
    (["--density", "0.1", "-o", "kernel_conserved=maybe"], "true/false"),
])
def test_prune_bad_input(run, args, words):
    res = run("prune", "--model", "resnet20", "--method", "phew", *args, ok=False)
    assert res.exit_code == 2 and words in res.output


def test_methods_lists_options(run):
    rows = json.loads(run("methods", "--json").output)
    phew = next(r for r in rows if r["method"] == "phew")
    assert "bias='magnitude'" in phew["options"] and phew["data"] == "no"


def test_analyze_saved_mask(run, tmp_path):
    out = tmp_path / "p.pt"
    run("prune", "--model", "resnet20", "--method", "phew", "--density", "0.02", "--out", str(out), "--quiet")
    rep = json.loads(run("analyze", str(out), "--json").output)
    assert rep["method"] == "phew" and rep["summary"]["effective_fraction"] == 1.0
    assert len(rep["layers"]) == 22 and rep["summary"]["bottleneck_width"] > 0
    text = run("analyze", str(out)).output
    assert "active_units" in text and "min_vertex_cut" in text


def test_analyze_errors(run, tmp_path):
    out = tmp_path / "p.pt"
    run("prune", "--model", "resnet20", "--method", "random", "--density", "0.02", "--out", str(out), "--quiet")
    res = run("analyze", str(out), "--model", "vgg11", ok=False)
    assert res.exit_code == 2 and "made for 'resnet20'" in res.output and "does not fit" in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"corrupted \x00\x13 bytes")
    res = run("analyze", str(bad), ok=False)
    assert res.exit_code == 2 and "not a mask file" in res.output
    res = run("analyze", str(tmp_path / "missing.pt"), ok=False)
    assert res.exit_code == 2 and "no such file" in res.output


def test_compare_command(run, tmp_path):
    res = run("compare", "--model", "digits_mlp", "--methods", "phew,phew:bias=uniform,kernel_conserved=true,random",
              "--densities", "0.2,0.05", "--seeds", "1", "--out", str(tmp_path), "--quiet")
    assert "6 runs" in res.output
    assert (tmp_path / "results.csv").exists() and (tmp_path / "widths.svg").exists()
    assert "phew:bias=uniform,kernel_conserved=true" in (tmp_path / "summary.md").read_text()


def test_compare_command_collapse(run, tmp_path):
    """--collapse adds the layer-collapse margins; --force then replaces their files too."""
    args = ["compare", "--model", "digits_mlp", "--methods", "phew,magnitude", "--densities", "0.2", "--seeds", "1",
            "--no-max-flow", "--formats", "png", "--collapse", "--out", str(tmp_path), "--quiet"]
    run(*args)
    rows = (tmp_path / "collapse.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("phew,0,,") and (tmp_path / "collapse_margin.png").exists()
    assert "Layer-collapse margin" in (tmp_path / "summary.md").read_text()
    run(*[a for a in args if a != "--collapse"], "--force")
    assert not (tmp_path / "collapse.csv").exists() and not (tmp_path / "collapse_margin.png").exists()


@pytest.mark.parametrize("args,words", [
    (["--methods", ""], "method list is empty"),
    (["--densities", "0.1,2"], "density must be in (0, 1]"),
    (["--densities", "a,b"], "is not a number"),
    (["--methods", "nope"], "unknown method"),
])
def test_compare_bad_input(run, tmp_path, args, words):
    res = run("compare", "--model", "digits_mlp", "--out", str(tmp_path), "--quiet", *args, ok=False)
    assert res.exit_code == 2 and words in res.output
