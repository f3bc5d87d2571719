"""Reduced versions of the reproduction studies, and the training harness."""

import json

import pandas as pd
import torch
from click.testing import CliRunner

import netgraph
from analysis.experiments import reproduce
from analysis.experiments.training import TrainConfig, train
from netgraph import zoo
from analysis.cli import main
from netgraph.data import digits


def test_quick_topology_study(tmp_path):
    df = reproduce.run_topology(reproduce.QUICK_TOPOLOGY, tmp_path)
    s = reproduce.QUICK_TOPOLOGY
    assert len(df) == len(s.models) * len(s.methods) * len(s.densities) * s.seeds
    claims = reproduce.topology_claims(df)
    assert [c["claim"][:2] for c in claims] == ["1a", "1b", "2a", "2b"]
    assert all(c["holds"] in ("yes", "mostly", "partly", "no") for c in claims)
    md = (tmp_path / "topology.md").read_text()
    assert "## Claims" in md and "widths_resnet20.png" in md
    for f in ("topology_results.csv", "widths_resnet20.png", "path_kernel_trace.png", "bottleneck.png",
              "effective_density.png"):
        assert (tmp_path / f).exists()


def test_quick_training_study_is_deterministic(tmp_path):
    a = reproduce.run_training(reproduce.QUICK_TRAINING, tmp_path / "a")
    b = reproduce.run_training(reproduce.QUICK_TRAINING, tmp_path / "b")
    s = reproduce.QUICK_TRAINING
    assert len(a) == len(s.models) * s.seeds * (1 + len(s.methods) * len(s.densities))
    assert a["test_acc"].tolist() == b["test_acc"].tolist()
    assert a["loss_curve"].tolist() == b["loss_curve"].tolist()
    assert set(a["method"]) == {"dense", *s.methods}
    assert all(len(c) == s.config.epochs + 1 for c in a["loss_curve"])
    back = pd.read_csv(tmp_path / "a" / "training_results.csv")
    assert json.loads(back["loss_curve"][0]) == a["loss_curve"][0]
    for f in ("training.md", "accuracy_vs_density.png", "loss_curves.png"):
        assert (tmp_path / "a" / f).exists()
    assert "## Claims" in (tmp_path / "a" / "training.md").read_text()
    same = (tmp_path / "a" / "training_results.csv").read_bytes() == (tmp_path / "b" / "training_results.csv").read_bytes()
    assert same, "two runs of the training study gave different result tables"


def test_training_keeps_pruned_weights_at_zero_and_leaves_the_model_alone():
    model = zoo.build("digits_cnn", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = netgraph.sparsify(model, "phew", 0.05, seed=0, input_shape=(1, 8, 8))
    res = train(model, masks, digits((1, 8, 8)), TrainConfig(epochs=2), seed=0)
    assert len(res["train_loss"]) == 3 and res["train_loss"][2] < res["train_loss"][0]
    assert 0.0 <= res["final_test_acc"] <= 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_reproduce_command_quick(tmp_path):
    res = CliRunner().invoke(main, ["reproduce", "--study", "training", "--quick", "--quiet", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "PHEW trains to better test accuracy" in res.output and (tmp_path / "training.md").exists()
