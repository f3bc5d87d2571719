"""``netgraph prune`` with bad method options or data: one ``Error:`` line, exit status 2
(and PHEW at density 1: the dense mask, exit 0)."""

import pytest
import torch.nn as nn
from click.testing import CliRunner

from analysis.cli import main

HERE = "tests.analysis.cli.test_sparsifier_options_cli"
PRUNE = ["prune", "--model", "digits_mlp", "--density", "0.1", "--quiet"]


def five_classes():
    """A digits-shaped MLP with 5 outputs: the digits labels (0-9) overflow it."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))


@pytest.mark.parametrize("args,words", [
    (PRUNE + ["--method", "phew", "-o", "max_walks=-5"], ["max_walks of method 'phew' must be 0", "got -5"]),
    (PRUNE + ["--method", "synflow-schedule", "-o", "schedule=0.05"], ["schedule entry 0.05 is outside (0.1, 1]"]),
    (PRUNE + ["--method", "grasp", "--data", "random", "-o", "temperature=0"],
     ["temperature of method 'grasp' must be a finite number > 0", "got 0.0"]),
    (["prune", "--model", f"{HERE}:five_classes", "--input-shape", "1,8,8", "--method", "snip", "--density", "0.1",
      "--data", "digits", "--quiet"], ["class indices in [0, 4] (the model has 5 outputs), got labels from 0 to 9"]),
], ids=["phew-max-walks", "schedule-below-target", "grasp-temperature", "labels-out-of-range"])
def test_bad_option_or_data_is_one_line_exit_2(tmp_path, args, words):
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "m.pt")], catch_exceptions=False)
    assert "Traceback" not in res.output, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert not (tmp_path / "m.pt").exists()


def test_phew_at_density_one_writes_the_dense_mask(tmp_path):
    res = CliRunner().invoke(main, ["prune", "--model", "digits_mlp", "--method", "phew", "--density", "1",
                                    "--out", str(tmp_path / "m.pt")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "kept 6464 of 6464 weights" in res.output


def test_an_option_given_twice_is_a_usage_error():
    """``-o iterations=5 -o iterations=6`` is refused (the last one silently won)."""
    res = CliRunner().invoke(main, PRUNE + ["--method", "synflow", "-o", "iterations=5", "-o", "iterations=6"])
    assert res.exit_code == 2 and "option 'iterations' is given twice" in res.output, res.output


def test_prune_says_when_the_method_keeps_another_count_than_asked():
    """Per-layer densities set the count themselves: the summary's negative overshoot comes with the
    method's note saying why."""
    res = CliRunner().invoke(main, PRUNE + ["--method", "phew-layerwise", "-o", "layer_densities=0.1,0.2,0.3"])
    assert res.exit_code == 0, res.output
    assert "note: per-layer densities keep 916 weights, not the global target 646" in res.output, res.output
