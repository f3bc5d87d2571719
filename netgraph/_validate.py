"""Validation helpers shared by the public entry points."""

from __future__ import annotations

import math
from numbers import Real

from .errors import InvalidInputError


def check_density(density) -> float:
    """Return ``density`` as a float, or raise if it is not in (0, 1].

    Density is the kept fraction of prunable weights (1 = dense). A common confusion is
    passing a sparsity or a percentage, so the message says which scale is expected.
    """
    if isinstance(density, bool) or not isinstance(density, Real):
        raise InvalidInputError(
            f"density must be a number in (0, 1] (the kept fraction of weights), got {density!r}"
        )
    d = float(density)
    if not (math.isfinite(d) and 0.0 < d <= 1.0):
        hint = ""
        if 1.0 < d <= 100.0:
            hint = f" (a percentage? use {d / 100:g})"
        raise InvalidInputError(
            f"density must be in (0, 1] (the kept fraction of weights; 0.05 keeps 5%), got {d:g}{hint}"
        )
    return d


def check_choice(name: str, value, choices) -> str:
    """Raise a clear error if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(
            f"unknown {name} {value!r}; accepted: {', '.join(map(repr, choices))}"
        )
    return value


def target_count(density: float, total: int) -> int:
    """Number of weights kept at ``density``: ``round(density * total)``, at least 1."""
    return max(1, min(total, int(round(density * total))))
