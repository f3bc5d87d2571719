"""Library warnings on the command line: one ``Warning:`` line, once per command, from every command
(the sweep's worker processes included)."""

import pytest
from click.testing import CliRunner

from analysis.cli import main

MODEL = ("--model", "tests.netgraph.test_layer_scale:ConvNeXtish", "--input-shape", "3,6,6")
SCALE = "per-channel scale(s) below 0.001 (layer scale"

pytest.importorskip("torchvision")  # (the model's ConvNeXt blocks)


def _warning_lines(text):
    return [line for line in text.splitlines() if SCALE in line]


def _check_once(res):
    lines = _warning_lines(res.output)
    assert len(lines) == 1, res.output
    assert lines[0].startswith("Warning: 2 per-channel scale(s)") and "--layer-scale one" in lines[0]
    assert "UserWarning" not in res.output and ".py:" not in res.output
    return lines[0]


def test_prune_analyze_compare_show_the_layer_scale_warning_once_alike(tmp_path):
    run = CliRunner().invoke
    mask = tmp_path / "m.pt"
    res = run(main, ["prune", *MODEL, "--method", "random", "--density", "0.5", "--out", str(mask), "--quiet"])
    assert res.exit_code == 0, res.output
    line = _check_once(res)
    res = run(main, ["analyze", str(mask)])
    assert res.exit_code == 0 and _check_once(res) == line
    res = run(main, ["compare", *MODEL, "--methods", "random,phew", "--densities", "0.5,0.2", "--seeds", "2",
                     "--no-max-flow", "--formats", "png", "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert _check_once(res) == line  # 8 runs, 2 models built: one line
    res = run(main, ["prune", *MODEL, "--method", "random", "--density", "0.5", "--layer-scale", "one", "--quiet"])
    assert res.exit_code == 0 and not _warning_lines(res.output)


def test_debug_keeps_pythons_form():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(main, ["--debug", "graph", *MODEL])
    assert res.exit_code == 0 and not _warning_lines(res.output)
    assert any(SCALE in str(w.message) for w in caught)  # left to Python (here: recorded)


@pytest.mark.slow
def test_sweep_workers_warnings_are_one_line_once(tmp_path, capfd):
    cfg = tmp_path / "ls.yaml"
    cfg.write_text("name: ls\nmodels: [{name: 'tests.netgraph.test_layer_scale:ConvNeXtish', input_shape: [3, 6, 6]}]\n"
                   "methods: [random]\ndensities: [0.5]\nseeds: 2\nsave_masks: false\n")
    res = CliRunner().invoke(main, ["sweep", str(cfg), "--out", str(tmp_path / "s"), "--workers", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "2 finished, 0 failed" in res.output
    _check_once(res)
    out, err = capfd.readouterr()  # what the worker processes wrote to the terminal
    assert SCALE not in out + err and "UserWarning" not in out + err
