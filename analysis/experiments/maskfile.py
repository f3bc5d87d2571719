"""Mask files on the command line: one writer and one reader for every command.

* :func:`check_mask_path`: the format an output name asks for, from its suffix
  (:data:`FORMATS`: ``.pt``/``.pth`` a torch file, ``.safetensors``); any other suffix is
  refused before any work starts.
* :func:`write_masks`: writes that format (:func:`netgraph.export.save_safetensors` or
  :meth:`netgraph.MaskSet.save`).
* :func:`read_masks`: reads either format (:func:`netgraph.export.load`, which tells them
  apart by the file's first bytes), then checks the metadata's model spec
  (:func:`model_spec`), so a hand-edited file fails with one line naming the entry, not deep
  inside the model builder.
* :func:`rebuild_args`: the arguments that rebuild the model a mask file was made for, with
  overrides; one line when the file's model was built in Python and cannot be rebuilt by name.
"""

from __future__ import annotations

import os
from numbers import Integral

from netgraph import export
from netgraph._trace_ops import LAYER_SCALE_MODES
from netgraph._validate import check_input_shape, check_seed
from netgraph.errors import NetgraphError, NotAMaskFileError
from netgraph.masks import MaskSet

__all__ = ["FORMATS", "check_mask_path", "write_masks", "read_masks", "model_spec", "rebuildable", "rebuild_args"]

#: The suffixes the CLI writes -> their format, by the library's one rule (:func:`netgraph.export.format_of_name`).
FORMATS = {s: export.format_of_name(f"m{s}") for s in (".pt", ".pth", export.SAFETENSORS_SUFFIX)}
_ACCEPTED = ", ".join(f"{s} ({f})" for s, f in FORMATS.items())


def check_mask_path(path) -> str:
    """The format (``"torch"`` or ``"safetensors"``) ``path``'s suffix names; one line otherwise.

    >>> check_mask_path("m.safetensors"), check_mask_path("m.pt")
    ('safetensors', 'torch')
    >>> check_mask_path("m.npz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: ... the suffix '.npz' is not a mask format; use .pt (torch), .pth (torch), ...
    """
    from netgraph.errors import InvalidInputError

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        what = f"the suffix {suffix!r} is not a mask format" if suffix else "the name has no suffix"
        raise InvalidInputError(f"cannot write a mask file as {os.fspath(path)!r}: {what}; use {_ACCEPTED}")
    return export.format_of_name(path)


def write_masks(masks: MaskSet, path) -> None:
    """Write ``masks`` in the format of ``path``'s suffix (:func:`check_mask_path`, then the
    library's writer, :func:`netgraph.export.save`)."""
    check_mask_path(path)
    export.save(masks, path)


