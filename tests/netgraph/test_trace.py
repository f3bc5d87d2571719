"""Building the unit graph: zoo models, structure, clear errors for what it cannot represent."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import zoo
from netgraph.errors import InvalidInputError, UnsupportedModelError
from tests import models as M


def _prunable(model):
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


@pytest.mark.parametrize("name,conv,linear,shortcuts", [
    ("vgg19", 16, 1, 0), ("resnet20", 21, 1, 7), ("resnet18", 20, 1, 5), ("mlp", 0, 3, 0),
    ("vgg11_bn", 8, 1, 0), ("resnet32", 33, 1, 13),
])
def test_zoo_layer_counts_and_exact_prunable_weights(name, conv, linear, shortcuts):
    model = zoo.build(name)
    g = netgraph.from_torch(model, zoo.input_shape(name))
    assert sum(l.kind == "conv" for l in g.layers) == conv
    assert sum(l.kind == "linear" for l in g.layers) == linear
    assert len(g.shortcuts) == shortcuts
    assert g.num_weights == _prunable(model)
    assert sorted(g.param_names) == sorted(n for n, p in model.named_parameters() if p.dim() > 1)


def test_vgg19_unit_graph_matches_design_numbers():
    g = netgraph.from_torch(zoo.build("vgg19"), (3, 32, 32))
    assert g.num_weights == 20_024_000
    assert g.num_units == 5517
    assert g.num_edges == 2_229_440
    assert [grp.size for grp in g.groups][:3] == [3, 64, 64]


def test_resnet20_projection_shortcuts_share_units_with_the_main_branch():
    g = netgraph.from_torch(zoo.build("resnet20"), (3, 32, 32))
    sc = [l for l in g.layers if l.name.endswith("shortcut.0")]
    assert len(sc) == 2 and all(l.k == 1 for l in sc)
    for l in sc:
        conv2 = g.layer(l.name.replace("shortcut.0", "conv2"))
        assert conv2.dst == l.dst  # the residual add merges the two branches' units
    # every identity shortcut joins groups of equal size, and the graph is topological
    for s in g.shortcuts:
        assert g.groups[s.src].size == g.groups[s.dst].size == s.size
    assert all(e.src < e.dst for e in g.edges())


def test_mlp_on_images_uses_input_features_as_units():
    g = netgraph.from_torch(zoo.build("mlp"), (1, 28, 28))
    assert g.input_group.size == 784
    assert g.layers[0].weight.shape == (300, 784, 1)


def test_conv_then_linear_bundles_hold_all_columns_of_a_channel():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    g = netgraph.from_torch(model, (2, 6, 6))
    conv, fc = g.layers
    assert g.input_group.size == 2 and fc.weight.shape == (5, 3, 16)
    idx = fc.bundle_elements(v=4, u=2)
    np.testing.assert_array_equal(model[2].weight.detach().numpy()[idx], fc.weight[4, 2])
    idx = conv.bundle_elements(v=1, u=0)
    np.testing.assert_array_equal(model[0].weight.detach().numpy()[idx], conv.weight[1, 0])


def test_graph_views_the_weights_instead_of_copying():
    """Issue 13: the graph views the model's weight memory (read-only), it does not copy it."""
    model = M.mlp((4, 3, 2))
    g = netgraph.from_torch(model, (4,))
    w = g.layers[0].weight
    assert np.shares_memory(w, model[1].weight.detach().numpy())
    assert not w.flags.writeable
    with torch.no_grad():
        model[1].weight.add_(1.0)
    np.testing.assert_array_equal(w.reshape(model[1].weight.shape), model[1].weight.detach().numpy())
    half = M.mlp((4, 3, 2)).double()  # float64 is viewed too; other dtypes are copied to float32
    assert np.shares_memory(netgraph.from_torch(half, (4,)).layers[0].weight, half[1].weight.detach().numpy())


def test_training_mode_is_restored_and_bn_stats_untouched():
    model = M.randomize_bn(M.Residual1x1())
    model.train()
    var = model.blocks[0].b1.running_var.clone()
    netgraph.from_torch(model, M.RESIDUAL_INPUT)
    assert model.training
    assert torch.equal(model.blocks[0].b1.running_var, var)


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.flatten(torch.cat([self.a(x), self.b(x)], 1), 1))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.attn(x, x, x)[0][:, 0])


