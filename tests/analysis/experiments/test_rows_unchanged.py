"""Compare, sweep runs and the quick topology study give the rows they gave before the
redesign around one run function and one metric table (recorded in tests/data/ with the
code before the change). New columns may appear; every recorded value must be the same."""

import json
import math
import os

import pandas as pd
import pytest

import analysis
from analysis.experiments import reproduce, sweep
from tests import ROOT

DATA = os.path.join(ROOT, "tests", "data")


def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return a == b or (math.isinf(a) and a == b) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def _check(new_rows, path):
    old_rows = json.load(open(os.path.join(DATA, path)))
    assert len(new_rows) == len(old_rows)
    for old, new in zip(old_rows, new_rows):
        diff = {k: (v, new.get(k, "<missing>")) for k, v in old.items() if not _same(v, new.get(k, "<missing>"))}
        assert not diff, f"{path}: changed values {diff}"


def test_compare_rows_unchanged():
    df = analysis.compare("digits_mlp", ["phew", "synflow", "random", "snip", "phew:bias=uniform"], [0.1, 0.02],
                          seeds=2, data="digits")
    _check(json.loads(df.to_json(orient="records")), "rows_compare.json")


def test_sweep_rows_unchanged():
    cfg = sweep.load_config({"name": "t", "models": ["digits_cnn"], "methods": ["phew", "synflow-l2", "grasp"],
                             "densities": [0.05], "seeds": [1], "data": "digits", "save_masks": False})
    _check([sweep.execute(run) for run in cfg.expand("unused")], "rows_sweep.json")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_topology_rows_unchanged(tmp_path):
    df = reproduce.run_topology(reproduce.QUICK_TOPOLOGY, tmp_path)
    _check(json.loads(pd.DataFrame(df).to_json(orient="records")), "rows_reproduce_topology.json")
