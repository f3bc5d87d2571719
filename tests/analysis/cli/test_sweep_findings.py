"""The defects a robustness sweep of the CLI found, each pinned: one clear line and status 2
for bad input, never a traceback nor a silent wrong answer."""

import os
import subprocess
import sys
import tracemalloc

import pytest
import torch

import netgraph
from analysis.experiments import maskfile
from analysis.experiments.sweep_config import load_config
from netgraph import export
from netgraph.masks import MaskSet

from .test_bad_input import ROOT, assert_one_line, invoke

PRUNE = ["prune", "--model", "digits_mlp", "--method", "random", "--density", "0.2", "--quiet"]
COMPARE = ["compare", "--model", "digits_mlp", "--densities", "0.5", "--seeds", "1", "--quiet"]


@pytest.fixture(scope="module")
def masks():
    _, g = netgraph.zoo.graph_of("digits_mlp")
    return netgraph.sparsify(g, "random", 0.2, seed=3)


# 1. mask files: --out picks the format by suffix; every command reads both formats


def test_prune_out_safetensors_is_a_safetensors_file_that_analyze_and_report_read(tmp_path):
    out = tmp_path / "m.safetensors"
    assert invoke(*PRUNE, "--out", out).exit_code == 0
    ms = export.load_safetensors(out)  # a genuine safetensors file, not a torch zip under that name
    torch_file = tmp_path / "m.pt"
    assert invoke(*PRUNE, "--out", torch_file).exit_code == 0
    assert all(torch.equal(ms[n], MaskSet.load(torch_file)[n]) for n in ms)
    a, b = (invoke("analyze", p, "--json") for p in (out, torch_file))
    assert a.exit_code == b.exit_code == 0, a.output
    assert '"kept": %d' % ms.num_kept in a.output and a.output.split('"summary"')[1] == b.output.split('"summary"')[1]
    res = invoke("report", out, "--out", tmp_path / "rep", "--formats", "png")
    assert res.exit_code == 0, res.output


def test_analyze_reads_a_safetensors_file_written_by_the_export_module(tmp_path, masks):
    path = tmp_path / "real.safetensors"
    export.save_safetensors(masks, path)
    res = invoke("analyze", path)
    assert res.exit_code == 0, res.output
    assert f"{masks.num_kept} of {masks.num_total} weights" in res.output


def test_a_file_is_read_by_its_content_not_its_name(tmp_path, masks):
    named_pt = tmp_path / "inside-safetensors.pt"
    export.save_safetensors(masks, named_pt)
    assert maskfile.read_masks(named_pt).num_kept == masks.num_kept
    assert invoke("analyze", named_pt).exit_code == 0
    torch_named = tmp_path / "torch-inside.safetensors"
    masks.save(torch_named)  # a torch file under a safetensors name (what prune wrote before)
    assert maskfile.read_masks(torch_named).num_kept == masks.num_kept
    assert invoke("analyze", torch_named).exit_code == 0


@pytest.mark.parametrize("name,why", [("m.npz", "the suffix '.npz' is not a mask format"),
                                      ("m.json", "the suffix '.json' is not a mask format"),
                                      ("masks", "the name has no suffix")])
def test_prune_refuses_a_suffix_of_no_mask_format_before_the_work(tmp_path, name, why):
    res = invoke(*PRUNE, "--out", tmp_path / name)
    assert_one_line(res, 2, "'--out'", why, "use .pt (torch), .pth (torch), .safetensors (safetensors)")
    assert not os.listdir(tmp_path)


# 2. a repeated method, density or seed: refused, one rule for every axis


@pytest.mark.parametrize("methods,density,words", [
    ("phew,phew", "0.5", ["'--methods'", "methods lists 'phew' twice (entries 1 and 2)"]),
    ("phew,phew:bias=magnitude", "0.5", ["methods lists 'phew:bias=magnitude' (as 'phew') twice"]),
    ("random", "0.5,0.50", ["'--densities'", "densities lists 0.5 twice"]),
])
def test_compare_refuses_a_repeated_method_or_density(tmp_path, methods, density, words):
    res = invoke("compare", "--model", "digits_mlp", "--methods", methods, "--densities", density, "--seeds", "1",
                 "--out", tmp_path / "c")
    assert_one_line(res, 2, *words)
    assert not (tmp_path / "c").exists()


def test_sweep_refuses_a_repeated_method(tmp_path):
    cfg = tmp_path / "g.yaml"
    cfg.write_text("models: [digits_mlp]\nmethods: [phew, phew]\ndensities: [0.5]\nsave_masks: false\n")
    res = invoke("sweep", cfg, "--out", tmp_path / "s", "--workers", "1")
    assert_one_line(res, 2, "methods lists 'phew' twice")
    assert not (tmp_path / "s" / "results.sqlite").exists()


def test_demo_refuses_a_repeated_model(tmp_path):
    res = invoke("demo", "--models", "digits_mlp,digits_mlp", "--out", tmp_path / "d")
    assert_one_line(res, 2, "'--models'", "models lists 'digits_mlp' twice")


def test_the_library_compare_refuses_a_repeated_seed():
    from analysis.experiments.compare import compare

    with pytest.raises(netgraph.errors.InvalidInputError, match="seeds lists 1 twice"):
        compare("digits_mlp", ["random"], [0.5], seeds=[1, 1])


# 3. a huge grid is counted, not built, and confirmed before anything


