"""The axes of a grid of runs (models x methods x densities x seeds): one rule for repeated values, and its size.

The rule, for every axis of every grid (``compare``, sweeps, ``demo``, the CLI's lists): a value
listed twice is refused with one line naming it, never run twice nor merged silently.
Two method specs are the same when they name the same method with the same options once
the defaults are filled in (``phew`` and ``phew:bias=magnitude``), or carry the same label.

The size of a grid is the product of its axes' lengths, known before any run is built
(a seed count is a ``range``, not a list).

>>> check_distinct("densities", [0.1, 0.05])
[0.1, 0.05]
>>> check_distinct("densities", [0.1, 0.05, 0.1])
Traceback (most recent call last):
...
netgraph.errors.InvalidInputError: densities lists 0.1 twice (entries 1 and 3); give each value once
>>> grid_size([0, 1], range(10**8))
200000000
"""

from __future__ import annotations

import math

from netgraph._validate import MAX_SEED, check_seed
from netgraph.errors import InvalidInputError
from netgraph.sparsifiers import get
from netgraph.sparsifiers.registry import check_options

from .run import DENSE

__all__ = ["check_distinct", "check_distinct_methods", "seed_axis", "grid_size"]


def check_distinct(axis: str, values, keys=None, shown=None) -> list:
    """``values`` as a list, or raise :class:`InvalidInputError` on the first value listed twice.

    ``keys`` (default: the values) decide sameness; ``shown`` (default: the values) is
    what the message quotes.
    """
    values = list(values)
    keys = values if keys is None else list(keys)
    shown = values if shown is None else list(shown)
    first: dict = {}
    for i, k in enumerate(keys):
        if k in first:
            j = first[k]
            same = "" if shown[i] == shown[j] else f" (as {shown[j]!r})"
            raise InvalidInputError(f"{axis} lists {shown[i]!r}{same} twice (entries {j + 1} and {i + 1}); "
                                    "give each value once")
        first[k] = i
    return values


def _method_key(name: str, options: dict) -> tuple:
    if name == DENSE:
        return (DENSE,)
    merged = check_options(get(name), dict(options))
    return (name, tuple(sorted((k, repr(v)) for k, v in merged.items())))


def check_distinct_methods(specs, axis: str = "methods") -> list:
    """Parsed method specs ``(label, name, options)``; refused when two are the same run or share a label."""
    specs = list(specs)
    check_distinct(axis, specs, keys=[_method_key(name, opts) for _, name, opts in specs],
                   shown=[label for label, _, _ in specs])
    check_distinct(f"{axis} (labels)", [label for label, _, _ in specs])
    return specs


def seed_axis(seeds, start: int = 0):
    """A seed count ``n`` as ``range(start, start + n)`` (never a list), or explicit seeds checked and distinct."""
    if isinstance(seeds, range):
        if len(seeds) and (seeds[0] < 0 or seeds[-1] > MAX_SEED or seeds.step != 1):
            raise InvalidInputError(f"seeds must stay in 0..{MAX_SEED} in steps of 1, got {seeds}")
        return seeds
    if isinstance(seeds, int) or hasattr(seeds, "__index__") and not hasattr(seeds, "__len__"):
        if isinstance(seeds, bool):
            raise InvalidInputError(f"seeds must be a count or a list of integers, got {seeds!r}")
        n = int(seeds)
        if n < 1:
            raise InvalidInputError(f"seeds must be at least 1, got {n}")
        if start + n - 1 > MAX_SEED:
            raise InvalidInputError(f"{n} seeds from {start} reach {start + n - 1}; seeds must stay in 0..{MAX_SEED}")
        return range(start, start + n)
    try:
        seeds = list(seeds)
    except TypeError:
        raise InvalidInputError(f"seeds must be a count or a list of integers, got {seeds!r}") from None
    out = []
    for i, s in enumerate(seeds):  # (the one check of each seed, named by its entry)
        try:
            out.append(check_seed(s))
        except InvalidInputError as exc:
            raise InvalidInputError(f"seeds[{i}]: {exc}") from None
    if not out:
        raise InvalidInputError("seeds must be a count or a non-empty list of integers")
    return check_distinct("seeds", out)


def grid_size(*axes) -> int:
    """The number of runs of a grid: the product of its axes' lengths (nothing is expanded)."""
    return math.prod(len(a) for a in axes)
