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


def check_choice(name: str, value, choices, where: str = ""):
    """Return ``value`` if it is one of ``choices``, else raise one clear line.

    The one validator of named choices in the API (the CLI uses ``click.Choice`` built
    from the same tuples). ``where`` says whose choice it is, e.g. ``" of method 'phew'"``.

    >>> check_choice("weights", "abs", ("abs", "square"))
    'abs'
    >>> check_choice("bias", "nope", ("magnitude", "uniform"), " of method 'phew'")
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: bias='nope' of method 'phew' must be one of 'magnitude', 'uniform'
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable values against a set
        ok = False
    if not ok:
        raise InvalidInputError(f"{name}={value!r}{where} must be one of {', '.join(map(repr, choices))}")
    return value


def target_count(density: float, total: int) -> int:
    """Number of weights kept at ``density``: ``round(density * total)``, at least 1."""
    return max(1, min(total, int(round(density * total))))
