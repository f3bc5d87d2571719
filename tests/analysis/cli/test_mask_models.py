"""``analyze`` and ``report`` on mask files of models built in Python (the file records only a class name)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import netgraph
from analysis.cli import main
from analysis.experiments.maskfile import rebuild_args
from analysis.summary import measure
from netgraph import zoo
from netgraph.masked import as_masked


def _run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def python_mask(tmp_path_factory):
    """A mask of digits_cnn with 5 outputs built in Python (not through zoo.build): its file names 'DigitsCNN'."""
    model = zoo.entry("digits_cnn").factory(num_classes=5)
    ms = netgraph.sparsify(model, "random", 0.2, input_shape=(1, 8, 8), seed=0)
    path = tmp_path_factory.mktemp("pymask") / "cnn.pt"
    ms.save(path)
    return path, ms, model


def test_python_model_is_named_by_class_and_the_error_says_what_to_pass(python_mask):
    path, ms, model = python_mask
    assert ms.meta["model"]["name"] == type(model).__name__  # a class name, no seed, no num_classes
    for cmd in (("analyze", str(path)), ("report", str(path), "--out", str(path.parent / "rep"))):
        res = _run(*cmd)
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert "\n" not in line and line.startswith("Error: ")
        assert f"made for {type(model).__name__!r}, a model built in Python" in line
        for opt in ("--model", "--num-classes N", "--input-shape C,H,W (default: the file's 1,8,8)"):
            assert opt in line


def test_the_python_api_names_python_arguments(python_mask, tmp_path):
    """write_report's error names its own arguments, not the CLI's options; num_classes rebuilds."""
    from analysis.experiments.report import write_report
    from netgraph.errors import InvalidInputError

    path, ms, model = python_mask
    with pytest.raises(InvalidInputError) as err:
        write_report(path, tmp_path / "rep")
    line = str(err.value)
    assert "--" not in line and "graph=netgraph.from_torch(your_model, input_shape)" in line
    for arg in ("model='torchvision:NAME'", "num_classes=N", "input_shape=(C, H, W)"):
        assert arg in line
    paths = write_report(path, tmp_path / "rep", model="digits_cnn", num_classes=5, formats=("png",))
    assert "# Mask report: random on digits_cnn" in (tmp_path / "rep" / "report.md").read_text() and paths


def test_num_classes_rebuilds_the_model_and_measures_the_mask(python_mask):
    path, ms, _ = python_mask
    res = _run("analyze", str(path), "--model", "digits_cnn")  # 10 outputs: the fc mask does not fit
    assert res.exit_code == 2 and "does not fit model 'digits_cnn'" in res.output and "--num-classes" in res.output
    res = _run("analyze", str(path), "--model", "digits_cnn", "--num-classes", "5", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["model"] == "digits_cnn" and rep["summary"]["kept"] == ms.num_kept
    # the structural metrics equal those of the mask on the Python model's own graph
    g = netgraph.from_torch(zoo.entry("digits_cnn").factory(num_classes=5), (1, 8, 8))
    own = measure(g, as_masked(g, ms))
    for key in ("kept", "effective", "bottleneck_width", "outputs_connected", "log10_paths"):
        assert rep["summary"][key] == pytest.approx(own[key]), key
    assert [r["kept"] for r in rep["layers"]] == [int(np.asarray(ms[l.param]).sum()) for l in g.layers]
    out = path.parent / "rep_ok"
    res = _run("report", str(path), "--model", "digits_cnn", "--num-classes", "5", "--out", str(out), "--formats", "png")
    assert res.exit_code == 0, res.output
    assert "# Mask report: random on digits_cnn" in (out / "report.md").read_text()


def test_one_definition_of_num_classes():
    helps = {}
    for name in ("analyze", "report", "prune", "graph", "compare"):
        opt = next(p for p in main.commands[name].params if p.name == "num_classes")
        assert opt.opts == ["--num-classes"] and opt.type.min == 1 and opt.default is None
        helps[name] = opt.help
    assert helps["analyze"] == helps["report"] and helps["prune"] == helps["graph"] == helps["compare"]


def test_rebuild_args_keeps_the_files_model_unless_told(tmp_path):
    _, g = zoo.graph_of("digits_mlp", num_classes=4, seed=3)
    ms = netgraph.sparsify(g, "random", 0.3, seed=0)
    spec = {"spec": "digits_mlp", "input_shape": [1, 8, 8], "seed": 3, "num_classes": 4, "layer_scale": "as_is"}
    assert rebuild_args(ms) == spec
    assert rebuild_args(ms, model="digits_mlp", seed=1) == dict(spec, seed=1)
    # another model: its own input shape and classes, the file's seed
    assert rebuild_args(ms, model="digits_cnn") == dict(spec, spec="digits_cnn", input_shape=None, num_classes=None)
    assert rebuild_args(ms, model="digits_cnn", num_classes=4)["num_classes"] == 4


def test_torchvision_resnet18_saved_from_python(tmp_path, monkeypatch):
    """The probe's case, at 32x32: the error line is docs/cli.md's, and the suggested options work."""
    tv = pytest.importorskip("torchvision")
    from .test_docs_examples import doc_examples

    ms = netgraph.sparsify(tv.models.resnet18(num_classes=10), "random", 0.1, input_shape=(3, 32, 32), seed=0)
    monkeypatch.chdir(tmp_path)
    ms.save("tv_resnet18.pt")
    (command, line), = doc_examples("Masks of models built in Python")
    res = _run(*command.split())
    assert res.exit_code == 2 and res.stderr.strip() == line
    res = _run("analyze", "tv_resnet18.pt", "--model", "torchvision:resnet18", "--num-classes", "10", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["summary"]["kept"] == ms.num_kept and rep["summary"]["outputs_connected"] == 10
