"""Networks for MNIST-1D (1x40 signals, 10 classes): an MLP, a 1-D CNN and a 1-D ResNet.

Plain factories (no arguments) so that ``netgraph.zoo`` can register them; every network
takes inputs of shape ``(n, 1, 40)``. Initialise with :func:`netgraph.zoo.init_weights`
(or build through the zoo) for seeded Kaiming-normal weights.

==============  ========================================================  =========
factory         architecture                                              weights
==============  ========================================================  =========
mnist1d_mlp     40-512-512-10, ReLU                                       287,744
mnist1d_cnn     conv 1->64 (k5, s2), 64->128, 128->128 (k3, s2), linear   80,448
mnist1d_resnet  conv stem 1->24 (k5, s2) + BN, basic blocks 24, 48 (s2),
                96 (s2) with BN and 1x1 projections, global average pool   62,136
==============  ========================================================  =========

(Weights count the prunable conv and linear weights, biases excluded.)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: The input shape of every MNIST-1D network: one channel, 40 positions.
INPUT_SHAPE = (1, 40)


def mnist1d_mlp() -> nn.Module:
    """40-512-512-10 MLP with ReLU."""
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


class CNN1d(nn.Module):
    """The MNIST-1D paper's three-conv CNN, widened: lengths 40 -> 19 -> 10 -> 5, then linear."""

    def __init__(self, channels=(64, 128, 128), num_classes: int = 10):
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Conv1d(1, c1, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(c1, c2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(c2, c3, 3, stride=2, padding=1)
        self.fc = nn.Linear(c3 * 5, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


class Block1d(nn.Module):
    """1-D basic block: two k3 convs with BN; a 1x1 conv + BN projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet1d(nn.Module):
    """A k5 stride-2 stem, one basic block per width, global average pool, linear."""

    def __init__(self, widths=(24, 48, 96), num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv1d(1, widths[0], 5, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(widths[0])
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(Block1d(c, w, 1 if i == 0 else 2))
            c = w
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool1d(x, 1)
        return self.fc(torch.flatten(x, 1))


def mnist1d_cnn() -> nn.Module:
    """:class:`CNN1d` with channels 64, 128, 128."""
    return CNN1d()


def mnist1d_resnet() -> nn.Module:
    """:class:`ResNet1d` with widths 24, 48, 96."""
    return ResNet1d()


#: name -> (factory, description), in the order of the study.
MODELS = {
    "mnist1d_mlp": (mnist1d_mlp, "40-512-512-10 MLP for MNIST-1D"),
    "mnist1d_cnn": (mnist1d_cnn, "3 strided 1-D convs (64, 128, 128) + linear for MNIST-1D"),
    "mnist1d_resnet": (mnist1d_resnet, "1-D ResNet (24, 48, 96; BN, 1x1 projections) for MNIST-1D"),
}

