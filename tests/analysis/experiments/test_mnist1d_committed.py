"""The committed MNIST-1D results are what the current code computes (slow: re-runs a sample).

One run per (network, method) of the study's grid, spread over the densities and seeds, is
trained again and its row of ``docs/reproduction/mnist1d_results.csv`` must come back: the mask
and its metrics with the same bytes (the path-kernel trace to 1e-12: numpy's SIMD ``exp`` and
``log`` round differently on different CPUs, 2e-16 measured), and the accuracy and the loss and
accuracy curves with the same bytes on the CPU that ran the study (:data:`TRAINED`).
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


#: The columns training writes. torch's CPU kernels round differently on different CPUs (AVX2,
#: AVX512), and twelve epochs of Adam amplify a last-bit difference: on a 2-core AVX512 VM the
#: sample's test accuracy differed from the committed one by up to 1.7 points, its masks and
#: metrics not at all. So these columns reproduce byte for byte on the study's CPU only.
TRAINED = (("test_acc", "final_train_loss", "loss_curve", "acc_curve")
           + tuple(f"loss_epoch{e}" for e in M.Mnist1dStudy().early_epochs))


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """The sample's rows run again beside their committed rows (suffix ``_committed``)."""
    tmp_path = tmp_path_factory.mktemp("mnist1d")
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
    both = new.merge(old, on=list(M.KEYS), how="left", suffixes=("", "_committed"), indicator=True)
    assert (both["_merge"] == "both").all()
    return both, [c for c in new.columns if c not in M.KEYS]


def _differing(merged, columns, rtol=0.0):
    """``{column: keys of the rows whose value differs}`` (numbers within ``rtol`` agree)."""
    both, keys = merged[0], list(M.KEYS)
    out = {}
    for c in columns:
        a, b = both[c], both[f"{c}_committed"]
        bad = a != b
        if rtol and bad.any():
            x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
            bad &= ~((x - y).abs() <= rtol * y.abs())
        if bad.any():
            out[c] = both.loc[bad, keys].to_dict("records")
    return out


@pytest.mark.slow
def test_the_committed_runs_masks_and_metrics_are_reproduced(merged):
    assert not _differing(merged, [c for c in merged[1] if c not in TRAINED], rtol=1e-12)


@pytest.mark.slow
@pytest.mark.xfail(reason="training reproduces byte for byte only on the CPU that ran the study (see TRAINED)",
                   strict=False)
def test_the_committed_runs_training_is_reproduced_on_the_studys_cpu(merged):
    assert not _differing(merged, [c for c in merged[1] if c in TRAINED])
