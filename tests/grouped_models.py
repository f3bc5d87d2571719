"""Small nets with grouped and depthwise convs for the exactness and sparsifier tests.

Every conv is unpadded or uses circular padding, so all positions of a channel carry the
same value under the all-ones input and the channel graph is exact.
"""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


def _circ(cin, cout, k, **kw):
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular", bias=False, **kw)


class GroupedNet(nn.Module):
    """Normal, depthwise (multiplier 1 and 2), grouped convs; BN, pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.b1 = nn.BatchNorm2d(8)
        self.dw = _circ(8, 8, 3, groups=8)  # depthwise
        self.b2 = nn.BatchNorm2d(8)
        self.dw2 = nn.Conv2d(8, 16, (3, 2), groups=8)  # depthwise, channel multiplier 2, no padding
        self.g = nn.Conv2d(16, 12, 3, groups=4, dilation=2)  # grouped, no padding
        self.avg = nn.AvgPool2d(2, stride=1)
        self.g1 = nn.Conv2d(12, 6, 1, groups=3)
        self.fc = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.dw(x)))
        x = F.relu(self.dw2(x))
        x = self.avg(F.relu(self.g(x)))
        x = F.max_pool2d(F.relu(self.g1(x)), 2)
        return self.fc(torch.flatten(x, 1))


GROUPED_INPUT = (3, 14, 13)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project (linear), residual add."""

    def __init__(self, cin, cout, expand, stride=1):
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU(),
            _circ(hid, hid, 3, stride=stride, groups=hid), nn.BatchNorm2d(hid), nn.ReLU(),
            nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class XBlock(nn.Module):
    """ResNeXt bottleneck with a grouped 3x3 conv and a projection shortcut."""

    def __init__(self, cin, cout, width, groups):
        super().__init__()
        self.c1 = nn.Conv2d(cin, width, 1, bias=False)
        self.b1 = nn.BatchNorm2d(width)
        self.c2 = _circ(width, width, 3, groups=groups)
        self.b2 = nn.BatchNorm2d(width)
        self.c3 = nn.Conv2d(width, cout, 1, bias=False)
        self.b3 = nn.BatchNorm2d(cout)
        self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        out = F.relu(self.b2(self.c2(out)))
        return F.relu(self.b3(self.c3(out)) + self.sc(x))


class MobileNetish(nn.Module):
    """Stem, two inverted residual blocks (one with a residual add), a ResNeXt block, head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_circ(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 3),
            InvertedResidual(8, 12, 2, stride=2),
            XBlock(12, 16, 8, groups=4),
        )
        self.head = nn.Conv2d(16, 20, 1)
        self.fc = nn.Linear(20, 4)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = F.relu(self.head(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


MOBILE_INPUT = (3, 6, 6)


def grouped_1d():
    """Conv1d with groups, a depthwise Conv1d and a linear head."""
    return nn.Sequential(nn.Conv1d(4, 6, 2, groups=2), nn.ReLU(), nn.Conv1d(6, 6, 3, groups=6),
                         nn.Flatten(), nn.Linear(6 * 4, 3))


GROUPED_1D_INPUT = (4, 7)


def dense_equivalent(model):
    """A copy of ``model`` where every grouped conv is a dense conv with zero off-block weights.

    Returns ``(dense_model, expand)``; ``expand(masks)`` maps a mask dict of ``model`` to the
    dense model (off-block elements pruned), so the dense copy under the expanded mask is the
    same network, built without any grouped layer.
    """
    dense = copy.deepcopy(model)
    grouped = {}
    for name, mod in list(dense.named_modules()):
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.groups > 1:
            new = type(mod)(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride,
                            padding=mod.padding, dilation=mod.dilation, bias=mod.bias is not None,
                            padding_mode=mod.padding_mode)
            G, d, n_in = mod.groups, mod.out_channels // mod.groups, mod.in_channels // mod.groups
            with torch.no_grad():
                new.weight.zero_()
                for gi in range(G):  # a test helper on tiny layers
                    new.weight[gi * d:(gi + 1) * d, gi * n_in:(gi + 1) * n_in] = mod.weight[gi * d:(gi + 1) * d]
                if mod.bias is not None:
                    new.bias.copy_(mod.bias)
            parent, _, attr = name.rpartition(".")
            setattr(dense.get_submodule(parent) if parent else dense, attr, new)
            grouped[f"{name}.weight"] = (G, d, n_in, tuple(new.weight.shape))

    def expand(masks):
        out = {}
        for p, m in masks.items():
            m = torch.as_tensor(m)
            if p not in grouped:
                out[p] = m.clone()
                continue
            G, d, n_in, shape = grouped[p]
            full = torch.zeros(shape, dtype=torch.bool)
            for gi in range(G):
                full[gi * d:(gi + 1) * d, gi * n_in:(gi + 1) * n_in] = m[gi * d:(gi + 1) * d]
            out[p] = full
        return out

    return dense, expand
