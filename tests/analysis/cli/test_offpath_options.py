"""``--offpath`` and ``--layer-scale``: the choices of the core, exact counts, recorded in the mask file."""

import json

import pytest
import torch
from click.testing import CliRunner

from analysis.cli import main

pytest.importorskip("torchvision")


def _run(*args, ok=True):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_prune_offpath_policies_and_analyze(tmp_path):
    model = ("--model", "tests.netgraph.test_offpath:_mobilenet", "--input-shape", "3,32,32")  # 9 SE gates
    out = tmp_path / "m.pt"
    rep = json.loads(_run("prune", *model, "--method", "magnitude", "--density", "0.1", "--offpath", "magnitude",
                          "--out", str(out), "--json").output)
    assert rep["kept"] == rep["target"] == round(0.1 * rep["total"])
    assert rep["offpath"]["policy"] == "magnitude" and 0 < rep["offpath"]["kept"] < rep["offpath"]["weights"]
    assert torch.load(out, weights_only=True)["meta"]["offpath"]["policy"] == "magnitude"
    assert "magnitude mask of tests.netgraph.test_offpath:_mobilenet" in _run("analyze", str(out)).output
    assert "'dense', 'magnitude'" in _run("prune", *model, "--method", "random", "--density", "0.5",
                                          "--offpath", "sparse", ok=False).output


def test_layer_scale_option():
    model = ("--model", "tests.netgraph.test_layer_scale:ConvNeXtish", "--input-shape", "3,6,6")
    one = json.loads(_run("graph", *model, "--layer-scale", "one", "--json").stdout)
    as_is = json.loads(_run("graph", *model, "--json").stdout)  # (the layer-scale warning: on stderr)
    assert one["log10_synflow_R"] > as_is["log10_synflow_R"] + 1
    assert one["prunable_weights"] == as_is["prunable_weights"]
