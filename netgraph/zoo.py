"""The paper's networks, seeded, plus any user model given as ``pkg.module:factory``.

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

Initialisation: Kaiming-normal (fan-in, ReLU gain) for conv and linear weights, zero
biases, BatchNorm gamma 1 and beta 0, drawn from a generator seeded with ``seed`` (the
global torch RNG is left untouched).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

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


register("mlp", (1, 28, 28), 10, "LeNet-300-100 (MNIST shapes)")(lambda: _mlp([784, 300, 100, 10]))
for _name in _VGG_CFG:
    register(_name, (3, 32, 32), 10, f"{_name.upper()} for CIFAR-10")(
        lambda n=_name: VGG(_VGG_CFG[n], 10, batch_norm=False))
    register(f"{_name}_bn", (3, 32, 32), 10, f"{_name.upper()} with BatchNorm for CIFAR-10")(
        lambda n=_name: VGG(_VGG_CFG[n], 10, batch_norm=True))
register("resnet20", (3, 32, 32), 10, "ResNet-20 for CIFAR-10")(lambda: ResNet([16, 32, 64], [3, 3, 3], 10))
register("resnet32", (3, 32, 32), 10, "ResNet-32 for CIFAR-10")(lambda: ResNet([16, 32, 64], [5, 5, 5], 10))
register("resnet18", (3, 64, 64), 200, "ResNet-18 for Tiny-ImageNet")(
    lambda: ResNet([64, 128, 256, 512], [2, 2, 2, 2], 200))
register("digits_mlp", (1, 8, 8), 10, "64-64-32-10 MLP for scikit-learn digits")(lambda: _mlp([64, 64, 32, 10]))
register("digits_cnn", (1, 8, 8), 10, "2 convs + linear for scikit-learn digits")(DigitsCNN)


def names() -> list:
    """Names of the zoo models."""
    return list(_ZOO)


def entry(name: str) -> ZooEntry:
    if name not in _ZOO:
        raise InvalidInputError(
            f"unknown model {name!r}; zoo models: {', '.join(_ZOO)} (or a user model as 'pkg.module:factory')"
        )
    return _ZOO[name]


def input_shape(name: str) -> tuple:
    return entry(name).input_shape


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


def build(name: str, seed: int = 0) -> nn.Module:
    """A zoo model, initialised from ``seed``.

    Examples
    --------
    >>> from netgraph import zoo
    >>> m1, m2 = zoo.build("resnet20", seed=1), zoo.build("resnet20", seed=1)
    >>> bool((m1.fc.weight == m2.fc.weight).all())
    True
    """
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        model = entry(name).factory()
    return init_weights(model, seed)


def parse_input_shape(text) -> tuple:
    """``"3,32,32"`` -> ``(3, 32, 32)``."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = [p for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise InvalidInputError(f"input shape must look like C,H,W (positive integers), got {text!r}")
    return shape


def load_model(spec: str, input_shape=None, seed: int = 0):
    """Build a model from a zoo name or ``"pkg.module:factory"``.

    A user factory is called with no arguments after ``torch.manual_seed(seed)`` (inside a
    forked RNG state, so the caller's RNG is untouched); its weights are kept as the
    factory made them. ``input_shape`` is required for user models.

    Returns
    -------
    (model, input_shape, spec) where ``spec`` is a JSON-ready dict.
    """
    if ":" in spec:
        if input_shape is None:
            raise InvalidInputError(f"a user model ({spec}) needs --input-shape C,H,W")
        shape = parse_input_shape(input_shape)
        mod_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise InvalidInputError(f"cannot import {mod_name!r} for model {spec!r}: {exc}") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise InvalidInputError(f"{mod_name!r} has no callable {attr!r} (model {spec!r})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = factory()
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    else:
        e = entry(spec)
        shape = e.input_shape if input_shape is None else parse_input_shape(input_shape)
        model = build(spec, seed)
    return model, shape, {"name": spec, "input_shape": list(shape), "seed": int(seed)}


def graph_of(spec: str, input_shape=None, seed: int = 0):
    """``(model, graph)`` for a zoo name or ``pkg.module:factory``."""
    from .trace import from_torch

    model, shape, mspec = load_model(spec, input_shape, seed)
    return model, from_torch(model, shape, model_spec=mspec)
