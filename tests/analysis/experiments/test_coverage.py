"""Coverage of ``from_torch`` over real architectures, and the coverage report itself.

The torchvision test builds and traces every classification model of torchvision (80 in
0.29), each in a forked process; it takes about TORCHVISION_SECONDS on the 2-core
development machine. Every model must either trace or be refused with
``UnsupportedModelError``: any other exception is a bug.
"""

import csv
import json

import pytest

import netgraph
from analysis.experiments import coverage

pytest.importorskip("torchvision")

# Fractions that trace today (measured on the baseline tracer); raise them as the tracer grows.
# Issue 10 asks for 0.95 of torchvision and 0.85 of the timm selection.
MIN_TORCHVISION_TRACED = 1.0  # all 80 (16 before this work; 68 before attention)
MIN_TIMM_TRACED = 0.98  # 51 of 52 (2 before this work); CoaT remains (shared position-encoding convs, factorised attention)
# Models known to raise something else than UnsupportedModelError (bugs to fix, then remove).
KNOWN_BUGS: set = set()
TIMEOUT = 300  # seconds per model


def _check_rows(rows, minimum):
    bad = [f"{r['source']}:{r['name']}: {r['status']}: {r['blockers']}" for r in rows
           if r["status"] not in ("traced", "unsupported") and f"{r['source']}:{r['name']}" not in KNOWN_BUGS]
    assert not bad, "models that neither trace nor raise UnsupportedModelError:\n" + "\n".join(bad)
    for r in rows:
        if r["status"] == "unsupported":
            assert r["blockers"] and all(r["blockers"]), r
        elif r["status"] == "traced":
            assert r["graph_weights"] > 0 and r["log10_R"] is not None, r
    traced = sum(r["status"] == "traced" for r in rows)
    assert traced / len(rows) >= minimum, f"{traced} of {len(rows)} traced, below {minimum:.0%}"


def test_every_torchvision_classifier_traces_or_is_refused_cleanly():
    specs = coverage.model_specs(("torchvision",))
    assert len(specs) >= 80
    rows = coverage.run_coverage(specs, quiet=True, timeout=TIMEOUT)
    _check_rows(rows, MIN_TORCHVISION_TRACED)


@pytest.mark.slow
def test_the_timm_selection_traces_or_is_refused_cleanly():
    pytest.importorskip("timm")
    assert len(coverage.TIMM_SELECTION) >= 40
    assert len({n for _, n in coverage.TIMM_SELECTION}) == len(coverage.TIMM_SELECTION)
    rows = coverage.run_coverage(coverage.model_specs(("timm",)), quiet=True, timeout=TIMEOUT)
    _check_rows(rows, MIN_TIMM_TRACED)


def test_timm_selection_names_exist():
    timm = pytest.importorskip("timm")
    missing = [n for _, n in coverage.TIMM_SELECTION if not timm.is_model(n)]
    assert not missing


def test_report_files(tmp_path):
    res = coverage.write_coverage(tmp_path, sources=("digits_mlp", "resnet20", "torchvision:mobilenet_v3_small"),
                                  quiet=True, command="netgraph coverage --out x")
    rows = res["rows"]
    assert len(rows) == 3
    assert all(r["status"] == "traced" for r in rows if r["source"] == "zoo")
    assert all(r["graph_weights"] == r["prunable_weights"] for r in rows if r["source"] == "zoo")
    md = (tmp_path / "coverage.md").read_text()
    assert "netgraph coverage --out x" in md and "| zoo | 2 | 2 |" in md
    assert "mobilenet_v3_small" in md and "## Blockers" in md
    with open(tmp_path / "coverage.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == [r["name"] for r in rows]
    blob = json.loads((tmp_path / "coverage.json").read_text())
    assert blob["summary"]["sources"]["zoo"] == {"total": 2, "traced": 2}


def test_failures_to_build_crashes_and_timeouts_are_rows():
    rows = coverage.run_coverage(
        ["torchvision:no_such_model", "tests.models:tiny_mlp", ("os:abort", (3,)), ("signal:pause", (3,)),
         ("tests.models:tiny_mlp", (6,))], quiet=True, timeout=3)
    assert [r["status"] for r in rows] == ["build failed", "build failed", "crashed", "timeout", "traced"]
    assert "unknown torchvision model" in rows[0]["blockers"][0]
    assert "no default input shape" in rows[1]["blockers"][0]
    assert "exit code -6" in rows[2]["blockers"][0] and "no result in 3 s" in rows[3]["blockers"][0]


def test_other_exceptions_are_reported_as_bugs(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(netgraph, "from_torch", broken)
    row = coverage.probe("digits_mlp")
    assert row["status"] == "bug" and "KeyError" in row["blockers"][0] and "not a netgraph error" in row["blockers"][0]


def test_blockers_are_counted_by_kind():
    one = ("cannot build the unit graph: module 'features.3.0' of type Conv2d is not supported "
           "(grouped/depthwise convolution with groups=96; only groups=1). Supported: Linear, ...")
    many = ("cannot build the unit graph of Net: 2 unsupported operations:\n"
            "- module 'a.b' of type LayerNorm is not supported\n"
            "- function cat (at 'cat_1') is not supported\nSupported: ...")
    assert coverage.split_blockers(many) == ["module 'a.b' of type LayerNorm is not supported",
                                             "function cat (at 'cat_1') is not supported"]
    assert coverage.blocker_key(one) == ("module of type Conv2d is not supported (grouped/depthwise "
                                         "convolution with groups=N; only groups=1)")
    rows = [{"source": "t", "name": n, "status": "unsupported", "blockers": coverage.split_blockers(m)}
            for n, m in [("a", one), ("b", one.replace("features.3.0", "x")), ("c", many)]]
    summary = coverage.summarize(rows + [{"source": "t", "name": "d", "status": "traced", "blockers": []}])
    assert summary["sources"] == {"t": {"total": 4, "unsupported": 3, "traced": 1}}
    top = summary["blockers"][0]
    assert top["models"] == 2 and top["examples"] == ["t:a", "t:b"]
    assert [b["models"] for b in summary["blockers"]] == [2, 1, 1]


def test_trace_budget_line():
    rows = [{"source": "t", "name": n, "status": "traced", "blockers": [], "trace_s": t, "peak_mb": peak,
             "param_mb": 100.0, "input_shape": "3x8x8", "graph_weights": 10, "prunable_weights": 10, "log10_R": 1.0}
            for n, t, peak in [("a", 0.5, 900.0), ("b", 5.0, 900.0), ("c", 1.0, 1424.0),
                                                   ("d", 4.9, 1423.9)]]
    rows.append({**rows[0], "name": "e", "status": "unsupported", "blockers": ["x"], "trace_s": None})
    summary = coverage.summarize(rows)
    assert summary["budget"] == {"t": {"measured": 4, "within": 2,
                                       "over": ["b (5 s)", "c (peak 1424 MB of 1424)"]}}
    assert "t 2 of 4 traced models; over: b (5 s), c (peak 1424 MB of 1424)." in coverage.to_markdown(rows, summary)
