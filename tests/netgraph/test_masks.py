"""Mask sets: validation, files readable without the library, application to models."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import MaskSet, zoo
from netgraph.errors import InvalidInputError, MaskMismatchError, NotAMaskFileError
from tests import models as M


def _half_masks(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MaskSet({n: torch.rand(p.shape, generator=g) < 0.5 for n, p in model.named_parameters() if p.dim() > 1},
                   meta={"method": "test", "density": 0.5, "seed": seed, "model": {"name": type(model).__name__}})


def test_round_trip_and_plain_torch_load(tmp_path):
    model = zoo.build("resnet20")
    ms = _half_masks(model)
    path = tmp_path / "m.pt"
    ms.save(path)
    blob = torch.load(path, weights_only=True)  # no netgraph needed
    assert set(blob) == {"masks", "meta"}
    assert blob["meta"]["format"] == "netgraph-masks/1"
    assert blob["meta"]["library_version"] == netgraph.__version__
    assert blob["meta"]["method"] == "test" and blob["meta"]["seed"] == 0
    assert blob["meta"]["kept"] == ms.num_kept
    back = MaskSet.load(path)
    assert list(back) == list(ms)
    for n in ms:
        assert back[n].dtype == torch.bool and torch.equal(back[n], ms[n])
    assert back.achieved_density == pytest.approx(ms.achieved_density)
    with pytest.warns(DeprecationWarning, match="achieved_density"):
        assert back.density == back.achieved_density


def test_apply_with_prune_keeps_pruned_weights_at_zero_through_training():
    torch.manual_seed(0)
    model = M.mlp((6, 5, 3))
    ms = _half_masks(model)
    ms.apply(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(8, 6)).pow(2).sum().backward()
        opt.step()
    for n, m in ms.items():
        mod = model.get_submodule(n.rsplit(".", 1)[0])
        assert torch.all(mod.weight[~m] == 0)
        assert torch.all(mod.weight[m] != 0)
    # masks check against a pruned model too (weight_orig + weight_mask)
    ms.check(model)
    netgraph.masks.remove_pruning(model)
    assert all("weight_orig" not in n for n, _ in model.named_parameters())


def test_apply_multiply():
    model = M.mlp((6, 5, 3))
    ms = _half_masks(model)
    ms.apply(model, how="multiply")
    for n, m in ms.items():
        assert torch.all(dict(model.named_parameters())[n][~m] == 0)
    with pytest.raises(InvalidInputError, match="'prune', 'multiply'"):
        ms.apply(model, how="add")


def test_mismatched_mask_names_parameter_and_both_shapes(tmp_path):
    ms = _half_masks(zoo.build("resnet20"))
    path = tmp_path / "r20.pt"
    ms.save(path)
    other = zoo.build("resnet32")
    with pytest.raises(MaskMismatchError) as info:
        MaskSet.load(path).apply(other)
    msg = str(info.value)
    assert "does not cover" in msg and "layers.0.3.conv1.weight" in msg and "'ResNet'" in msg
    wrong = MaskSet({"fc.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(MaskMismatchError, match=r"'fc.weight'.*\(3, 3\).*\(10, 64\)"):
        wrong.apply(zoo.build("resnet20"), strict=False)
    with pytest.raises(MaskMismatchError, match="no such parameter"):
        MaskSet({"nope.weight": torch.ones(1, dtype=torch.bool)}).apply(zoo.build("resnet20"), strict=False)
    # a partial mask set applies when asked
    part = MaskSet({"fc.weight": torch.zeros(10, 64, dtype=torch.bool)})
    model = zoo.build("resnet20")
    part.apply(model, strict=False)
    assert torch.all(model.fc.weight == 0)


def test_graph_refuses_masks_of_another_model():
    g = netgraph.from_torch(zoo.build("resnet20"), (3, 32, 32))
    with pytest.raises(MaskMismatchError, match="no mask for parameters"):
        g.layer_masks(_half_masks(zoo.build("mlp")))


@pytest.mark.parametrize("content", ["garbage", "pickle", "dict", "state_dict", "float_masks"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_mask_files(tmp_path, content):
    path = tmp_path / "x.pt"
    if content == "garbage":
        path.write_bytes(b"\x00\x01 definitely not a mask file")
    elif content == "pickle":
        with open(path, "wb") as f:
            pickle.dump(object(), f)
    elif content == "dict":
        torch.save({"weights": 1}, path)
    elif content == "state_dict":
        torch.save(nn.Linear(2, 2).state_dict(), path)
    else:
        torch.save({"masks": {"w": torch.ones(2)}, "meta": {}}, path)
    with pytest.raises(NotAMaskFileError, match="not a mask file"):
        MaskSet.load(path)


def test_missing_file():
    with pytest.raises(NotAMaskFileError, match="no such file"):
        MaskSet.load("/nonexistent/masks.pt")


def test_validation_on_insertion():
    ms = MaskSet()
    ms["a"] = np.array([[1, 0], [0, 1]])
    assert ms["a"].dtype == torch.bool and ms.num_kept == 2
    with pytest.raises(InvalidInputError, match="other than 0 and 1"):
        ms["b"] = torch.tensor([0.5, 1.0])
    with pytest.raises(InvalidInputError, match="parameter names"):
        ms[3] = torch.ones(2)
    with pytest.raises(InvalidInputError, match="tensor or array"):
        ms["c"] = [1, 0]
    assert ms.report()[0] == {"param": "a", "shape": [2, 2], "kept": 2, "total": 4, "density": 0.5}


def test_from_graph_reshapes_layer_masks_to_parameters():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    g = netgraph.from_torch(model, (2, 6, 6))
    lm = g.dense_masks()
    lm[1][4, 2, :] = False  # drop bundle channel 2 -> neuron 4
    ms = MaskSet.from_graph(g, lm, meta={"method": "x"})
    m = ms["2.weight"]
    assert m.shape == (5, 48)
    assert not m[4, 32:48].any() and m[4, :32].all() and m[:4].all()
    assert ms.meta["model"]["name"] == "Sequential"
