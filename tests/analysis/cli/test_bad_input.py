"""Every user mistake is one clear line: exit status 2 for usage, 1 for runtime, 130 for Ctrl-C, no traceback.

Each case runs the command as a new user would and asserts one ``Error:`` line on
standard error naming what was wrong, the exit status, and no ``Traceback``.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from click.testing import CliRunner

from analysis.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
USER = "tests.analysis.cli.user_models"


def invoke(*args, input=None, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, env=env, catch_exceptions=False)


def assert_one_line(res, status, *words):
    """Exit ``status``; standard error is exactly one ``Error:`` line holding ``words``; no traceback."""
    assert "Traceback" not in res.output, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert res.exit_code == status, (res.exit_code, res.output)


@pytest.fixture
def mask_file(tmp_path):
    path = tmp_path / "m.pt"
    res = invoke("prune", "--model", "digits_mlp", "--method", "random", "--density", "0.2", "--out", path, "--quiet")
    assert res.exit_code == 0, res.output
    return path


@pytest.fixture
def sweep_config(tmp_path):
    def write(text, name="grid.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PRUNE = ["prune", "--model", "digits_mlp", "--method", "phew"]
COMPARE = ["compare", "--model", "digits_mlp", "--methods", "random", "--densities", "0.5", "--seeds", "1", "--quiet"]

# (case id, arguments ({tmp} is a temporary folder), exit status, words of the one line)
CASES = [
    # models and --input-shape
    ("unknown-model", ["graph", "--model", "nope"], 2, ["unknown model 'nope'"]),
    ("model-blank", ["graph", "--model", "  "], 2, ["'--model'", "'  ' names no model", "zoo model, torchvision:NAME"]),
    ("model-empty", PRUNE + ["--model", "", "--density", "0.1"], 2, ["'--model'", "'' names no model"]),
    ("analyze-model-blank", ["analyze", "{tmp}/file.txt", "--model", " "], 2, ["'--model'", "' ' names no model"]),
    ("input-shape-malformed", ["graph", "--model", "digits_mlp", "--input-shape", "3,x"], 2, ["'--input-shape'", "C,H,W", "'3,x'"]),
    ("input-shape-empty-part", ["graph", "--model", "digits_mlp", "--input-shape", "1,,8"], 2, ["'--input-shape'"]),
    ("input-shape-zero", ["graph", "--model", "digits_mlp", "--input-shape", "0,8,8"], 2, ["positive integers"]),
    ("input-shape-wrong", ["graph", "--model", "digits_mlp", "--input-shape", "3,32,32"], 2,
     ["(3, 32, 32) failed", "mat1 and mat2 shapes cannot be multiplied"]),
    ("user-model-no-shape", ["graph", "--model", f"{USER}:ok"], 2, ["needs --input-shape"]),
    ("user-model-no-factory", ["graph", "--model", f"{USER}:missing", "--input-shape", "1,8,8"], 2,
     ["no callable 'missing'"]),
    ("user-model-no-module", ["graph", "--model", "nosuchpkg.nets:make", "--input-shape", "1,8,8"], 2,
     ["cannot import 'nosuchpkg.nets'"]),
    ("user-model-not-module", ["graph", "--model", f"{USER}:not_a_module", "--input-shape", "1,8,8"], 2,
     ["returned a int, not a torch.nn.Module"]),
    ("user-model-raises", ["graph", "--model", f"{USER}:raises", "--input-shape", "1,8,8"], 1,
     ["building model", "RuntimeError: cannot build the net second line"]),
    ("tied-weights", ["graph", "--model", f"{USER}:tied", "--input-shape", "8"], 2,
     ["ties weights (a.weight = b.weight)"]),
    ("unsupported-layer", ["graph", "--model", "tests.models:lstm_model", "--input-shape", "5,4"], 2, ["LSTM"]),
    ("many-blockers", ["graph", "--model", f"{USER}:many_blockers", "--input-shape", "8"], 2,
     ["8 unsupported operations", "[5] ", "and 3 more", "netgraph coverage --sources MODEL"]),
    # seeds
    ("seed-negative", ["graph", "--model", "digits_mlp", "--seed", "-1"], 2, ["'--seed'", "-1", "0<=x<=4294967295"]),
    ("seed-huge", ["graph", "--model", "digits_mlp", "--seed", "4294967296"], 2, ["'--seed'", "4294967296"]),
    ("seed-not-int", ["graph", "--model", "digits_mlp", "--seed", "abc"], 2, ["'--seed'", "not a valid integer"]),
    ("init-seed-negative", PRUNE + ["--density", "0.1", "--init-seed", "-3"], 2, ["'--init-seed'", "-3"]),
    # prune: density, method, options, data
    ("density-zero", PRUNE + ["--density", "0"], 2, ["'--density'", "(0, 1]", "got 0"]),
    ("density-percent", PRUNE + ["--density", "5"], 2, ["'--density'", "a percentage? use 0.05"]),
    ("density-text", PRUNE + ["--density", "abc"], 2, ["'--density'", "'abc' is not a number"]),
    ("density-nan", PRUNE + ["--density", "nan"], 2, ["'--density'", "(0, 1]"]),
    ("density-missing", PRUNE, 2, ["Missing option '--density'"]),
    ("method-unknown", ["prune", "--model", "digits_mlp", "--method", "nope", "--density", "0.1"], 2,
     ["'--method'", "unknown method 'nope'", "phew"]),
    ("option-bad-value", PRUNE + ["--density", "0.1", "-o", "bias=nope"], 2, ["bias='nope'", "must be one of"]),
    ("option-no-equals", PRUNE + ["--density", "0.1", "-o", "nokey"], 2, ["key=value", "'nokey'"]),
    ("option-unknown", PRUNE + ["--density", "0.1", "-o", "nosuch=1"], 2, ["unknown option(s) 'nosuch'"]),
    ("data-missing", ["prune", "--model", "digits_mlp", "--method", "snip", "--density", "0.1"], 2,
     ["data-dependent", "--data random"]),
    ("data-unknown", ["prune", "--model", "digits_mlp", "--method", "snip", "--density", "0.1", "--data", "imagenet"],
     2, ["'--data'", "'imagenet'", "random", "digits"]),
    ("data-samples-zero", ["prune", "--model", "digits_mlp", "--method", "snip", "--density", "0.1", "--data",
                           "random", "--data-samples", "0"], 2, ["'--data-samples'", "x>=1"]),
    ("data-samples-negative", ["prune", "--model", "digits_mlp", "--method", "snip", "--density", "0.1", "--data",
                               "digits", "--data-samples", "-5"], 2, ["'--data-samples'", "-5"]),
    ("data-samples-too-many", ["prune", "--model", "digits_mlp", "--method", "snip", "--density", "0.1", "--data",
                               "digits", "--data-samples", "5000", "--quiet"], 2, ["'--data-samples'", "at most 1200"]),
    ("digits-wrong-shape", ["prune", "--model", "mlp", "--method", "snip", "--density", "0.1", "--data", "digits",
                            "--quiet"], 2, ["digits", "(1, 28, 28)"]),
    ("out-under-a-file", PRUNE + ["--density", "0.1", "--out", "{tmp}/file.txt/m.pt"], 2,
     ["'--out'", "file.txt is a file, not a folder"]),
    ("out-is-a-folder", PRUNE + ["--density", "0.1", "--out", "{tmp}"], 2, ["'--out'", "is a directory"]),
    ("unknown-option", PRUNE + ["--density", "0.1", "--bogus"], 2, ["No such option '--bogus'"]),
    ("unknown-command", ["nosuchcmd"], 2, ["No such command 'nosuchcmd'"]),
    ("init-mask-missing", PRUNE + ["--density", "0.1", "-o", "init_mask={tmp}/none.pt"], 2, ["none.pt: no such file"]),
    ("init-mask-not-a-mask", PRUNE + ["--density", "0.1", "-o", "init_mask={tmp}/file.txt"], 2,
     ["file.txt is not a mask file"]),
    ("option-out-of-range", ["prune", "--model", "digits_mlp", "--method", "synflow", "--density", "0.1", "-o",
                             "iterations=0"], 2, ["iterations must be a positive integer, got 0"]),
    ("option-wrong-type", ["prune", "--model", "digits_mlp", "--method", "synflow", "--density", "0.1", "-o",
                           "iterations=abc"], 2, ["iterations", "takes an integer, got 'abc'"]),
    # analyze
    ("analyze-not-a-mask-with-model", ["analyze", "{tmp}/file.txt", "--model", "nope"], 2, ["not a mask file"]),
    ("analyze-missing-file", ["analyze", "{tmp}/missing.pt"], 2, ["missing.pt: no such file"]),
    ("analyze-not-a-mask", ["analyze", "{tmp}/file.txt"], 2, ["is not a mask file"]),
    ("analyze-seed-negative", ["analyze", "{tmp}/file.txt", "--seed", "-2"], 2, ["'--seed'", "-2"]),
    # report
    ("report-out-not-empty", ["report", "{tmp}/file.txt", "--out", "{tmp}"], 2,
     ["'--out'", "is not empty (1 entry, e.g. file.txt)", "--force to replace the files a report writes there"]),
    ("report-formats", ["report", "{tmp}/file.txt", "--out", "{tmp}/r", "--formats", "png,bmp"], 2,
     ["'--formats'", "'bmp' is not accepted", "png, svg, pdf"]),
    ("report-format-old-name", ["report", "{tmp}/file.txt", "--out", "{tmp}/r", "--format", "bmp"], 2,
     ["'--format'", "'bmp' is not accepted", "png, svg, pdf"]),
    ("report-format-and-formats", ["report", "{tmp}/file.txt", "--out", "{tmp}/r", "--format", "png", "--formats",
                                   "svg"], 2, ["--format is the old name of --formats; give --formats only"]),
    # compare
    ("compare-methods-empty", COMPARE + ["--methods", "", "--out", "{tmp}/c"], 2, ["'--methods'", "no method"]),
    ("compare-methods-commas", COMPARE + ["--methods", ",,", "--out", "{tmp}/c"], 2, ["'--methods'", "no method"]),
    ("compare-method-unknown", COMPARE + ["--methods", "phew,nope", "--out", "{tmp}/c"], 2,
     ["'--methods'", "unknown method 'nope'"]),
    ("compare-method-option", COMPARE + ["--methods", "phew:bias=nope", "--out", "{tmp}/c"], 2,
     ["'--methods'", "must be one of"]),
    ("compare-density-zero", COMPARE + ["--densities", "0.1,0", "--out", "{tmp}/c"], 2, ["'--densities'", "got 0"]),
    ("compare-density-five", COMPARE + ["--densities", "5", "--out", "{tmp}/c"], 2, ["'--densities'", "use 0.05"]),
    ("compare-density-text", COMPARE + ["--densities", "abc", "--out", "{tmp}/c"], 2,
     ["'--densities'", "'abc' is not a number"]),
    ("compare-density-empty", COMPARE + ["--densities", ",", "--out", "{tmp}/c"], 2, ["'--densities'", "no density"]),
    ("compare-seeds-zero", COMPARE + ["--seeds", "0", "--out", "{tmp}/c"], 2, ["'--seeds'", "x>=1"]),
    ("compare-seed-range", COMPARE + ["--seed", "4294967295", "--seeds", "2", "--out", "{tmp}/c"], 2,
     ["'--seeds'", "reaches 4294967296"]),
    ("compare-formats", COMPARE + ["--formats", "png,bmp", "--out", "{tmp}/c"], 2,
     ["'--formats'", "'bmp' is not accepted", "png, svg, pdf"]),
    ("compare-formats-empty", COMPARE + ["--formats", "", "--out", "{tmp}/c"], 2, ["'--formats'", "choose from"]),
    ("compare-out-not-empty", COMPARE + ["--out", "{tmp}"], 2,
     ["'--out'", "is not empty", "--force to replace the files a comparison writes there"]),
    ("compare-out-is-file", COMPARE + ["--out", "{tmp}/file.txt"], 2, ["'--out'", "is a file"]),
    ("compare-needs-data", COMPARE + ["--methods", "snip", "--out", "{tmp}/c"], 2, ["'snip' is data-dependent"]),
    ("compare-factory-raises", ["compare", "--model", f"{USER}:raises", "--input-shape", "1,8,8", "--out",
                                "{tmp}/c", "--quiet"], 1, ["building model", "cannot build the net"]),
    ("compare-tied", ["compare", "--model", f"{USER}:tied", "--input-shape", "8", "--out", "{tmp}/c", "--quiet"], 2,
     ["ties weights"]),
    # demo, reproduce
    ("demo-unknown-model", ["demo", "--models", "nope", "--out", "{tmp}/d"], 2,
     ["'--models'", "'nope' is not a zoo model", "resnet20"]),
    ("demo-no-model", ["demo", "--models", ",", "--out", "{tmp}/d"], 2, ["'--models'", "names no model"]),
    ("demo-density", ["demo", "--models", "digits_mlp", "--densities", "2", "--out", "{tmp}/d"], 2,
     ["'--densities'", "got 2"]),
    ("reproduce-study", ["reproduce", "--study", "nope"], 2, ["'--study'", "'nope'", "topology"]),
    ("reproduce-out-file", ["reproduce", "--study", "topology", "--quick", "--out", "{tmp}/file.txt"], 2,
     ["'--out'", "is a file"]),
    ("reproduce-report-only-other-study", ["reproduce", "--study", "topology", "--report-only", "--out", "{tmp}/r"], 2,
     ["--report-only", "mnist1d", "topology"]),
    ("reproduce-report-only-no-results", ["reproduce", "--study", "mnist1d", "--report-only", "--out", "{tmp}/r"], 2,
     ["mnist1d_results.csv does not exist", "run the study first"]),
    # sweep (no run starts)
    ("sweep-missing-config", ["sweep", "{tmp}/missing.yaml"], 2, ["missing.yaml: no such file"]),
    ("sweep-config-is-folder", ["sweep", "{tmp}"], 2, ["'CONFIG'", "is a directory"]),
    ("sweep-out-is-file", ["sweep", "{tmp}/missing.yaml", "--out", "{tmp}/file.txt"], 2, ["'--out'", "is a file"]),
    ("sweep-workers-zero", ["sweep", "{tmp}/missing.yaml", "--workers", "0"], 2, ["'--workers'", "x>=1"]),
    ("sweep-retry-alone", ["sweep", "{tmp}/missing.yaml", "--retry-failed"], 2, ["--retry-failed", "--resume"]),
]


@pytest.mark.parametrize("args,status,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(tmp_path, args, status, words):
    (tmp_path / "file.txt").write_text("not a mask")
    res = invoke(*[a.format(tmp=tmp_path) if isinstance(a, str) else a for a in args])
    assert_one_line(res, status, *words)


def test_model_names_are_stripped(mask_file):
    """' digits_mlp ' on the command line is digits_mlp, for the model commands and the mask commands."""
    res = invoke("graph", "--model", " digits_mlp ")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("digits_mlp: input 1x8x8")
    res = invoke("analyze", mask_file, "--model", "\tdigits_mlp\n", "--json")
    assert res.exit_code == 0, res.output
    assert '"model": "digits_mlp"' in res.stdout


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_thread_count_is_one_line(mask_file, value):
    """NETGRAPH_NUM_THREADS is read where the metrics' pool starts: anything but a positive whole number is
    one line, status 2 (it was a ValueError, status 1, 'rerun with --debug')."""
    res = invoke("analyze", mask_file, env={"NETGRAPH_NUM_THREADS": value})
    assert_one_line(res, 2, f"NETGRAPH_NUM_THREADS must be a positive whole number of threads, got {value!r}")


def test_mask_for_another_model(mask_file):
    assert_one_line(invoke("analyze", mask_file, "--model", "digits_cnn"), 2, "made for 'digits_mlp'", "does not fit")
    assert_one_line(invoke("analyze", mask_file, "--model", "nope"), 2, "unknown model 'nope'")
    assert_one_line(invoke("analyze", mask_file, "--input-shape", "1,4,4"), 2, "(1, 4, 4) failed")
    assert_one_line(invoke("prune", "--model", "digits_cnn", "--method", "phew", "--density", "0.1",
                           "-o", f"init_mask={mask_file}"), 2, "init_mask does not fit")


# -- the Python API under the CLI -------------------------------------------------------------


def test_api_wrong_input_shape_prints_nothing(capfd):
    from netgraph import zoo
    from netgraph.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as info:
        zoo.graph_of("digits_mlp", (3, 32, 32))
    assert "\n" not in str(info.value) and "mat1 and mat2" in str(info.value)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # torch.fx's ShapeProp printed a traceback here


@pytest.mark.parametrize("call,words", [
    (lambda: __import__("netgraph").zoo.parse_input_shape("3,-1"), "positive integers"),
    (lambda: __import__("netgraph").zoo.load_model("digits_mlp:x"), "needs --input-shape"),
    (lambda: __import__("analysis.experiments.compare", fromlist=["compare"]).compare("digits_mlp", [], [0.1]),
     "method list is empty"),
    (lambda: __import__("analysis.experiments.compare", fromlist=["compare"]).compare("digits_mlp", ["phew"], [0]),
     "density must be in (0, 1]"),
    (lambda: __import__("analysis.experiments.compare", fromlist=["compare"]).compare("digits_mlp", ["phew"], [0.1],
                                                                                      seeds=0), "seeds must be"),
], ids=["shape", "user-model-no-shape", "no-methods", "density", "seeds"])
def test_api_bad_input_is_one_line(call, words):
    from netgraph.errors import NetgraphError

    with pytest.raises(NetgraphError) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text,words", [
    ("models: [digits_mlp]\nmethods: [phew]\ndensities: [0.1]\nepochs: 3\n", ["unknown key(s)", "epochs"]),
    ("models: [digits_mlp]\nmethods: [phew\n", ["is malformed"]),
    ("models: [nope]\nmethods: [phew]\ndensities: [0.1]\n", ["models[0] (nope)", "unknown model"]),
    ("models: [digits_mlp]\nmethods: [phew]\ndensities: [2]\n", ["densities[0]", "(0, 1]"]),
    ("models: [digits_mlp]\nmethods: [snip]\ndensities: [0.1]\n", ["data", "need data"]),
    (f"models: [{{name: '{USER}:tied', input_shape: [8]}}]\nmethods: [phew]\ndensities: [0.1]\n", ["ties weights"]),
], ids=["unknown-key", "malformed", "unknown-model", "density", "needs-data", "tied-weights"])
def test_sweep_config_errors(sweep_config, text, words):
    assert_one_line(invoke("sweep", sweep_config(text)), 2, *words)


def test_sweep_config_factory_raises(sweep_config):
    cfg = sweep_config(f"models: [{{name: '{USER}:raises', input_shape: [1, 8, 8]}}]\nmethods: [phew]\n"
                       "densities: [0.1]\n")
    assert_one_line(invoke("sweep", cfg), 1, "building its models failed", "RuntimeError: cannot build the net")


def test_sweep_scheduler_malformed(sweep_config):
    cfg = sweep_config("models: [digits_mlp]\nmethods: [random]\ndensities: [0.5]\n")
    assert_one_line(invoke("sweep", cfg, "--scheduler", "bogus://x:1"), 2, "'--scheduler'", "://HOST:PORT", "bogus://x:1")
    assert_one_line(invoke("sweep", cfg, "--scheduler", "tcp://host:port"), 2, "'--scheduler'")


def test_sweep_scheduler_unreachable_fails_fast(sweep_config):
    cfg = sweep_config("models: [digits_mlp]\nmethods: [random]\ndensities: [0.5]\n")
    t0 = time.perf_counter()
    res = invoke("sweep", cfg, "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    assert time.perf_counter() - t0 < 10
    assert_one_line(res, 1, "no Dask scheduler answers at tcp://127.0.0.1:", "dask scheduler")


def test_sweep_of_more_than_10000_runs_asks(sweep_config, tmp_path):
    cfg = sweep_config("models: [digits_mlp]\nmethods: [random]\ndensities: [0.5]\nseeds: 10001\n"
                       "max_flow: false\nsave_masks: false\n")
    res = invoke("sweep", cfg, "--out", tmp_path / "s", input="n\n")
    assert "10,001 runs" in res.stderr and "per run measured now" in res.stderr
    assert res.exit_code == 1 and res.stderr.strip().splitlines()[-1].startswith("Error: not started")
    assert "--yes" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "s" / "results.sqlite").exists()
    res = invoke("sweep", cfg, "--out", tmp_path / "s")  # no answer at all (end of input): a usage error
    assert res.exit_code == 2 and "not started" in res.stderr and "--yes" in res.stderr


def test_sweep_with_failed_runs_exits_1(sweep_config, tmp_path):
    cfg = sweep_config(f"models: [{{name: '{USER}:flaky', input_shape: [1, 8, 8]}}]\nmethods: [random]\n"
                       "densities: [0.5]\nseeds: [0, 1, 2]\nmax_flow: false\nsave_masks: false\n")
    res = invoke("sweep", cfg, "--out", tmp_path / "s", "--workers", "1", "--quiet")
    assert "3 runs: 0 already recorded, 1 finished, 2 failed" in res.stdout
    assert_one_line(res, 1, "2 of 3 runs failed", "RuntimeError: flaky factory: only seed 0 builds",
                    "error column")
    again = invoke("sweep", cfg, "--out", tmp_path / "s", "--workers", "1", "--quiet")  # no --resume
    assert_one_line(again, 2, "'--out'", "already holds 3 recorded runs", "--resume")


# -- runtime failures, --debug ------------------------------------------------------------


def test_unexpected_exception_is_one_line_with_debug_hint(monkeypatch):
    from analysis.cli import model_commands

    def broken(graph):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(model_commands, "describe_graph", broken)
    assert_one_line(invoke("graph", "--model", "digits_mlp"), 1, "ZeroDivisionError: division by zero", "--debug")
    with pytest.raises(ZeroDivisionError):
        invoke("--debug", "graph", "--model", "digits_mlp")
    with pytest.raises(ZeroDivisionError):
        invoke("graph", "--model", "digits_mlp", env={"NETGRAPH_DEBUG": "1"})


def test_write_failure_is_one_line(monkeypatch, tmp_path):
    from netgraph.masks import MaskSet

    def deny(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(MaskSet, "save", deny)
    res = invoke(*PRUNE, "--density", "0.1", "--out", tmp_path / "m.pt", "--quiet")
    assert_one_line(res, 1, "Permission denied", "m.pt")


def test_debug_env_shows_the_traceback_in_a_real_process():
    code = "from analysis.cli import main; main()"
    args = ["graph", "--model", f"{USER}:raises", "--input-shape", "1,8,8"]
    quiet = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()]
    loud = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NETGRAPH_DEBUG": "1"})
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "cannot build the net" in loud.stderr


# -- what used to be wrong without an error -------------------------------------------------


def test_user_model_from_the_current_folder(tmp_path, monkeypatch):
    pkg = tmp_path / "ngcli_userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("import torch.nn as nn\n\ndef make():\n"
                                 "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    res = invoke("graph", "--model", "ngcli_userpkg.nets:make", "--input-shape", "1,8,8")
    assert res.exit_code == 0, res.output
    assert "prunable weights 536" in res.output


def test_compare_seed_is_the_first_seed(tmp_path):
    from analysis.experiments.compare import read_results

    res = invoke(*COMPARE, "--seed", "7", "--seeds", "2", "--formats", "png", "--out", tmp_path / "c")
    assert res.exit_code == 0, res.output
    assert sorted(read_results(tmp_path / "c" / "results.csv")["seed"]) == [7, 8]


def test_compare_force_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "paths.pdf").write_text("stale figure of an earlier run")
    (out / "notes.txt").write_text("mine")
    res = invoke(*COMPARE, "--formats", "png", "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "paths.pdf").exists() and (out / "paths.png").exists()
    assert (out / "notes.txt").read_text() == "mine"


def _recorded(db) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_ctrl_c_during_a_sweep_says_how_to_resume(sweep_config, tmp_path):
    cfg = sweep_config("models: [digits_cnn]\nmethods: [phew, synflow, random]\ndensities: [0.5, 0.2, 0.1]\n"
                       "seeds: 100\nsave_masks: false\n")
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", "from analysis.cli import main; main()", "sweep", str(cfg),
                             "--out", str(out), "--workers", "2", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while _recorded(out / "results.sqlite") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)  # the sweep is starting (its workers ignore Ctrl-C while they start)
    assert proc.poll() is None and _recorded(out / "results.sqlite") >= 2, \
        f"the sweep was not running with 2 runs recorded after {300} s (exit {proc.poll()}; a loaded machine?)"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("Error: interrupted: ") and " of 900 runs recorded" in lines[0]
    assert f"continue with: netgraph sweep {cfg} --out {out} --resume" in lines[0]


def test_scheduler_probe_accepts_a_listening_address():
    from analysis.cli.sweep_command import check_scheduler, scheduler_address

    assert scheduler_address("10.0.0.5") == ("tcp", "10.0.0.5", 8786)
    assert scheduler_address("tls://[::1]:9000") == ("tls", "::1", 9000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        check_scheduler(f"tcp://127.0.0.1:{s.getsockname()[1]}")  # no error


def test_large_grid_starts_when_confirmed(sweep_config, tmp_path, monkeypatch):
    from analysis.cli import sweep_command

    monkeypatch.setattr(sweep_command, "CONFIRM_ABOVE", 2)
    cfg = sweep_config("models: [digits_mlp]\nmethods: [random]\ndensities: [0.5]\nseeds: 3\n"
                       "max_flow: false\nsave_masks: false\n")
    res = invoke("sweep", cfg, "--out", tmp_path / "s", "--workers", "1", "--quiet", input="y\n")
    assert res.exit_code == 0, res.output
    assert "The grid has 3 runs" in res.stderr and "3 runs: 0 already recorded, 3 finished, 0 failed" in res.stdout


@pytest.mark.parametrize("data", ["random", "digits"])
def test_the_data_the_cli_makes_takes_a_float64_models_dtype(data, tmp_path):
    """The CLI makes the pruning batch itself: a float64 model was refused for float32 inputs
    it could not change."""
    res = invoke("prune", "--model", f"{USER}:double", "--input-shape", "1,8,8", "--method", "snip", "--density",
                 "0.5", "--data", data, "--out", tmp_path / "m.pt", "--quiet")
    assert res.exit_code == 0, res.output
    from netgraph import from_torch
    from netgraph.data import prune_batch

    from tests.analysis.cli import user_models

    g = from_torch(user_models.ok(), (1, 8, 8))
    x32, y32 = prune_batch(data, g, 0, 20)
    x64, y64 = prune_batch(data, g, 0, 20, model=user_models.double())
    assert x32.dtype == torch.float32 and x64.dtype == torch.float64
    assert torch.equal(x64.float(), x32) and torch.equal(y64, y32)  # the same batch, in the model's dtype


def test_a_sweep_prunes_and_trains_a_float64_model_on_the_data_it_makes(sweep_config, tmp_path):
    from analysis import read_sweep

    cfg = sweep_config(f"models: [{{name: '{USER}:double', input_shape: [1, 8, 8]}}]\nmethods: [snip]\n"
                       "densities: [0.5]\nseeds: [0]\ndata: digits\nmax_flow: false\nsave_masks: false\n"
                       "train: {epochs: 1}\n")
    res = invoke("sweep", cfg, "--out", tmp_path / "s", "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output
    row = read_sweep(str(tmp_path / "s")).iloc[0]
    assert row["status"] == "done" and 0.0 <= row["test_acc"] <= 1.0
