"""Validation helpers shared by the public entry points."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

import numpy as np
import torch

from .errors import InvalidInputError, MaskMismatchError


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
        if 1.5 <= d <= 100.0:
            hint = f" (a percentage? use {d / 100:g})"
        shown = f"{d:g}" if float(f"{d:g}") == d or not math.isfinite(d) else repr(d)  # (1.0000000001 is not 1)
        raise InvalidInputError(
            f"density must be in (0, 1] (the kept fraction of weights; 0.05 keeps 5%), got {shown}{hint}"
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


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int, or raise unless it is an integer ``>= 1`` (not a bool, not
    a float or a string: ``2.5`` classes or ``"10"`` iterations are a mistake, not a request).

    The one rule of counts given by the user: ``num_classes``, ``iterations``.

    >>> check_positive_int("iterations", 100)
    100
    >>> check_positive_int("num_classes", 2.5)
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: num_classes must be a positive integer, got 2.5
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_module(model, what: str):
    """Return ``model``, or raise unless it is a ``torch.nn.Module`` (``what``: who asks).

    >>> check_module("resnet20", "from_torch")
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: from_torch takes a torch.nn.Module, got str
    """
    if not isinstance(model, torch.nn.Module):
        hint = " (a NetGraph is not a model: pass the model it was traced from)" \
            if hasattr(model, "layer_masks") and hasattr(model, "num_weights") else ""
        raise InvalidInputError(f"{what} takes a torch.nn.Module, got {type(model).__name__}{hint}")
    return model


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


def check_input_shape(input_shape) -> tuple:
    """Return one sample's shape as a tuple of positive ints, or raise one clear line.

    The one rule of a shape given to the API: a non-empty sequence (tuple, list, ``torch.Size``)
    of positive integers, no batch dimension. A string is refused (``"64"`` is not ``(6, 4)``;
    the CLI parses ``"3,32,32"`` itself), and so are bools and non-integral numbers.

    >>> check_input_shape([3, 32, 32])
    (3, 32, 32)
    >>> check_input_shape("64")
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: input_shape must be a sequence of positive integers such as (3, 32, 32) (one sample, no batch dimension), got '64' (a str)
    """
    ok = not isinstance(input_shape, (str, bytes)) and hasattr(input_shape, "__len__") \
        and hasattr(input_shape, "__iter__")
    dims = list(input_shape) if ok else []
    ok = ok and bool(dims) and all(
        not isinstance(s, (bool, np.bool_)) and isinstance(s, Integral) and int(s) > 0 for s in dims)
    if not ok:
        raise InvalidInputError(
            "input_shape must be a sequence of positive integers such as (3, 32, 32) (one sample, no batch "
            f"dimension), got {input_shape!r} (a {type(input_shape).__name__})"
        )
    return tuple(int(s) for s in dims)


def check_mask_shape(name: str, shape, *accepted) -> None:
    """Raise :class:`MaskMismatchError` unless a mask's ``shape`` is one of the ``accepted`` shapes.

    The one shape rule of masks (:meth:`netgraph.MaskSet.check` against a model,
    :meth:`netgraph.NetGraph.layer_masks` against a graph): the mask has its parameter's
    shape (``accepted[0]``; a graph's per-layer masks may also be in layer form).
    """
    shape = tuple(shape)
    if all(shape != tuple(a) for a in accepted):
        also = "".join(f" (or {tuple(a)})" for a in accepted[1:] if tuple(a) != tuple(accepted[0]))
        raise MaskMismatchError(f"mask for parameter {name!r} has shape {shape}; accepted: {tuple(accepted[0])}{also}")


def as_bool_mask(name: str, value, *accepted_shapes):
    """``value`` as a bool mask of its own kind (numpy array, or torch tensor moved to the CPU).

    The one value rule of masks (:class:`netgraph.MaskSet` on insertion,
    :meth:`netgraph.NetGraph.layer_masks`): a torch tensor or numpy array of dtype bool, or
    of a number dtype whose every value is exactly 0 or 1 (then ``value != 0``). Scores
    (0.5), NaN or 2 are refused rather than read as "kept". With ``accepted_shapes`` the
    shape is checked first (:func:`check_mask_shape`).

    Raises
    ------
    InvalidInputError
        Not a tensor or array, or values other than 0 and 1.
    MaskMismatchError
        A shape that is not accepted.
    """
    if isinstance(value, torch.Tensor):
        is_bool, numeric = value.dtype == torch.bool, not value.is_complex()
    elif isinstance(value, np.ndarray):
        is_bool = value.dtype == np.bool_
        numeric = np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value)
    else:
        raise InvalidInputError(
            f"mask for {name!r} must be a bool tensor or array (or one of 0s and 1s), got {type(value).__name__}")
    if accepted_shapes:  # (before any copy)
        check_mask_shape(name, value.shape, *accepted_shapes)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    if is_bool:
        return value
    if not numeric:
        raise InvalidInputError(f"mask for {name!r} has dtype {value.dtype}, which is not a mask: use bool")
    kept = value != 0  # (one temporary beside the result: masks may have 10^9 elements)
    if bool((kept & (value != 1)).any()):
        raise InvalidInputError(
            f"mask for {name!r} has values other than 0 and 1 (dtype {value.dtype}); a mask is bool or 0/1 "
            "numbers, not scores")
    return kept


def as_path(path, what: str = "path") -> str:
    """Return ``path`` (a str, bytes or ``os.PathLike``) as a str, else raise one clear line."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InvalidInputError(f"{what} must be a file path (str or os.PathLike), got {type(path).__name__}")
    return os.fsdecode(os.fspath(path))


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to file ``path``, its folder made if missing; one clear line if the
    system refuses (no permission, a file where a folder should be, no space)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_file_path(path, what: str = "path") -> str:
    """Return ``path`` as a str (see :func:`as_path`) if it can name a file to write: not a directory."""
    path = as_path(path, what)
    if not path or os.path.isdir(path):
        raise InvalidInputError(f"{what} must name a file, got {'a directory ' if path else ''}{path!r}")
    return path
