"""Small models the tests build themselves (also importable as user factories)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(sizes=(6, 5, 4, 3)):
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConvNoPad(nn.Module):
    """Conv net without zero padding: stride, dilation, non-square kernels, pooling, BN."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 5, (3, 2))
        self.bn1 = nn.BatchNorm2d(5)
        self.avg = nn.AvgPool2d(2, stride=1)
        self.c2 = nn.Conv2d(5, 6, 3, stride=2, dilation=2)
        self.pool = nn.MaxPool2d(2)
        self.c3 = nn.Conv2d(6, 4, 1)
        self.fc1 = nn.Linear(4 * 1 * 2, 7)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x):
        x = self.avg(F.relu(self.bn1(self.c1(x))))
        x = self.pool(F.relu(self.c2(x)))
        x = F.relu(self.c3(x))
        x = x.view(x.size(0), -1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


CONV_NOPAD_INPUT = (3, 13, 14)


class Block1x1(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.sc = nn.Sequential()
        if cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        out = self.b2(self.c2(out))
        return F.relu(out + self.sc(x))


class Residual1x1(nn.Module):
    """Residual net of 1x1 convs with identity and projection shortcuts."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.blocks = nn.Sequential(Block1x1(4, 4), Block1x1(4, 6), Block1x1(6, 6))
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


RESIDUAL_INPUT = (3, 5, 5)


def randomize_bn(model, seed=0):
    """Give every BatchNorm a non-trivial scale so the tests exercise it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.2)
    return model


def tiny_mlp():
    """Factory for CLI tests: `--model tests.models:tiny_mlp --input-shape 6`."""
    return mlp((6, 5, 4, 3))


def lstm_model():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 3, batch_first=True)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])

    return M()
