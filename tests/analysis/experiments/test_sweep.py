"""Sweeps: a grid on a local Dask cluster, SIGKILL and resume, failures, config validation."""

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from analysis.experiments.sweep import SweepConfigError, load_config, read_sweep, run_sweep
from netgraph import MaskSet
from netgraph.errors import InvalidInputError

pytestmark = pytest.mark.filterwarnings("ignore")


def _write(tmp_path, cfg, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _rows(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT run_hash, status, finished, kept, log10_paths FROM runs").fetchall()


def test_grid_on_two_local_workers(tmp_path):
    cfg = {"name": "small", "models": ["digits_mlp"],
           "methods": ["phew", "random", "synflow:iterations=5", {"name": "snip", "label": "snip-eval",
                                                                  "options": {"bn_mode": "eval"}},
                       {"name": "phew", "options": {"max_walks": 1}, "label": "phew-capped"}],
           "densities": [0.2, 0.05], "seeds": 2, "data": "digits", "train": {"epochs": 2}}
    out = tmp_path / "out"
    import dask.distributed  # noqa: F401 (its import sets its logging up)

    level = logging.getLogger("distributed").level
    res = run_sweep(_write(tmp_path, cfg), str(out), workers=2)
    assert logging.getLogger("distributed").level == level  # silenced while the cluster closed, then restored
    assert res.total == 5 * 2 * 2 and res.skipped == 0
    df = read_sweep(str(out))
    assert len(df) == 20 and df["run_hash"].is_unique
    done, failed = df[df["status"] == "done"], df[df["status"] == "failed"]
    # phew capped at one walk cannot reach its density: recorded as failed, the grid went on
    assert set(failed["method"]) == {"phew-capped"} and len(failed) == 4
    assert failed["error"].str.contains("cannot reach density").all()
    assert len(done) == 16 and res.done == 16 and res.failed == 4
    for r in done.itertuples():
        assert r.library_version and r.seconds >= 0 and 0 <= r.test_acc <= 1
        assert len(r.layer_widths) == 3 and len(r.loss_curve) == 3
        ms = MaskSet.load(r.mask_path)
        assert ms.num_kept == r.kept and ms.meta["seed"] == r.seed
        if r.base_method != "phew":
            assert r.kept == round(r.target_density * 6464)
    assert len({w for w in done["worker"]}) == 2  # both workers did work
    assert (out / "summary.md").exists() and (out / "widths.png").exists()
    # resuming a complete sweep runs nothing; retrying failed reruns only those
    again = run_sweep(_write(tmp_path, cfg), str(out), resume=True, workers=1, report=False)
    assert again.skipped == 20 and again.done == again.failed == 0
    with pytest.raises(InvalidInputError, match="--resume"):
        run_sweep(_write(tmp_path, cfg), str(out), workers=1)


def test_sigkill_mid_grid_then_resume(tmp_path):
    cfg = {"name": "killme", "models": ["resnet20"], "methods": ["phew", "synflow:iterations=30", "random"],
           "densities": [0.1, 0.05, 0.02, 0.01], "seeds": 4, "max_flow": False, "save_masks": False}
    path = _write(tmp_path, cfg)
    out = tmp_path / "out"
    db = out / "results.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "analysis.cli.main", "sweep", path, "--out", str(out), "--workers", "2",
                             "--quiet"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    before = []
    while time.time() < deadline:
        if db.exists():
            try:
                before = _rows(db)
            except sqlite3.OperationalError:
                before = []
            if len(before) >= 6:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its local cluster, mid-grid
    proc.wait()
    before = _rows(db)
    total = 3 * 4 * 4
    assert 6 <= len(before) < total, "the kill should land mid-grid"
    res = run_sweep(path, str(out), resume=True, workers=2, report=False)
    assert res.skipped == len(before) and res.done == total - len(before) and res.failed == 0
    after = _rows(db)
    assert len(after) == total and len({r[0] for r in after}) == total  # complete, no duplicates
    assert set(before) <= set(after)  # earlier rows intact (same hash, status, time, values)


@pytest.mark.parametrize("patch,words", [
    ({"models": ["resnet2000"]}, "models[0] (resnet2000): unknown model"),
    ({"methods": ["phew", "phwe"]}, "methods[1] ('phwe'): unknown method"),
    ({"methods": ["phew:biass=uniform"]}, "unknown option"),
    ({"methods": [{"name": "phew", "options": {"bias": "nope"}}]}, "must be one of"),
    ({"densities": [0.1, 1.5]}, "densities[1]: density must be in (0, 1]"),
    ({"densities": []}, "densities: must be a non-empty list"),
    ({"seeds": 0}, "seeds"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"methods": ["snip"]}, "need data"),
    ({"train": {"epochs": 2}}, "training uses the digits data"),
    ({"train": {"epoch": 2}}, "unknown setting"),
    ({"name": "a/b"}, "name: must be a file name (it names the sweep's folder"),
    ({"name": ".."}, "name: must be a file name"),
    ({"name": "  "}, "name: must be a file name"),
])
def test_bad_configs_fail_before_any_run(tmp_path, patch, words):
    cfg = {"models": ["resnet20"], "methods": ["phew"], "densities": [0.1], "seeds": 1, **patch}
    path = _write(tmp_path, cfg)
    with pytest.raises(SweepConfigError) as info:
        run_sweep(path, str(tmp_path / "out"))
    assert words in str(info.value) and path in str(info.value)
    assert not (tmp_path / "out").exists()


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [resnet20\nmethods: phew")
    with pytest.raises(SweepConfigError, match="malformed"):
        load_config(str(bad))
    with pytest.raises(SweepConfigError, match="no such file"):
        load_config(str(tmp_path / "none.yaml"))
    toml = tmp_path / "grid.toml"
    toml.write_text('models = ["digits_mlp"]\nmethods = ["phew"]\ndensities = [0.1]\nseeds = [3]\n')
    cfg = load_config(str(toml))
    assert cfg.seeds == [3] and cfg.name == "grid"


def test_submits_to_a_running_scheduler(tmp_path):
    from dask.distributed import LocalCluster

    cfg = {"models": ["digits_mlp"], "methods": ["phew", "random"], "densities": [0.1, 0.02], "seeds": 1}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        level = logging.getLogger("distributed").level
        res = run_sweep(_write(tmp_path, cfg), str(tmp_path / "out"), scheduler=cluster.scheduler_address,
                        report=False)
        assert logging.getLogger("distributed").level == level  # (the client closed: Dask's logging as it was)
    assert res.done == 4 and res.failed == 0
    assert len(read_sweep(str(tmp_path / "out"))) == 4


@pytest.mark.parametrize("name", ["sweep.yaml", "sweep-train.yaml"])
def test_documented_example_configs_are_valid(name):
    from tests import ROOT as here
    cfg = load_config(os.path.join(here, "docs", "examples", name))
    assert cfg.expand("/tmp/unused")