class _Control(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


@pytest.mark.parametrize("model,shape,words", [
    (M.lstm_model(), (5, 4), ["rnn", "LSTM", "Supported:"]),
    (_Attention(), (5, 4), ["attn", "MultiheadAttention"]),
    (nn.Sequential(nn.ConvTranspose2d(3, 2, 2), nn.Flatten(), nn.Linear(8, 2)), (3, 1, 1), ["ConvTranspose2d"]),
    (_Control(), (3,), ["control flow", "tensor value", "_Control"]),
    (nn.Sequential(nn.Linear(3, 4), nn.Softmax(-1), nn.Linear(4, 2)), (3,), ["softmax", "last operation"]),
])
def test_unsupported_models_raise_a_clear_error(model, shape, words):
    with pytest.raises(UnsupportedModelError) as info:
        netgraph.from_torch(model, shape)
    for w in words:
        assert w in str(info.value)


def test_softmax_at_the_end_is_accepted():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.LogSoftmax(-1))
    g = netgraph.from_torch(model, (3,))
    assert g.output_group.size == 2


def test_shared_weights_are_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    with pytest.raises(ValueError, match="shared weights"):
        netgraph.from_torch(Shared(), (3,))


@pytest.mark.parametrize("shape", [(), (0, 3), "abc", (3, -1), None])
def test_bad_input_shapes(shape):
    with pytest.raises(InvalidInputError, match="input_shape"):
        netgraph.from_torch(M.mlp((3, 2)), shape)


def test_input_shape_that_does_not_fit_the_model():
    with pytest.raises(InvalidInputError, match="failed"):
        netgraph.from_torch(M.mlp((3, 2)), (5,))


def test_nan_weights_are_refused_with_the_parameter_name():
    model = M.mlp((3, 4, 2))
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match=r"'3\.weight'.*NaN"):
        netgraph.from_torch(model, (3,))


def test_not_a_module():
    with pytest.raises(InvalidInputError, match="torch.nn.Module"):
        netgraph.from_torch(lambda x: x, (3,))


def test_zoo_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = zoo.build("resnet20", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = zoo.build("resnet20", seed=3)
    c = zoo.build("resnet20", seed=4)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_user_model_spec_and_unknown_model():
    model, shape, spec = zoo.load_model("tests.models:tiny_mlp", "6", seed=1)
    assert shape == (6,) and spec == {"name": "tests.models:tiny_mlp", "input_shape": [6], "seed": 1}
    with pytest.raises(InvalidInputError, match="input-shape"):
        zoo.load_model("tests.models:tiny_mlp")
    with pytest.raises(InvalidInputError, match="unknown model"):
        zoo.load_model("vgg1000")
    with pytest.raises(InvalidInputError, match="no callable"):
        zoo.load_model("tests.models:nothing_here", "6")


@pytest.mark.parametrize("layer,shape", [(nn.Linear(5, 3), (5,)), (nn.Conv2d(2, 4, 3, padding=1), (2, 6, 6))])
def test_a_model_that_is_one_layer_traces_with_its_own_parameter_names(layer, shape):
    """A bare Linear or Conv (a logistic regression) is the graph of the same layer in a
    container, its parameter named ``weight`` as in ``layer.named_parameters()``."""
    from netgraph import flows

    torch.manual_seed(0)
    layer.reset_parameters()
    g, wrapped = netgraph.from_torch(layer, shape), netgraph.from_torch(nn.Sequential(layer), shape)
    assert g.param_names == ["weight"] and [l.name for l in g.layers] == [""]
    assert g.num_weights == layer.weight.numel()
    assert flows.log10_synflow_R(g) == flows.log10_synflow_R(wrapped)
    np.testing.assert_array_equal(flows.synflow_scores(g)["weight"], flows.synflow_scores(wrapped)["0.weight"])
    if isinstance(layer, nn.Linear):  # ones in: R is the sum of |w|, each score its |w|
        w = layer.weight.detach().double().abs().numpy()
        assert np.isclose(10 ** flows.log10_synflow_R(g), w.sum(), rtol=1e-12)
        np.testing.assert_allclose(flows.synflow_scores(g)["weight"], w, rtol=1e-12)
    ms = netgraph.sparsify(layer, "synflow", 0.5, input_shape=shape, seed=0)
    ms.check(layer)  # the masks fit the model as given
    assert list(ms) == ["weight"]
    assert torch.equal(ms["weight"], netgraph.sparsify(wrapped, "synflow", 0.5, seed=0)["0.weight"])