def read_masks(path) -> MaskSet:
    """A mask file of either format, with its metadata's model spec checked (one line otherwise)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NotAMaskFileError(f"{path}: no such file" if not os.path.isdir(path) else
                                f"{path} is a folder, not a mask file")
    ms = export.load(path)  # (either format, by content)
    model_spec(ms, path)
    return ms


def _bad(path, key, why):
    return NotAMaskFileError(f"{path}: the metadata's model.{key} {why} (a hand-edited file? fix or remake it)")


def model_spec(ms: MaskSet, path="the mask file") -> dict:
    """The metadata's model spec (``{}`` if none), each entry checked: ``name`` a non-empty
    string, ``seed`` an integer in 0..2^32-1, ``input_shape`` positive integers,
    ``num_classes`` a positive integer, ``layer_scale`` one of the modes."""
    spec = ms.meta.get("model")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise NotAMaskFileError(f"{path}: the metadata's model is a {type(spec).__name__}, not a mapping "
                                "(name, input_shape, seed, num_classes)")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _bad(path, "name", f"must be a model name (text), got {name!r}")
    if spec.get("seed") is not None:
        try:
            check_seed(spec["seed"])
        except NetgraphError as exc:
            raise _bad(path, "seed", str(exc).replace("seed must", "must")) from None
    shape = spec.get("input_shape")
    if shape is not None:
        try:
            check_input_shape(shape)  # (the API's one rule of shapes)
        except NetgraphError:
            raise _bad(path, "input_shape", f"must be a list of positive integers, got {shape!r}") from None
    classes = spec.get("num_classes")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, Integral) or classes < 1):
        raise _bad(path, "num_classes", f"must be a positive integer, got {classes!r}")
    scale = spec.get("layer_scale")
    if scale is not None and scale not in LAYER_SCALE_MODES:
        raise _bad(path, "layer_scale", f"must be one of {', '.join(map(repr, LAYER_SCALE_MODES))}, got {scale!r}")
    return spec


def rebuildable(name) -> bool:
    """True when ``name`` is a model name :func:`netgraph.zoo.load_model` rebuilds: a zoo model,
    ``torchvision:NAME``, ``timm:NAME`` or ``pkg.module:factory``. A model built in Python and
    given to the library records its class name (``"ResNet"``), which is not one.

    >>> rebuildable("resnet20"), rebuildable("torchvision:resnet18"), rebuildable("ResNet")
    (True, True, False)
    """
    from netgraph import zoo

    return isinstance(name, str) and (":" in name or name in zoo.names())


def rebuild_args(ms: MaskSet, path="the mask file", model=None, input_shape=None, seed=None,
                 num_classes=None, cli: bool = True) -> dict:
    """The arguments of :func:`netgraph.zoo.graph_of` (``spec``, ``input_shape``, ``seed``,
    ``num_classes``, ``layer_scale``) that rebuild the model ``ms`` was made for.

    Each argument given (not None) overrides the file's. The file's input shape, number of
    classes and seed apply to its own model (``model`` None or the recorded name); with
    another ``model``, the file's input shape still applies when the recorded model was built
    in Python (its shape is the one the mask was made at), the number of classes is the
    model's own, the seed the file's.

    Raises
    ------
    InvalidInputError
        No ``model`` and the file names none, or names a model built in Python (a class
        name, :func:`rebuildable` False): the line says what to pass, as the CLI's options
        (``cli=True``) or as Python arguments.
    """
    from netgraph.errors import InvalidInputError

    model_, classes_, shape_ = (("--model ", "--num-classes ", "--input-shape ") if cli
                                else ("model=", "num_classes=", "input_shape="))
    spec = model_spec(ms, path)
    recorded, shape = spec.get("name"), spec.get("input_shape")
    if model is None and not recorded:
        raise InvalidInputError(f"{path} does not say which model it was made for; pass {model_.strip()} (and "
                                f"{classes_.strip()}, {shape_.strip()} as the mask was made)")
    if model is None and not rebuildable(recorded):
        at = f" (default: the file's {','.join(map(str, shape))})" if shape else ""
        shape_eg = "C,H,W" if cli else "(C, H, W)"
        names = ("torchvision:NAME, timm:NAME or pkg.module:factory" if cli
                 else "'torchvision:NAME', 'timm:NAME' or 'pkg.module:factory'")
        graph = "" if cli else "graph=netgraph.from_torch(your_model, input_shape), or "
        raise InvalidInputError(
            f"{path} was made for {recorded!r}, a model built in Python: that class name cannot be rebuilt; pass "
            f"{graph}the model as {model_}{names} with {classes_}N (its number of outputs) and {shape_}{shape_eg}{at}")
    own = model is None or model == recorded
    keep_shape = own or not rebuildable(recorded)
    return {"spec": model or recorded,
            "input_shape": input_shape if input_shape is not None else (shape if keep_shape else None),
            "seed": int(seed if seed is not None else spec.get("seed", 0)),
            "num_classes": num_classes if num_classes is not None else (spec.get("num_classes") if own else None),
            "layer_scale": spec.get("layer_scale", "as_is")}
