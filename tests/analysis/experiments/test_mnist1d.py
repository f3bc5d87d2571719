"""The MNIST-1D study: data generated offline without touching global state, networks, and a
quick study whose tables are byte-identical across runs."""

import random

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("mnist1d")

from analysis.experiments import mnist1d as study  # noqa: E402
from analysis.experiments.training import TrainConfig  # noqa: E402
from netgraph import from_torch, zoo1d  # noqa: E402
from netgraph.data import MNIST1D_ARGS, balanced_batch, mnist1d  # noqa: E402
from netgraph.errors import InvalidInputError  # noqa: E402

TABLES = ("mnist1d_results.csv", "mnist1d_cells.csv", "mnist1d_paired.csv")


def test_mnist1d_is_generated_offline_cached_and_leaves_global_state(tmp_path, monkeypatch):
    import requests

    monkeypatch.setattr(requests, "get", lambda *a, **k: pytest.fail("MNIST-1D must not be downloaded"))
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    a = mnist1d(tmp_path, num_samples=200)
    assert (np.random.get_state()[1] == np_before).all() and random.getstate() == py_before
    files = list(tmp_path.glob("mnist1d_*.npz"))
    assert len(files) == 1
    assert str(np.load(files[0])["args"]).count('"seed": 42') == 1
    b = mnist1d(tmp_path, num_samples=200)  # read back from the cache
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [tuple(t.shape) for t in a] == [(160, 1, 40), (160,), (40, 1, 40), (40,)]
    assert a[0].dtype == torch.float32 and a[1].dtype == torch.int64
    assert MNIST1D_ARGS["num_samples"] == 5000 and MNIST1D_ARGS["train_split"] == 0.8


def test_mnist1d_rejects_unknown_generator_arguments():
    with pytest.raises(InvalidInputError, match="unknown MNIST-1D generator argument"):
        mnist1d(None, samples=10)


def test_balanced_batch_is_class_balanced_and_seeded():
    y = torch.arange(10).repeat(5)
    x = torch.arange(50.0)[:, None]
    xb, yb = balanced_batch(x, y, 3, seed=1)
    assert np.bincount(yb.numpy()).tolist() == [3] * 10
    assert torch.equal(xb, balanced_batch(x, y, 3, seed=1)[0])
    with pytest.raises(InvalidInputError, match="balanced batch"):
        balanced_batch(x, y, 6)


@pytest.mark.parametrize("name, weights", [("mnist1d_mlp", 287_744), ("mnist1d_cnn", 80_448),
                                           ("mnist1d_resnet", 62_136)])
def test_networks_trace_and_have_the_stated_sizes(name, weights):
    net = study.build_model(name, seed=0)
    assert net(torch.zeros(2, *zoo1d.INPUT_SHAPE)).shape == (2, 10)
    assert sum(m.weight.numel() for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))) == weights
    g = from_torch(net, zoo1d.INPUT_SHAPE)
    assert g.output_group.size == 10
    assert torch.equal(study.build_model(name, 0).state_dict()[next(iter(net.state_dict()))],
                       next(iter(net.state_dict().values())))


def test_train_config_optimizer_defaults_to_sgd_and_keeps_sweep_hashes():
    assert TrainConfig().optimizer == "sgd"
    assert "optimizer" not in TrainConfig().as_dict()
    assert TrainConfig(optimizer="adam").as_dict()["optimizer"] == "adam"


