"""Model specs: the paper's networks (the zoo), ``torchvision:NAME``, ``timm:NAME`` and ``pkg.module:factory``.

A model is named by a string: a zoo name (table below), ``torchvision:resnet50`` or
``timm:convnext_atto`` (architectures only, never pretrained weights, see
:mod:`netgraph.sources`), or a user factory ``pkg.module:factory``. :func:`load_model`
turns a name (or a recorded spec dict) into ``(model, input_shape, spec)``; the spec dict
(``name``, ``input_shape``, ``seed``; ``num_classes`` for torchvision and timm models and
whenever one was given) is what graphs
(``NetGraph.model_spec``) and mask files record, and ``load_model(spec)`` rebuilds the same
model with the same weights.

=============  ===============  ========  ====================================================
name           input            classes   architecture
=============  ===============  ========  ====================================================
mlp            1x28x28          10        LeNet-300-100
vgg11/16/19    3x32x32          10        CIFAR VGG, conv biases, one linear 512->10
vgg11/16/19_bn 3x32x32          10        the same with BatchNorm (conv without bias)
resnet20/32    3x32x32          10        CIFAR ResNet (16/32/64 channels, 1x1 projections)
resnet18       3x64x64          200       Tiny-ImageNet ResNet-18 (3x3 stem, 1x1 projections)
digits_mlp     1x8x8            10        64-64-32-10 MLP for scikit-learn's digits
digits_cnn     1x8x8            10        two 3x3 convs (no padding) + linear, for digits
=============  ===============  ========  ====================================================

Initialisation of zoo models: Kaiming-normal (fan-in, ReLU gain) for conv and linear weights, zero
biases, BatchNorm gamma 1 and beta 0, drawn from a generator seeded with ``seed`` (the
global torch RNG is left untouched). torchvision, timm and user models keep their own
initialisation, drawn from torch's RNG seeded with ``seed`` inside
:func:`torch.random.fork_rng`. Zoo models take ``num_classes`` too (default in the table).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import sources, zoo1d
from ._validate import check_positive_int, check_seed
from .errors import InvalidInputError

_VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512],
}


class VGG(nn.Module):
    """CIFAR VGG: 3x3 convs (padding 1), 4 max-pools, 2x2 average pool, one linear layer."""

    def __init__(self, cfg, num_classes=10, batch_norm=False):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(c, v, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 conv + BN projection when the shape changes."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet of basic blocks: a 3x3 stem, stages of blocks, global average pool, linear."""

    def __init__(self, widths, blocks, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        stages, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(c, w, stride)] + [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            c = w
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def _mlp(sizes):
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Small CNN for 8x8 digits: 3x3 convs without padding (so graph flows are exact)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple
    num_classes: int
    description: str


_ZOO: dict = {}


def register(name, input_shape, num_classes, description):
    """Decorator adding a model factory to the zoo."""

    def deco(fn):
        _ZOO[name] = ZooEntry(name, fn, tuple(input_shape), num_classes, description)
        return fn

    return deco


# Each factory takes ``num_classes`` (default: the entry's).
register("mlp", (1, 28, 28), 10, "LeNet-300-100 (MNIST shapes)")(lambda num_classes=10: _mlp([784, 300, 100, num_classes]))
for _name in _VGG_CFG:
    register(_name, (3, 32, 32), 10, f"{_name.upper()} for CIFAR-10")(
        lambda num_classes=10, n=_name: VGG(_VGG_CFG[n], num_classes, batch_norm=False))
    register(f"{_name}_bn", (3, 32, 32), 10, f"{_name.upper()} with BatchNorm for CIFAR-10")(
        lambda num_classes=10, n=_name: VGG(_VGG_CFG[n], num_classes, batch_norm=True))
register("resnet20", (3, 32, 32), 10, "ResNet-20 for CIFAR-10")(
    lambda num_classes=10: ResNet([16, 32, 64], [3, 3, 3], num_classes))
register("resnet32", (3, 32, 32), 10, "ResNet-32 for CIFAR-10")(
    lambda num_classes=10: ResNet([16, 32, 64], [5, 5, 5], num_classes))
register("resnet18", (3, 64, 64), 200, "ResNet-18 for Tiny-ImageNet")(
    lambda num_classes=200: ResNet([64, 128, 256, 512], [2, 2, 2, 2], num_classes))
register("digits_mlp", (1, 8, 8), 10, "64-64-32-10 MLP for scikit-learn digits")(
    lambda num_classes=10: _mlp([64, 64, 32, num_classes]))
register("digits_cnn", (1, 8, 8), 10, "2 convs + linear for scikit-learn digits")(DigitsCNN)
for _name, (_factory, _description) in zoo1d.MODELS.items():  # the MNIST-1D study's networks
    register(_name, zoo1d.INPUT_SHAPE, 10, _description)(_factory)


def names(source: str = "zoo") -> list:
    """Model names of a source: ``"zoo"`` (default), ``"torchvision"`` or ``"timm"``.

    torchvision and timm names are given without their prefix (``torchvision:NAME``).

    Examples
    --------
    >>> from netgraph import zoo
    >>> "resnet20" in zoo.names() and "resnet50" in zoo.names("torchvision")
    True
    """
    if source == "zoo":
        return list(_ZOO)
    return sources.names(source)


def entry(name: str) -> ZooEntry:
    """The zoo entry of ``name`` (zoo models only)."""
    if name not in _ZOO:
        raise InvalidInputError(
            f"unknown model {name!r}; zoo models: {', '.join(_ZOO)} (or 'torchvision:NAME', 'timm:NAME', "
            "a user model as 'pkg.module:factory'; list them with netgraph.zoo.names('torchvision'))"
        )
    return _ZOO[name]


def input_shape(name: str) -> tuple:
    """Default input shape of one sample for a zoo, ``torchvision:`` or ``timm:`` model.

    Examples
    --------
    >>> from netgraph import zoo
    >>> zoo.input_shape("resnet20"), zoo.input_shape("torchvision:inception_v3")
    ((3, 32, 32), (3, 299, 299))
    """
    source, rest = sources.split(name)
    if source is not None:
        return sources.default_input_shape(source, rest)
    if ":" in str(name):
        raise InvalidInputError(f"a user model ({name}) has no default input shape; give one (--input-shape C,H,W)")
    return entry(name).input_shape


_default_shape = input_shape  # load_model's argument of the same name hides it


def init_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights, zero biases, BN (1, 0), from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                w = torch.empty(m.weight.shape, dtype=m.weight.dtype)
                nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=gen)
                m.weight.copy_(w)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                m.reset_running_stats()
    return model


