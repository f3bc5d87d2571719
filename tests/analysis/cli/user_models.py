"""Small user-model factories for the CLI's bad-input tests (``--model tests.analysis.cli.user_models:NAME``)."""

import torch
import torch.nn as nn


def ok():
    """A digits-shaped MLP (input 1x8x8)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def double():
    """The digits-shaped MLP in float64."""
    return ok().double()


def raises():
    """A factory that fails, with a two-line message."""
    raise RuntimeError("cannot build the net\nsecond line")


def not_a_module():
    """A factory that returns something else than a module."""
    return 42


class Tied(nn.Module):
    """Two linear layers sharing one weight tensor."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.a.weight
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.b(self.a(x).relu()).relu())


def tied():
    return Tied()


def flaky():
    """Builds under seed 0 (config validation, seed-0 runs) and fails under any other seed."""
    if torch.initial_seed() != 0:
        raise RuntimeError("flaky factory: only seed 0 builds")
    return ok()


class ManyBlockers(nn.Module):
    """Eight cumulative sums (unsupported): the error line names five and counts the rest."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        x = self.fc(x)
        for _ in range(8):
            x = torch.cumsum(x, 1)
        return self.out(x)


def many_blockers():
    return ManyBlockers()
