"""The committed MNIST-1D results are what the current code computes (slow: re-runs a sample).

One run per (network, method) of the study's grid, spread over the densities and seeds, is
trained again and its row of ``docs/reproduction/mnist1d_results.csv`` must come back with the
same bytes: the mask, its metrics, the accuracy and the loss and accuracy curves.
"""

import os

import pandas as pd
import pytest

pytest.importorskip("mnist1d")

from analysis.experiments import mnist1d as M  # noqa: E402
from analysis.experiments.compare import to_csv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RESULTS = os.path.join(ROOT, "docs", "reproduction", "mnist1d_results.csv")


def _sample(study):
    grid = study.grid()
    picked, seen = [], {}
    for model, spec, d, seed in grid:
        i = seen.setdefault((model, spec[0]), len(seen))
        want_d = 1.0 if spec[0] == M.DENSE else study.densities[i % len(study.densities)]
        if d == want_d and seed == i % study.seeds:
            picked.append((model, spec, d, seed))
    return picked


@pytest.mark.slow
def test_a_sample_of_the_committed_runs_is_reproduced_byte_for_byte(tmp_path):
    study = M.Mnist1dStudy()
    shared = (os.fspath(tmp_path / "data"), tuple(study.data), study.prune_per_class, study.prune_seed,
              study.config, tuple(study.early_epochs))
    tasks = _sample(study)
    assert len(tasks) == len(study.models) * (len(study.methods) + 1)
    rows = pd.DataFrame([M._run_task((t, shared)) for t in tasks])
    to_csv(rows.drop(columns=[c for c in M.TIMINGS if c in rows]), tmp_path / "new.csv",
           list_columns=M.CURVE_COLUMNS, timings=False)
    new = pd.read_csv(tmp_path / "new.csv", dtype=str)
    old = pd.read_csv(RESULTS, dtype=str)
    keys = list(M.KEYS)
    merged = new.merge(old, on=keys, how="left", suffixes=("", "_committed"), indicator=True)
    assert (merged["_merge"] == "both").all()
    for c in new.columns:
        if c not in keys:
            bad = merged[merged[c] != merged[f"{c}_committed"]]
            assert bad.empty, f"{c} differs for {bad[keys].to_dict('records')}"