def _check_classes(num_classes):
    return None if num_classes is None else check_positive_int("num_classes", num_classes)


def _user_factory(spec: str):
    mod_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InvalidInputError(f"cannot import {mod_name!r} for model {spec!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InvalidInputError(f"{mod_name!r} has no callable {attr!r} (model {spec!r})")
    return factory


def _resolve_spec(spec, input_shape, seed, num_classes) -> tuple:
    """``(name, input_shape, seed, num_classes)`` of a name or a recorded spec dict; arguments
    given (not None) override the dict's values; the seed defaults to 0."""
    if isinstance(spec, dict):
        if "name" not in spec:
            raise InvalidInputError(f"a model spec dict needs a 'name', got {spec!r}")
        input_shape = spec.get("input_shape") if input_shape is None else input_shape
        seed = spec.get("seed") if seed is None else seed
        num_classes = spec.get("num_classes") if num_classes is None else num_classes
        spec = spec["name"]
    mod, colon, attr = str(spec).partition(":")
    if not isinstance(spec, str) or not spec.strip() or colon and mod not in sources.PREFIXES and not (
            all(p.isidentifier() for p in mod.split(".")) and attr.isidentifier()):
        raise InvalidInputError(f"{spec!r} is not a model name (zoo, torchvision:NAME, timm:NAME, pkg.mod:factory)")
    return spec, input_shape, 0 if seed is None else check_seed(seed), num_classes


def build(name, seed: int | None = None, num_classes: int | None = None) -> nn.Module:
    """A model from its name, initialised from ``seed``; the global RNG is left untouched.

    Parameters
    ----------
    name : str or dict
        A zoo name, ``torchvision:NAME``, ``timm:NAME`` or ``pkg.module:factory``; or a
        recorded spec dict (see :func:`load_model`), whose ``seed`` and ``num_classes`` apply
        unless given here.
    seed : int, optional
        Zoo models: seed of their Kaiming initialisation. Other models keep their own
        initialisation, drawn from torch's RNG seeded with ``seed`` (in a forked RNG state).
        Default 0.
    num_classes : int, optional
        Number of outputs (default: the model's). A user factory is then called with
        ``num_classes=``.

    Examples
    --------
    >>> from netgraph import zoo
    >>> m1, m2 = zoo.build("resnet20", seed=1), zoo.build("resnet20", seed=1)
    >>> bool((m1.fc.weight == m2.fc.weight).all())
    True
    >>> zoo.build("torchvision:resnet18", num_classes=10).fc.out_features
    10
    >>> spec = {"name": "resnet20", "input_shape": [3, 32, 32], "seed": 1}  # as graphs and masks record it
    >>> bool((zoo.build(spec).fc.weight == m1.fc.weight).all())
    True
    """
    name, _, seed, num_classes = _resolve_spec(name, None, seed, num_classes)
    num_classes = _check_classes(num_classes)
    model = _build(name, seed, num_classes)
    # graphs of this model (and the masks made from them) record how to rebuild it
    spec = {"name": name, "seed": seed}
    if num_classes is not None:
        spec["num_classes"] = num_classes
    shape = None if ":" in str(name) and sources.split(name)[0] is None else input_shape(name)
    if shape is not None:
        spec["input_shape"] = list(shape)
    model.netgraph_spec = spec
    return model


def _build(name, seed: int, num_classes) -> nn.Module:
    """Build ``name`` (a string) with a resolved seed and class count."""
    source, rest = sources.split(name)
    if source is not None:
        return sources.build(source, rest, seed, num_classes)
    kw = {} if num_classes is None else {"num_classes": num_classes}
    if ":" in str(name):
        factory = _user_factory(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            try:
                model = factory(**kw)
            except TypeError as exc:
                if not kw:
                    raise
                raise InvalidInputError(f"{name} does not take num_classes: {exc}") from None
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"{name} returned a {type(model).__name__}, not a torch.nn.Module")
        return model
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        model = entry(name).factory(**kw)
    return init_weights(model, seed)


def parse_input_shape(text) -> tuple:
    """``"3,32,32"`` -> ``(3, 32, 32)``."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = [p for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):  # "a", [3]
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise InvalidInputError(f"input shape must look like C,H,W (positive integers), got {text!r}")
    return shape


def load_model(spec, input_shape=None, seed: int | None = None, num_classes: int | None = None):
    """Build a model from its name or from a recorded spec dict.

    Parameters
    ----------
    spec : str or dict
        A name (zoo, ``torchvision:NAME``, ``timm:NAME``, ``pkg.module:factory``), or a spec
        dict as returned here and recorded in graphs and masks (``name`` and optionally
        ``input_shape``, ``seed``, ``num_classes``); arguments given here override it.
    input_shape : str or sequence of int, optional
        One sample's shape; default: the model's own (required for user models).
    seed : int, optional
        Initialisation seed (default: the dict's, else 0). See :func:`build`.
    num_classes : int, optional
        Number of outputs (default: the dict's, else the model's).

    Returns
    -------
    (model, input_shape, spec) where ``spec`` is a JSON-ready dict that rebuilds the model.

    Examples
    --------
    >>> from netgraph import zoo
    >>> _, shape, spec = zoo.load_model("torchvision:resnet18", seed=2)
    >>> spec
    {'name': 'torchvision:resnet18', 'input_shape': [3, 224, 224], 'seed': 2, 'num_classes': 1000}
    >>> bool((zoo.load_model(spec)[0].fc.weight == zoo.build("torchvision:resnet18", 2).fc.weight).all())
    True
    """
    spec, input_shape, seed, num_classes = _resolve_spec(spec, input_shape, seed, num_classes)
    num_classes = _check_classes(num_classes)
    source, rest = sources.split(spec)
    if source is None and ":" in spec and input_shape is None:
        raise InvalidInputError(f"a user model ({spec}) needs --input-shape C,H,W")
    shape = _default_shape(spec) if input_shape is None else parse_input_shape(input_shape)
    model = build(spec, seed, num_classes)
    out = {"name": spec, "input_shape": list(shape), "seed": seed}
    if source is not None:
        num_classes = sources.num_classes_of(model, source, num_classes)
    if num_classes is not None:
        out["num_classes"] = num_classes
    return model, shape, out


def graph_of(spec, input_shape=None, seed: int | None = None, num_classes: int | None = None,
             layer_scale: str = "as_is"):
    """``(model, graph)`` for a model name or spec dict (see :func:`load_model`; ``layer_scale``
    as in :func:`netgraph.from_torch`)."""
    from .trace import from_torch

    model, shape, mspec = load_model(spec, input_shape, seed, num_classes)
    return model, from_torch(model, shape, model_spec=mspec, layer_scale=layer_scale)
