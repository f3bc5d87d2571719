"""``from_torch(layer_scale="one")``: layer-scale factors scored as 1, checked against the
float64 autograd reference of the same model with its layer scales set to 1."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph import flows
from netgraph.errors import InvalidInputError
from tests.reference import assert_matches_linearised

torchvision = pytest.importorskip("torchvision")
REL = 1e-9
SHAPE = (3, 6, 6)


class ConvNeXtish(nn.Module):
    """Stem, two torchvision ConvNeXt blocks (layer scale 1e-6, circular padding), a head;
    plus a fixed per-channel buffer factor that is *not* a layer scale."""

    def __init__(self):
        super().__init__()
        from torchvision.models.convnext import CNBlock

        self.stem = nn.Conv2d(3, 8, 1)
        self.blocks = nn.Sequential(CNBlock(8, 1e-6, 0.0), CNBlock(8, 1e-6, 0.0))
        for blk in self.blocks:
            blk.block[0].padding_mode = "circular"
        self.register_buffer("factor", torch.linspace(0.5, 2.0, 8).reshape(1, 8, 1, 1))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.blocks(self.stem(x)) * self.factor
        return self.head(x.mean((2, 3)))


def _model():
    torch.manual_seed(0)
    m = ConvNeXtish()
    with torch.no_grad():
        for blk in m.blocks:  # unequal per-channel factors, so that a wrong rule shows
            blk.layer_scale.copy_(torch.linspace(1e-6, 3e-6, 8).reshape(8, 1, 1))
            blk.block[2].weight.uniform_(0.5, 2.0)  # LayerNorm gamma
    return m


def _gamma_one(model):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for blk in m.blocks:
            blk.layer_scale.fill_(1.0)
    return m


def _agree(g, model, masks=None):
    assert_matches_linearised(g, model, SHAPE, (masks,), REL)


def test_layer_scale_one_equals_the_model_with_gamma_one():
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "one" does not warn about small layer scales
        g_one = netgraph.from_torch(model, SHAPE, layer_scale="one")
    _agree(g_one, _gamma_one(model))
    rng = np.random.default_rng(0)
    masks = {l.param: torch.from_numpy(rng.random(l.param_shape) < 0.6) for l in g_one.layers}
    _agree(g_one, _gamma_one(model), masks)
    with pytest.warns(UserWarning, match="layer_scale='one'"):
        g_as_is = netgraph.from_torch(model, SHAPE)
    _agree(g_as_is, model)  # the default keeps the factors
    # two blocks of about 2e-6 on the residual branches: R differs, the buffer factor stays in both
    assert flows.log10_synflow_R(g_one) > flows.log10_synflow_R(g_as_is) + 1
    assert netgraph.sparsify(g_one, "magnitude", 0.3).num_kept == round(0.3 * g_one.num_weights)


def test_layer_scale_choice_is_checked():
    with pytest.raises(InvalidInputError, match="layer_scale='1' must be one of 'as_is', 'one'"):
        netgraph.from_torch(_model(), SHAPE, layer_scale="1")


class FunctionOfParameter(nn.Module):
    """Residual branches scaled by functions of one parameter each (``exp`` of a log scale,
    ``sigmoid`` of a gate, times a number): learnable factors, scored as 1 under "one"
    (``plain=True``: the same model with both factors 1)."""

    def __init__(self, plain=False):
        super().__init__()
        self.plain = plain
        self.stem, self.a, self.b, self.head = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.log_scale = nn.Parameter(torch.linspace(-9.0, -8.0, 6))
        self.gate = nn.Parameter(torch.tensor(-6.0))

    def forward(self, x):
        x = self.stem(x)
        if self.plain:
            return self.head(self.b(x + self.a(x)) + x + self.a(x))
        x = x + self.a(x) * self.log_scale.exp()
        x = x + self.b(x) * (torch.sigmoid(self.gate) * 2)
        return self.head(x)


def test_a_function_of_one_parameter_is_a_layer_scale():
    """Under "one" the graph equals that of the model whose two factors are 1; the default
    keeps them (about 1e-4 and 5e-3: the branches barely count)."""
    torch.manual_seed(0)
    model = FunctionOfParameter()
    plain = FunctionOfParameter(plain=True)
    plain.load_state_dict(model.state_dict())
    g_one = netgraph.from_torch(model, (4,), layer_scale="one")
    assert_matches_linearised(g_one, plain, (4,), (None,), REL)
    with pytest.warns(UserWarning, match="layer_scale='one'"):
        g_as_is = netgraph.from_torch(model, (4,))
    assert flows.log10_synflow_R(g_one) > flows.log10_synflow_R(g_as_is) + 0.5  # the branches count again