def test_quick_study_tables_are_byte_identical(tmp_path):
    from analysis.experiments import reproduce

    a = study.run_mnist1d(study.QUICK_MNIST1D, tmp_path / "a")
    b, claimed = reproduce.run_study("mnist1d", quick=True, out_dir=tmp_path / "b")  # the CLI's path
    assert claimed and {"claim", "measured", "holds"} <= set(claimed[0])
    for name in TABLES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    s = study.QUICK_MNIST1D
    assert len(a) == len(b) == len(s.models) * s.seeds * (1 + len(s.methods) * len(s.densities))
    timings = pd.read_csv(tmp_path / "a" / "mnist1d_timings.csv")
    assert {"train_seconds", "cpu_seconds"} <= set(timings.columns)
    results = pd.read_csv(tmp_path / "a" / "mnist1d_results.csv")
    assert not {"train_seconds", "cpu_seconds", "seconds"} & set(results.columns)
    assert results["test_acc"].between(0, 1).all()
    md = (tmp_path / "a" / "mnist1d.md").read_text()
    assert "## Claims" in md and "[" in md.split("## Claims")[1].split("##")[0]  # effects with intervals
    for fig in ("mnist1d_accuracy", "mnist1d_early_loss_vs_trace", "mnist1d_width_vs_accuracy"):
        assert (tmp_path / "a" / f"{fig}.png").exists()
    assert len(list((tmp_path / "a" / "data").glob("*.npz"))) == 1
    paired = pd.read_csv(tmp_path / "a" / "mnist1d_paired.csv")
    assert set(paired["rival"]) == {"synflow-l2"} and (paired["p_holm"] >= paired["p"]).all()
    # --report-only rebuilds the same tables and figures from the saved results, without training
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").glob("*") if p.suffix in (".csv", ".png")}
    reproduce.run_study("mnist1d", quick=True, out_dir=tmp_path / "a", report_only=True)
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "a").glob("*") if p.suffix in (".csv", ".png")}
    assert "rebuilt from `mnist1d_results.csv`" in (tmp_path / "a" / "mnist1d.md").read_text()
    with pytest.raises(InvalidInputError, match="not this study's grid"):  # a quick run is not the full study
        reproduce.run_study("mnist1d", quick=False, out_dir=tmp_path / "a", report_only=True)


def test_claims_carry_effects_with_intervals():
    from analysis.experiments.mnist1d_report import claims, paired_comparisons

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(5):
        for method, acc, trace in (("phew", 0.8, 1.0), ("synflow", 0.7, 2.0), ("random", 0.5, 0.0)):
            rows.append({"model": "m", "method": method, "target_density": 0.1, "seed": seed,
                         "test_acc": acc + rng.normal(0, 0.01), "log10_path_kernel_trace": trace + rng.normal(0, 0.1),
                         "loss_epoch1": 2.0 - trace + rng.normal(0, 0.1), "mean_width_fraction": acc,
                         "bottleneck_fraction": acc})
    df = pd.DataFrame(rows)
    paired = paired_comparisons(df)
    assert list(paired["rival"]) == ["synflow", "random"]
    assert (paired["verdict"] == "holds").all()
    table = claims(df, paired)
    acc = [c for c in table if c["claim"].startswith("3.")]
    assert len(acc) == 1 and acc[0]["verdict"] == "holds" and "[" in acc[0]["effect"]
    fast = [c for c in table if c["claim"].startswith("learns fast")]
    assert fast[0]["verdict"] == "holds" and "rho -" in fast[0]["effect"]


def test_run_study_dispatches_mnist1d(tmp_path):
    from analysis.experiments import reproduce

    assert "mnist1d" in reproduce.STUDIES
    with pytest.raises(InvalidInputError):
        reproduce.run_study("nope")


@pytest.mark.slow
def test_two_worker_processes_give_the_same_table_as_one(tmp_path):
    import dataclasses

    tiny = dataclasses.replace(study.QUICK_MNIST1D, models=("mnist1d_mlp",), methods=("phew", "snip"), seeds=1,
                               config=TrainConfig(epochs=1, batch_size=64, lr=3e-3, weight_decay=0.0, optimizer="adam"))
    one = study.run_mnist1d(tiny, tmp_path / "one")
    two = study.run_mnist1d(dataclasses.replace(tiny, workers=2), tmp_path / "two")
    assert len(one) == len(two) == 3
    assert (tmp_path / "one" / TABLES[0]).read_bytes() == (tmp_path / "two" / TABLES[0]).read_bytes()
