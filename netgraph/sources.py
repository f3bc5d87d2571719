"""Third-party model sources: ``torchvision:NAME`` and ``timm:NAME``, architectures only.

:mod:`netgraph.zoo` dispatches to this module; use its functions (``zoo.build``,
``zoo.load_model``, ``zoo.input_shape``, ``zoo.names``), which accept these names next to the
zoo's and ``pkg.module:factory``.

* ``torchvision:NAME``: a classification model of ``torchvision.models`` (the names of
  ``torchvision.models.list_models(module=torchvision.models)``), built with
  ``torchvision.models.get_model(NAME, weights=None, num_classes=...)``.
* ``timm:NAME`` (optionally ``NAME.TAG``): ``timm.create_model(NAME, pretrained=False,
  num_classes=...)``. Names that make timm fetch a configuration (``hf-hub:``,
  ``local-dir:``) are refused.

Never pretrained weights, nothing downloaded: the weights are each architecture's own
initialisation, drawn from the torch RNG seeded with ``seed`` inside
:func:`torch.random.fork_rng` (the caller's global RNG state is restored afterwards).

Default input shapes (one sample, no batch dimension):

* torchvision: ``(3, 224, 224)``, ``(3, 299, 299)`` for ``inception_v3``. Every torchvision
  classification architecture built without weights takes 224 px (ViT and MaxViT are built
  for exactly 224 px; the others pool adaptively). Some *weights* were trained at other
  sizes (EfficientNet-B1..B7 240 to 600 px, EfficientNet V2 384/480 px, Swin V2 256 px, the
  SWAG end-to-end weights of RegNetY and ViT 384 to 518 px): pass ``input_shape`` to trace at
  those sizes (a ViT accepts only the size it was built for).
* timm: the ``input_size`` of the model's pretrained configuration (the default tag's unless
  ``NAME.TAG`` names one), the value ``timm.data.resolve_data_config`` gives for the model;
  ``(3, 224, 224)`` when timm has no configuration for it.

torchvision and timm are optional: ``pip install 'netgraph-pai[models]'``.
"""

from __future__ import annotations

import difflib
import importlib
import warnings

import torch
import torch.nn as nn

from ._validate import check_positive_int
from .errors import InvalidInputError

PREFIXES = ("torchvision", "timm")
_INSTALL = "pip install 'netgraph-pai[models]'"
_TORCHVISION_INPUT = {"inception_v3": (3, 299, 299)}  # everything else: 224 px
# Builders that warn about a future default unless told (True is today's default).
_TORCHVISION_KWARGS = {"googlenet": {"init_weights": True}, "inception_v3": {"init_weights": True}}
_REMOTE_TIMM = ("hf-hub:", "hf_hub:", "local-dir:")


def split(spec: str):
    """``"timm:convnext_atto"`` -> ``("timm", "convnext_atto")``; ``(None, spec)`` otherwise.

    Examples
    --------
    >>> split("torchvision:resnet50"), split("resnet20")
    (('torchvision', 'resnet50'), (None, 'resnet20'))
    """
    head, sep, rest = str(spec).partition(":")
    if sep and head in PREFIXES:
        if not rest:
            raise InvalidInputError(f"model {spec!r} has no name after {head}:; e.g. {head}:resnet50")
        return head, rest
    return None, str(spec)