def test_a_huge_sweep_is_counted_and_refused_without_building_it(tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text("models: [digits_mlp]\nmethods: [random]\ndensities: [0.5]\nseeds: 100000000\n"
                   "max_flow: false\nsave_masks: false\n")
    assert load_config(str(cfg)).size == 100_000_000
    tracemalloc.start()
    try:
        res = invoke("sweep", cfg, "--out", tmp_path / "s", "--workers", "1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.exit_code == 2  # no input to answer: a usage error
    assert "not started: 100,000,000 runs need a confirmation and there is no input to answer it; pass --yes" \
        in res.stderr
    assert peak < 200e6, peak  # the expanded grid alone would take tens of GB


def test_a_huge_compare_asks_first_and_writes_nothing(tmp_path):
    res = invoke("compare", "--model", "digits_mlp", "--methods", "random,phew", "--densities", "0.5",
                 "--seeds", "100000000", "--out", tmp_path / "c", input="n\n")
    assert "The grid has 200,000,000 runs (2 methods x 1 density x 100,000,000 seeds)" in res.stderr
    assert res.exit_code == 1 and "Error: not started: you answered no to 200,000,000 runs" in res.stderr
    assert not (tmp_path / "c").exists()


def test_seed_counts_beyond_the_seed_range_are_refused():
    with pytest.raises(netgraph.errors.InvalidInputError, match="seeds must stay in 0..4294967295"):
        load_config({"models": ["digits_mlp"], "methods": ["random"], "densities": [0.5], "seeds": 2**32 + 1})


# 4. coverage: unknown sources refused before anything is written


@pytest.mark.parametrize("sources,words", [
    ("foo", ["'foo' is neither a source (torchvision, timm, zoo) nor a model"]),
    ("zoo,foo", ["'foo' is neither"]),
    ("timm:nosuch", ["unknown timm model 'nosuch'"]),
])
def test_coverage_refuses_unknown_sources(tmp_path, sources, words):
    (tmp_path / "coverage.md").write_text("earlier report")
    res = invoke("coverage", "--sources", sources, "--out", tmp_path, "--in-process", "--quiet")
    assert_one_line(res, 2, "'--sources'", *words)
    assert os.listdir(tmp_path) == ["coverage.md"] and (tmp_path / "coverage.md").read_text() == "earlier report"


# 5. report --seed: the seed range of every command


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", "4294967296"])
def test_report_seed_has_the_seed_range(tmp_path, masks, seed):
    path = tmp_path / "m.pt"
    masks.save(path)
    res = invoke("report", path, "--out", tmp_path / "r", "--seed", seed)
    assert_one_line(res, 2, "'--seed'", "0<=x<=4294967295")


# 6. hand-edited metadata: one line naming the entry


@pytest.mark.parametrize("edit,words", [
    ({"seed": "abc"}, ["model.seed must be an integer in [0, 4294967295], got 'abc'"]),
    ({"seed": 2**70}, ["model.seed must be an integer", str(2**70)]),
    ({"seed": -5}, ["model.seed", "got -5"]),
    ({"seed": 1.5}, ["model.seed", "got 1.5"]),
    ({"name": 123}, ["model.name must be a model name (text), got 123"]),
    ({"input_shape": [64, "x"]}, ["model.input_shape must be a list of positive integers"]),
])
@pytest.mark.parametrize("command", ["analyze", "report"])
def test_malformed_metadata_is_one_line(tmp_path, masks, edit, words, command):
    path = tmp_path / "m.pt"
    meta = dict(masks.meta, model={**masks.meta["model"], **edit})
    torch.save({"masks": dict(masks.items()), "meta": meta}, path)
    extra = ["--out", tmp_path / "r"] if command == "report" else []
    assert_one_line(invoke(command, path, *extra), 2, str(path), *words)


# 7. exit statuses: a malformed model name, an output that cannot be written


def test_a_model_name_without_a_module_is_a_usage_error():
    res = invoke("graph", "--model", ":good", "--input-shape", "64")
    assert_one_line(res, 2, "':good' is not a model name (zoo, torchvision:NAME, timm:NAME, pkg.mod:factory)")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
@pytest.mark.parametrize("args", [PRUNE + ["--out", "/proc/m.pt"], ["report", "{mask}", "--out", "/proc/rep"]])
def test_an_unwritable_output_is_refused_before_the_work(tmp_path, masks, args):
    masks.save(tmp_path / "m.pt")
    res = invoke(*[a.replace("{mask}", str(tmp_path / "m.pt")) for a in args])
    assert_one_line(res, 2, "'--out'", "cannot write", "/proc is not writable")


# 8. exclusive flags; a closed pipe; a failed write


def test_metrics_json_and_markdown_exclude_each_other():
    assert_one_line(invoke("metrics", "--json", "--markdown"), 2, "--json and --markdown exclude each other")


def test_a_closed_pipe_ends_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-c", "from analysis.cli import main; main()", "metrics"], cwd=ROOT,
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr  # click's status for EPIPE, nothing printed


def test_a_write_that_fails_after_the_check_is_one_line(tmp_path, monkeypatch):
    from analysis.cli import model_commands

    def fail(masks, path):
        raise RuntimeError("File /x cannot be opened.\nmore")

    monkeypatch.setattr(model_commands, "write_masks", fail)
    res = invoke(*PRUNE, "--out", tmp_path / "m.pt")
    assert_one_line(res, 1, f"cannot write {tmp_path / 'm.pt'}: File /x cannot be opened. more")
