"""Bad input at the Python API's boundary: one netgraph error, one line saying what is accepted.

Each case was a silent wrong answer or a bare AttributeError/TypeError/RuntimeError before.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import MaskSet, export, load_masks
from netgraph.errors import InvalidInputError, MaskMismatchError
from netgraph.masked import as_masked


def _model(seed=0, hidden=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))


@pytest.fixture(scope="module")
def g():
    return netgraph.from_torch(_model(), (4,))


def _rand_masks(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((3, 4)) < 0.5, rng.random((2, 3)) < 0.5]


# -- 1. masks given to a graph: shape and values --------------------------------------------


def test_layer_masks_accept_parameter_and_layer_forms_alike(g):
    params = _rand_masks()
    layer_form = [m.reshape(layer.weight.shape) for m, layer in zip(params, g.layers)]
    as_01 = [m.astype(np.float32) for m in params]  # 0/1 numbers are a mask
    named = {layer.param: torch.from_numpy(m) for layer, m in zip(g.layers, params)}
    want = g.layer_masks(layer_form)
    for masks in (params, as_01, named, MaskSet(named)):
        got = g.layer_masks(masks)
        assert all(a.dtype == bool and np.array_equal(a, b) for a, b in zip(got, want))
    assert [int(m.sum()) for m in want] == [int(m.sum()) for m in params]


def test_list_mask_of_the_transposed_shape_is_refused(g):
    # (4, 3) has the 12 elements of the (3, 4) weight: it used to be reshaped silently
    with pytest.raises(MaskMismatchError, match=r"'0.weight' has shape \(4, 3\); accepted: \(3, 4\)"):
        as_masked(g, [np.ones((4, 3), bool), np.ones((2, 3), bool)])


@pytest.mark.parametrize("bad", [
    np.full((3, 4), 0.5), np.full((3, 4), np.nan), np.full((3, 4), 2), np.full((3, 4), -1.0),
    torch.full((3, 4), 0.3), np.array([["1"] * 4] * 3),
], ids=["half", "nan", "two", "minus-one", "torch-scores", "strings"])
@pytest.mark.parametrize("container", ["list", "dict"])
def test_scores_are_not_masks(g, bad, container):
    masks = [bad, np.ones((2, 3), bool)]
    if container == "dict":
        masks = {layer.param: m for layer, m in zip(g.layers, masks)}
    why = r"mask for '0.weight' has (values other than 0 and 1|dtype .*which is not a mask)"
    with pytest.raises(InvalidInputError, match=why):
        as_masked(g, masks)
    with pytest.raises(InvalidInputError, match=why):  # MaskSet: the same rule
        MaskSet({"0.weight": bad})


def test_a_mask_that_is_not_an_array_is_refused(g):
    with pytest.raises(InvalidInputError, match=r"mask for '0.weight' must be a bool tensor or array"):
        g.layer_masks([[[1] * 4] * 3, np.ones((2, 3), bool)])


def test_dict_mask_of_a_wrong_shape_names_both_shapes(g):
    masks = {"0.weight": torch.ones(4, 3, dtype=torch.bool), "2.weight": torch.ones(2, 3, dtype=torch.bool)}
    with pytest.raises(MaskMismatchError, match=r"'0.weight' has shape \(4, 3\); accepted: \(3, 4\)"):
        g.layer_masks(masks)


# -- 2. sparsify(model, graph=g) needs g to be the model's graph ----------------------------


def test_sparsify_refuses_the_graph_of_another_model(g):
    other = _model(hidden=5)  # same parameter names, other shapes
    with pytest.raises(InvalidInputError, match=r"not the graph of this model.*'0.weight'.*\(3, 4\).*\(5, 4\)"):
        netgraph.sparsify(other, "random", 0.5, graph=g)
    renamed = nn.Sequential(nn.Flatten(), _model())  # same shapes, other names
    with pytest.raises(InvalidInputError, match="'0.weight'.*has no such parameter"):
        netgraph.sparsify(renamed, "random", 0.5, graph=g)
    with pytest.raises(InvalidInputError, match="graph must be a NetGraph"):
        netgraph.sparsify(_model(), "random", 0.5, graph="g")
    same = _model(seed=1)  # the same architecture: its graph fits (names and shapes)
    ms = netgraph.sparsify(same, "random", 0.5, graph=g)
    assert ms.num_kept == round(0.5 * g.num_weights)


# -- 3. input shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["64", "4", b"4", "1,8,8", 4, 4.0, (4.0,), (2.5, 2), (True,), (), (0,), (-4,),
                                   None, {"a": 4}])
def test_from_torch_refuses_shapes_that_are_not_sequences_of_positive_ints(shape):
    with pytest.raises(InvalidInputError, match=r"^input_shape must be a sequence of positive integers .*got "):
        netgraph.from_torch(_model(), shape)


@pytest.mark.parametrize("shape", [(4,), [4], torch.Size([4]), np.array([4]), (np.int64(4),)])
def test_from_torch_takes_sequences_of_ints(shape):
    assert netgraph.from_torch(_model(), shape).input_shape == (4,)


# -- 4. MaskSet, mask files and export -----------------------------------------------------------


def test_maskset_constructor_and_apply_check_their_arguments():
    with pytest.raises(InvalidInputError, match="MaskSet takes a mapping parameter name -> mask, got list"):
        MaskSet([1, 2])
    with pytest.raises(InvalidInputError, match="meta must be a dict"):
        MaskSet({}, meta=[("method", "x")])
    ms = MaskSet({"0.weight": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(InvalidInputError, match="MaskSet.check takes a torch.nn.Module, got str"):
        ms.apply("x")
    with pytest.raises(InvalidInputError, match="MaskSet.check takes a torch.nn.Module, got NoneType"):
        ms.check(None, strict=False)
    with pytest.raises(InvalidInputError, match="masks must be a netgraph.MaskSet, got dict"):
        export.apply_parametrize(_model(), {"0.weight": torch.ones(3, 4, dtype=torch.bool)})


def test_mask_file_paths(tmp_path):
    ms = MaskSet({"0.weight": torch.ones(3, 4, dtype=torch.bool)})
    for save in (ms.save, lambda p: export.save(ms, p), lambda p: export.save_safetensors(ms, p)):
        with pytest.raises(InvalidInputError, match="must name a file, got a directory"):
            save(tmp_path)
        with pytest.raises(InvalidInputError, match="must be a file path .*got NoneType"):
            save(None)
    for load in (load_masks, MaskSet.load, export.load, export.load_safetensors):
        with pytest.raises(InvalidInputError, match="must be a file path .*got NoneType"):
            load(None)
    with pytest.raises(InvalidInputError, match="masks must be a netgraph.MaskSet, got dict"):
        export.save({"0.weight": torch.ones(3, 4, dtype=torch.bool)}, tmp_path / "m.pt")
    ms.save(tmp_path / "m.pt")  # a file path still works, as str or bytes too
    assert torch.equal(load_masks(str(tmp_path / "m.pt"))["0.weight"], ms["0.weight"])
    assert torch.equal(export.load(bytes(tmp_path / "m.pt"))["0.weight"], ms["0.weight"])


def test_export_functions_take_modules():
    for fn in (export.to_sparse, export.masks_from_model, export.remove_parametrize):
        with pytest.raises(InvalidInputError, match=f"{fn.__name__} takes a torch.nn.Module, got str"):
            fn("x")


@pytest.mark.parametrize("max_density", [2, -1, math.nan, math.inf, "0.5", True, None])
def test_to_sparse_max_density_is_a_fraction(max_density):
    with pytest.raises(InvalidInputError, match=r"max_density must be a number in \[0, 1\]"):
        export.to_sparse(_model(), max_density=max_density)


def test_to_sparse_max_density_bounds_are_kept():
    model = _model()
    with torch.no_grad():
        model[0].weight[0] = 0  # layer 0 keeps 2/3 of its weights, layer 2 all
    x = torch.randn(5, 4)
    for d, sparse_layers in ((0, []), (0.5, []), (2 / 3, [0]), (1, [0, 2])):
        out = export.to_sparse(model, max_density=d)
        assert [i for i in (0, 2) if isinstance(out[i], export.SparseLinear)] == sparse_layers
        assert torch.allclose(out(x), model(x), atol=1e-6)


def test_a_model_is_checked_by_one_rule_that_names_a_graph_given_instead(g):
    for fn, what in ((lambda m: netgraph.from_torch(m, (4,)), "from_torch"), (MaskSet().check, "MaskSet.check"),
                     (export.to_sparse, "to_sparse")):
        with pytest.raises(InvalidInputError, match=f"^{what} takes a torch.nn.Module, got NetGraph \\(a NetGraph "
                                                    "is not a model: pass the model it was traced from\\)$"):
            fn(g)


@pytest.mark.parametrize("bad", ["abc", "10", 2.5, True, 0, -3, None.__class__])
def test_counts_are_positive_integers_everywhere(bad):
    """One rule (``_validate.check_positive_int``): a float or a string was truncated, read as
    digits or raised a bare ValueError in one place or another."""
    from netgraph import sources, zoo

    calls = [lambda: zoo.build("mlp", num_classes=bad), lambda: sources.build("torchvision", "resnet18", num_classes=bad),
             lambda: netgraph.sparsify(_model(), "synflow", 0.5, input_shape=(4,), iterations=bad),
             lambda: netgraph.sparsify(_model(), "synflow-schedule", 0.5, input_shape=(4,), iterations=bad)]
    for call in calls:
        with pytest.raises(InvalidInputError, match=r"(num_classes|iterations)\b.* must be (a positive integer|an integer), got "):
            call()
