"""One registry of sparsification methods, shared by the Python API and the CLI.

A method is a function ``fn(ctx, **options) -> list of layer masks`` registered with its
options and their defaults. :func:`netgraph.sparsify` validates the method name, density
and options against this table before calling it, and the CLI builds its help from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError


@dataclass
class Context:
    """What a method receives: the graph, the target, the seed and the optional extras.

    Methods write anything worth reporting (walk counts, iterations...) into ``info``;
    it ends up in the mask file's metadata.
    """

    graph: Any
    density: float
    target: int
    seed: int
    model: Any = None
    data: Any = None
    progress: bool = False
    info: dict = field(default_factory=dict)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable
    options: dict
    description: str
    needs_data: bool = False
    choices: dict = field(default_factory=dict)


_METHODS: dict = {}


def register(name, *, options=None, description="", needs_data=False, choices=None):
    """Decorator registering ``fn(ctx, **options)`` as method ``name``."""

    def deco(fn):
        _METHODS[name] = Method(name, fn, dict(options or {}), description, needs_data, dict(choices or {}))
        return fn

    return deco


def _ensure_loaded():
    # Importing the method modules fills the registry.
    from . import magnitude, phew, random_pruning, saliency, synflow  # noqa: F401


def get(name: str) -> Method:
    """The method registered as ``name`` (a clear error naming the known ones)."""
    _ensure_loaded()
    if name not in _METHODS:
        raise InvalidInputError(f"unknown method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def names() -> list:
    _ensure_loaded()
    return sorted(_METHODS)


def methods() -> dict:
    _ensure_loaded()
    return dict(_METHODS)


def check_options(method: Method, options: dict) -> dict:
    """Defaults merged with ``options``; unknown names and bad choices raise."""
    unknown = [k for k in options if k not in method.options]
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in method.options.items()) or "none"
        raise InvalidInputError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for method {method.name!r}; accepted (defaults): {accepted}"
        )
    merged = {**method.options, **options}
    for k, allowed in method.choices.items():
        if merged[k] not in allowed:
            raise InvalidInputError(
                f"option {k}={merged[k]!r} of method {method.name!r} must be one of {', '.join(map(repr, allowed))}"
            )
    return merged


def parse_option_value(method: Method, key: str, text: str):
    """Convert a CLI string ``text`` to the type of option ``key``'s default."""
    if key not in method.options:
        check_options(method, {key: text})
    default = method.options[key]
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InvalidInputError(f"option {key} of {method.name!r} takes true/false, got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise InvalidInputError(f"option {key} of {method.name!r} takes an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise InvalidInputError(f"option {key} of {method.name!r} takes a number, got {text!r}") from None
    return text
