"""One registry of sparsification methods, shared by the Python API and the CLI.

A method is a function ``fn(ctx, **options) -> list of layer masks`` registered with its
options and their defaults. :func:`netgraph.sparsify` validates the method name, density
and options against this table before calling it, and the CLI builds its help from it.
"""

from __future__ import annotations

from .._validate import check_choice, check_like
from ..errors import InvalidInputError
from . import magnitude, phew, random_pruning, saliency, synflow
from .base import Context, Method, method

__all__ = ["Context", "Method", "get", "names", "methods", "register", "check_options", "parse_option_value"]


_METHODS: dict = {
    obj.method_spec.name: obj.method_spec
    for module in (phew, synflow, random_pruning, magnitude, saliency)
    for obj in vars(module).values()
    if isinstance(getattr(obj, "method_spec", None), Method)
}


def register(name, *, options=None, description="", needs_data=False, choices=None):
    """Decorator registering a user's ``fn(ctx, **options)`` as method ``name``.

    The method is then available to :func:`netgraph.sparsify`, the CLI, comparisons and
    sweeps, with option validation.
    """

    def deco(fn):
        fn = method(name, options=options, description=description, needs_data=needs_data, choices=choices)(fn)
        _METHODS[name] = fn.method_spec
        return fn

    return deco


def get(name: str) -> Method:
    """The method registered as ``name`` (a clear error naming the known ones)."""
    if name not in _METHODS:
        raise InvalidInputError(f"unknown method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def names() -> list:
    return sorted(_METHODS)


def methods() -> dict:
    return dict(_METHODS)


def check_options(method: Method, options: dict) -> dict:
    """Defaults merged with ``options``; unknown names and bad choices raise."""
    unknown = [k for k in options if k not in method.options]
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in method.options.items()) or "none"
        raise InvalidInputError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for method {method.name!r}; accepted (defaults): {accepted}"
        )
    merged = {**method.options, **{k: check_like(f"option {k}", v, method.options[k], f" of method {method.name!r}")
                                   for k, v in options.items()}}
    for k, allowed in method.choices.items():
        check_choice(f"option {k}", merged[k], allowed, f" of method {method.name!r}")
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