def require(package: str):
    """Import an optional model package, or fail with one line saying what to install."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise InvalidInputError(
            f"model source '{package}:' needs the package {package}, which is not installed: {_INSTALL}"
        ) from None
    except Exception as exc:  # e.g. a torchvision built for another torch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(
            f"{package} is installed but fails to import ({first}); install one built for torch "
            f"{torch.__version__.split('+')[0]}: {_INSTALL}"
        ) from None


def names(source: str) -> list:
    """The model names a source accepts (without the ``source:`` prefix).

    Examples
    --------
    >>> "resnet50" in names("torchvision")
    True
    """
    if source == "torchvision":
        tv = require("torchvision")
        return list(tv.models.list_models(module=tv.models))
    if source == "timm":
        return list(require("timm").list_models())
    raise InvalidInputError(f"unknown model source {source!r}; sources: zoo, {', '.join(PREFIXES)}")


def _unknown(source: str, name: str, known) -> InvalidInputError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return InvalidInputError(
        f"unknown {source} model {name!r}{hint}; list them with netgraph.zoo.names({source!r}) "
        f"(or `netgraph models --source {source}`)"
    )


def _check_timm_name(name: str):
    if name.startswith(_REMOTE_TIMM):
        raise InvalidInputError(
            f"timm:{name} would download a configuration from a hub or read a local checkpoint; "
            "netgraph builds architectures only: give a timm architecture name such as timm:convnext_atto"
        )
    timm = require("timm")
    arch, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        raise _unknown("timm", name, timm.list_models())
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # a tag timm does not know
        raise InvalidInputError(
            f"timm model {arch!r} has no configuration tag {tag!r}; list them with "
            f"timm.list_pretrained({arch + '.*'!r})"
        ) from None
    return timm, cfg


def _check_torchvision_name(name: str):
    tv = require("torchvision")
    known = tv.models.list_models(module=tv.models)
    if name not in known:
        if name in tv.models.list_models():
            raise InvalidInputError(
                f"torchvision:{name} is not a classification model; netgraph takes the classification "
                "models of torchvision.models: list them with netgraph.zoo.names('torchvision')"
            )
        raise _unknown("torchvision", name, known)
    return tv


def default_input_shape(source: str, name: str) -> tuple:
    """The input shape of one sample that a model of ``source`` is configured for.

    Examples
    --------
    >>> default_input_shape("torchvision", "inception_v3")
    (3, 299, 299)
    """
    if source == "torchvision":
        _check_torchvision_name(name)
        return _TORCHVISION_INPUT.get(name, (3, 224, 224))
    _timm, cfg = _check_timm_name(name)
    if cfg is None or cfg.input_size is None:
        return (3, 224, 224)
    return tuple(int(s) for s in cfg.input_size)


def _make(source: str, name: str, num_classes):
    kw = {} if num_classes is None else {"num_classes": int(num_classes)}
    if source == "torchvision":
        tv = _check_torchvision_name(name)
        return tv.models.get_model(name, weights=None, **_TORCHVISION_KWARGS.get(name, {}), **kw)
    timm, _cfg = _check_timm_name(name)
    return timm.create_model(name, pretrained=False, **kw)


def build(source: str, name: str, seed: int = 0, num_classes=None) -> nn.Module:
    """A torchvision or timm architecture with its own initialisation, seeded; no weights loaded.

    Parameters
    ----------
    source : {"torchvision", "timm"}
    name : str
        Model name in that source (see :func:`names`).
    seed : int
        Seed of torch's RNG while the model is constructed; the caller's RNG state is restored.
    num_classes : int, optional
        Number of outputs (default: the architecture's, 1000 for ImageNet models).

    Examples
    --------
    >>> m = build("torchvision", "resnet18", seed=0, num_classes=10)
    >>> m.fc.out_features
    10
    """
    if num_classes is not None:
        num_classes = check_positive_int("num_classes", num_classes)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. torchvision's notes on weights=None
        torch.manual_seed(int(seed))
        try:
            model = _make(source, name, num_classes)
        except InvalidInputError:
            raise
        except (TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(f"building {source}:{name} failed: {first}") from exc
    return model


def num_classes_of(model: nn.Module, source: str, num_classes=None) -> int | None:
    """The number of classes a built model has (the one given, else the architecture's)."""
    if num_classes is not None:
        return int(num_classes)
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    if source == "torchvision":
        return 1000  # every torchvision classification builder defaults to ImageNet-1k
    return None
