"""The command line takes torchvision and timm models."""

import json

import pytest
from click.testing import CliRunner

from analysis.cli import main

pytest.importorskip("torchvision")


def test_cli_graph_takes_a_torchvision_model():
    res = CliRunner().invoke(main, ["graph", "--model", "torchvision:resnet18", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["model"] == "torchvision:resnet18" and out["input_shape"] == [3, 224, 224]
    res = CliRunner().invoke(main, ["graph", "--model", "timm:nosuchnet"])
    assert res.exit_code == 2 and "unknown timm model" in res.output
