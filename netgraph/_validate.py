"""Validation helpers shared by the public entry points."""

from __future__ import annotations

import math
from numbers import Integral, Real

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


MAX_SEED = 2**32 - 1


def check_seed(seed, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise if it is not an integer in ``[0, 2**32 - 1]``.

    The one seed check: every random step of the library takes such a seed (numpy's and
    torch's generators accept this range).

    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: seed must be an integer in [0, 4294967295], got -1
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise InvalidInputError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def check_like(name: str, value, default, where: str = ""):
    """Return ``value`` if it has the type of ``default`` (the setting's default), else raise.

    Booleans must be booleans (the string ``"false"`` is not false), integers integers,
    numbers numbers (an integer is accepted for a float), strings strings; a ``None``
    default accepts anything.

    >>> check_like("kernel_conserved", True, False)
    True
    >>> check_like("lr", 1, 0.1)
    1.0
    >>> check_like("nesterov", "false", True, " of train")
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: nesterov of train must be true or false, got 'false'
    """
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name}{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise InvalidInputError(f"{name}{where} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise InvalidInputError(f"{name}{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise InvalidInputError(f"{name}{where} must be a string, got {value!r}")
    return value
