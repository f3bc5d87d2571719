"""Sweep configs are validated point by point before any run; a changed config cannot be
resumed into the same database by mistake; failures are counted and reported."""

import pytest

from analysis.experiments import sweep
from analysis.experiments.sweep_config import SweepConfigError, load_config

BASE = {"name": "v", "models": ["digits_mlp"], "methods": ["random"], "densities": [0.2], "seeds": 1,
        "save_masks": False}


@pytest.mark.parametrize("change,words", [
    ({"seeds": [0, -1]}, "seeds[1]: seed must be an integer in [0, 4294967295], got -1"),
    ({"seeds": [0, 2**40]}, "seeds[1]"),
    ({"seeds": [1, 1]}, "seeds lists 1 twice (entries 1 and 2); give each value once"),
    ({"methods": ["phew", "phew"]}, "methods lists 'phew' twice"),
    ({"methods": ["phew", "phew:bias=magnitude"]}, "methods lists 'phew:bias=magnitude' (as 'phew') twice"),
    ({"densities": [0.2, 0.2]}, "densities lists 0.2 twice"),
    ({"models": ["digits_mlp", {"name": "digits_mlp"}]}, "models lists 'digits_mlp' twice"),
    ({"seeds": [0.5]}, "seeds[0]"),
    ({"train": {"nesterov": "false"}}, "nesterov must be true or false, got 'false'"),
    ({"train": {"epochs": "3"}}, "epochs must be an integer"),
    ({"methods": [{"name": "phew", "options": {"kernel_conserved": "false"}}]},
     "option kernel_conserved of method 'phew' must be true or false, got 'false'"),
    ({"methods": [{"name": "synflow", "options": {"iterations": 2.5}}]}, "must be an integer"),
    ({"max_flow": "false"}, "max_flow: must be true or false"),
    ({"colour": "red"}, "unknown key"),
    ({"train": {"epochs": 1, "batch_size": -5}}, "batch_size must be a whole number >= 1, got -5"),
    ({"train": {"epochs": 0}}, "epochs must be a whole number >= 1, got 0"),
    ({"train": {"momentum": 2.0}}, "momentum must be a number in [0, 1), got 2.0"),
    ({"train": {"lr": float("nan")}}, "lr must be a finite number > 0, got nan"),
    ({"train": {"weight_decay": -1.0}}, "weight_decay must be a finite number >= 0"),
    ({"train": {"optimizer": "foo"}}, "optimizer must be one of sgd, adam, got 'foo'"),
    ({"methods": [{"name": "phew", "options": [1, 2]}]}, "methods[0]: name and label are strings and options a mapping"),
    ({"methods": [{"name": 5}]}, "methods[0]: name and label are strings"),
    ({"methods": ["phew:bias=uniform,bias=inverse"]}, "method option 'bias' is given twice"),
])
def test_every_grid_point_is_validated(change, words):
    with pytest.raises(SweepConfigError) as info:
        load_config({**BASE, **change})
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_the_config_hash_names_the_grid():
    a, b = load_config(BASE), load_config({**BASE, "densities": [0.1]})
    assert a.hash == load_config(dict(BASE)).hash and a.hash != b.hash


def _fake_dispatch(todo, handle, workers, scheduler):
    for run in todo:
        handle(sweep.execute(run))


def test_resume_refuses_a_changed_config_unless_forced(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "_dispatch", _fake_dispatch)
    out = str(tmp_path / "s")
    first = sweep.run_sweep(BASE, out, report=False)
    assert (first.done, first.failed) == (1, 0)
    changed = {**BASE, "densities": [0.2, 0.1]}
    with pytest.raises(sweep.InvalidInputError, match="another configuration"):
        sweep.run_sweep(changed, out, resume=True, report=False)
    again = sweep.run_sweep(BASE, out, resume=True, report=False)
    assert (again.skipped, again.done) == (1, 0)
    forced = sweep.run_sweep(changed, out, resume=True, force=True, report=False)
    assert (forced.skipped, forced.done) == (1, 1)


def test_failed_runs_are_counted_with_their_first_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "_dispatch", _fake_dispatch)

    def broken(*args, **kwargs):
        raise RuntimeError("boom in the method")

    monkeypatch.setattr(sweep, "run_one", broken)
    res = sweep.run_sweep({**BASE, "seeds": 2}, str(tmp_path / "f"), report=False)
    assert (res.done, res.failed) == (0, 2)
    assert len(res.errors) == 2 and res.errors[0][3] == "RuntimeError: boom in the method"
