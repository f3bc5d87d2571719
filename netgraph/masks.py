"""Mask sets: parameter name -> boolean tensor, with metadata, files and application.

A mask file is a plain dict ``{"masks": {name: bool tensor}, "meta": {...}}`` written with
``torch.save``, so anyone can read it without this library::

    blob = torch.load("masks.pt", weights_only=True)
    for name, mask in blob["masks"].items(): ...

``meta`` holds the method, requested and achieved density, seed, model spec, library
version and ``"format": "netgraph-masks/1"``; nothing time-dependent (the method's
``seconds`` stay in memory), so the same masks give the same bytes.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Mapping, MutableMapping

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import parametrize, prune

from ._json import plain
from ._validate import (as_bool_mask, as_path, check_choice, check_file_path, check_mask_shape, check_module,
                        write_bytes)
from ._version import __version__
from .errors import InvalidInputError, MaskMismatchError, NotAMaskFileError

FORMAT_VERSION = 1  # the version of the format files are written in; the newest this code reads
FORMAT = f"netgraph-masks/{FORMAT_VERSION}"


def check_format(meta: dict, path) -> None:
    """Refuse a mask file whose ``meta["format"]`` is ``netgraph-masks/N``, ``N`` above :data:`FORMAT_VERSION`."""
    name, _, n = str(meta.get("format", "")).rpartition("/")
    if name == FORMAT.rpartition("/")[0] and n.isdecimal() and int(n) > FORMAT_VERSION:
        raise NotAMaskFileError(f"{path}: mask file format {int(n)} is newer than this netgraph reads "
                                f"(format {FORMAT_VERSION} and older); upgrade netgraph")


def _to_bool_tensor(name, value) -> torch.Tensor:
    value = as_bool_mask(name, value)  # the one mask value rule (netgraph._validate)
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value


#: How :meth:`MaskSet.apply` applies masks.
APPLY_MODES = ("prune", "multiply", "parametrize")


class Mask(nn.Module):
    """Parametrization ``weight = original * mask`` (``torch.nn.utils.parametrize``).

    The mask is a non-trainable buffer; the original stays a trainable parameter
    (``module.parametrizations.weight.original``) and pruned entries get zero gradient.
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, x):
        return x * self.mask.to(x.dtype)


def parameter_of(model: nn.Module, name: str) -> tuple:
    """``(module, attribute, tensor)`` of the dotted parameter name ``name`` in ``model``;
    ``tensor`` (and ``module``, if the path does not exist) is None when there is no such tensor."""
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        return None, attr, None
    t = getattr(module, attr, None)
    return module, attr, t if isinstance(t, torch.Tensor) else None


def stored_tensor(model: nn.Module, name: str):
    """The tensor holding parameter ``name``'s values: ``weight_orig`` under torch's pruning, a
    parametrization's ``original``, else the parameter itself (None if there is none)."""
    module, attr, t = parameter_of(model, name)
    orig = getattr(module, f"{attr}_orig", None)
    if isinstance(orig, torch.Tensor):
        return orig
    plist = getattr(module, "parametrizations", None)
    return getattr(plist[attr], "original", t) if plist is not None and attr in plist else t


class MaskSet(MutableMapping):
    """Boolean masks keyed by parameter name, plus metadata.

    Values are validated on insertion: keys are strings, values are boolean tensors
    (tensors or arrays of numbers that are all exactly 0 or 1 are converted; other values,
    e.g. scores, NaN or 2, raise :class:`InvalidInputError`). Files hold bool tensors only
    (:meth:`load`).

    Parameters
    ----------
    masks : mapping, optional
        Parameter name (as in ``model.named_parameters()``) to mask of the parameter's shape.
    meta : dict, optional
        Metadata saved with the masks.

    Examples
    --------
    >>> import torch
    >>> from netgraph import MaskSet
    >>> model = torch.nn.Linear(4, 2)
    >>> ms = MaskSet({"weight": torch.tensor([[1, 0, 0, 1], [0, 0, 0, 1]])}, meta={"method": "hand"})
    >>> ms.achieved_density
    0.375
    >>> ms.apply(model)  # through torch.nn.utils.prune: pruned weights stay zero
    >>> int((model.weight == 0).sum())
    5
    """

    def __init__(self, masks: Mapping | None = None, meta: dict | None = None):
        if masks is not None and not isinstance(masks, Mapping):
            raise InvalidInputError(
                f"MaskSet takes a mapping parameter name -> mask, got {type(masks).__name__}")
        if meta is not None and not isinstance(meta, Mapping):
            raise InvalidInputError(f"MaskSet meta must be a dict, got {type(meta).__name__}")
        self._masks: dict = {}
        self.meta: dict = dict(meta or {})
        for k, v in (masks or {}).items():
            self[k] = v

    # -- mapping --------------------------------------------------------------------
    def __getitem__(self, key):
        return self._masks[key]

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise InvalidInputError(f"mask keys are parameter names (str), got {key!r}")
        self._masks[key] = _to_bool_tensor(key, value)

    def __delitem__(self, key):
        del self._masks[key]

    def __iter__(self):
        return iter(self._masks)

    def __len__(self):
        return len(self._masks)

    def __repr__(self):
        method = self.meta.get("method", "?")
        return f"MaskSet({len(self)} parameters, method={method}, achieved density={self.achieved_density:.6g})"

    # -- counts -----------------------------------------------------------------------
    @property
    def num_kept(self) -> int:
        return int(sum(int(m.sum()) for m in self._masks.values()))

    @property
    def num_total(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    @property
    def achieved_density(self) -> float:
        """Kept fraction of the masked parameters (what the mask achieves; the density a
        method was asked for is ``meta["density"]``)."""
        total = self.num_total
        return self.num_kept / total if total else 0.0

    @property
    def density(self) -> float:
        """Deprecated alias of :attr:`achieved_density` (removed in the next release)."""
        warnings.warn("MaskSet.density is renamed achieved_density (the asked density is meta['density'])",
                      DeprecationWarning, stacklevel=2)
        return self.achieved_density

    @property
    def sparsity(self) -> float:
        """Pruned fraction: ``1 - achieved_density``."""
        return 1.0 - self.achieved_density

    def report(self) -> list:
        """Per-parameter ``{"param", "shape", "kept", "total", "density"}`` records."""
        return [
            {"param": n, "shape": list(m.shape), "kept": int(m.sum()), "total": m.numel(),
             "density": float(m.sum()) / m.numel()}
            for n, m in self._masks.items()
        ]

    # -- files ------------------------------------------------------------------------
    #: Metadata that changes from run to run, never written to files (same masks, same bytes).
    TIME_DEPENDENT = ("seconds", "created")

    def file_meta(self) -> dict:
        """The metadata as mask files hold it: ``meta`` without :data:`TIME_DEPENDENT` keys, with the library
        version, format and kept, total and achieved counts; numpy scalars and arrays as Python numbers and lists."""
        meta = {k: v for k, v in self.meta.items() if k not in self.TIME_DEPENDENT}
        meta.setdefault("library_version", __version__)
        meta.update(format=FORMAT, kept=self.num_kept, total=self.num_total, achieved_density=self.achieved_density)
        return plain(meta, nonfinite="keep")

    def save(self, path) -> None:
        """Write ``{"masks": ..., "meta": ...}`` with ``torch.save``.

        Raises
        ------
        InvalidInputError
            If ``path`` is not a str or path-like, names a directory, or cannot be written.
        """
        path = check_file_path(path)
        blob = {"masks": dict(self._masks), "meta": self.file_meta()}
        buf = io.BytesIO()  # (torch.save names the zip's records after a file's name: the same bytes for any name)
        torch.save(blob, buf)
        write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> "MaskSet":
        """Read a mask file written by :meth:`save`.

        Raises
        ------
        InvalidInputError
            If ``path`` is not a str or path-like.
        NotAMaskFileError
            If the file does not exist, cannot be read safely by
            ``torch.load(weights_only=True)``, is not a mask file, or is of a newer format (:func:`check_format`).
        """
        path = as_path(path)
        if not os.path.isfile(path):
            raise NotAMaskFileError(f"{path}: no such file")
        try:
            with open(path, "rb") as f:  # (a file object: torch.load reads the content, not the name's suffix)
                blob = torch.load(f, weights_only=True, map_location="cpu")
        except Exception as exc:
            first = str(exc).split(". ")[0].splitlines()[0] if str(exc) else ""
            raise NotAMaskFileError(
                f"{path} is not a mask file: torch.load(weights_only=True) failed ({type(exc).__name__}: {first})"
            ) from None
        if isinstance(blob, dict) and isinstance(blob.get("meta"), dict):
            check_format(blob["meta"], path)  # first: a newer format may hold its masks otherwise
        if not isinstance(blob, dict) or not isinstance(blob.get("masks"), dict):
            keys = list(blob)[:5] if isinstance(blob, dict) else type(blob).__name__
            raise NotAMaskFileError(
                f"{path} is not a mask file: expected a dict with keys 'masks' and 'meta', found {keys}"
            )
        meta = blob.get("meta") or {}
        if not isinstance(meta, dict):
            raise NotAMaskFileError(f"{path} is not a mask file: 'meta' is a {type(meta).__name__}, not a dict")
        bad = [k for k, v in blob["masks"].items() if not isinstance(v, torch.Tensor) or v.dtype != torch.bool]
        if bad:
            raise NotAMaskFileError(f"{path} is not a mask file: entries {bad[:5]} are not bool tensors")
        return cls(blob["masks"], meta)

    # -- models -------------------------------------------------------------------------
    def _resolve(self, model: nn.Module, name: str):
        module, attr, t = parameter_of(model, name)
        if t is None:
            raise MaskMismatchError(
                f"mask for parameter {name!r} does not fit the model: the model has no such parameter"
            )
        return module, attr, t

    def check(self, model: nn.Module, strict: bool = True) -> None:
        """Raise :class:`MaskMismatchError` unless every mask fits a parameter of ``model``.

        The message names the parameter and both shapes. With ``strict=True`` (default)
        every conv and linear weight of the model must also have a mask, so that a mask
        made for a smaller model is not applied to part of a larger one.
        """
        check_module(model, "MaskSet.check")
        if strict:
            uncovered = [n for n in prunable_parameter_names(model) if n not in self._masks]
            if uncovered:
                model_meta = self.meta.get("model")
                made_for = model_meta.get("name") if isinstance(model_meta, dict) else None
                raise MaskMismatchError(
                    f"mask set does not cover {len(uncovered)} conv/linear weights of the model, e.g. "
                    f"{uncovered[:3]}" + (f" (the masks were made for {made_for!r})" if made_for else "")
                    + "; pass strict=False to mask only some parameters"
                )
        for name, m in self._masks.items():
            _, _, t = self._resolve(model, name)
            check_mask_shape(name, m.shape, t.shape)

    def apply(self, model: nn.Module, how: str = "prune", strict: bool = True) -> None:
        """Apply the masks to ``model`` in place.

        ``how="prune"`` (default) uses ``torch.nn.utils.prune.custom_from_mask``, so
        pruned weights stay zero through ordinary training; ``how="parametrize"``
        registers a :class:`Mask` parametrization (``torch.nn.utils.parametrize``:
        trainable, removable with :func:`netgraph.export.remove_parametrize`);
        ``how="multiply"`` zeroes the pruned weights once (they may grow back under
        training). Masks move to each
        parameter's device; the model is modified in place. ``strict`` as in :meth:`check`.
        On a model masked before, ``"prune"`` combines with torch's pruning and ``"parametrize"``
        stacks on a parametrization; other mixes (and ``"multiply"`` of a weight computed by
        a parametrization or by torch's pruning, which would change nothing) raise one clear
        line, before any parameter is changed.
        """
        check_choice("how", how, APPLY_MODES)
        self.check(model, strict)
        resolved = [(name, *self._resolve(model, name)) for name in self._masks]
        for name, module, attr, _ in resolved:  # every parameter checked before any is changed
            _check_mode(name, module, attr, how)
        for name, module, attr, t in resolved:
            mask = self._masks[name].to(t.device)
            if how == "prune":
                prune.custom_from_mask(module, name=attr, mask=mask)
            elif how == "parametrize":
                parametrize.register_parametrization(module, attr, Mask(mask))
            else:
                with torch.no_grad():
                    t.mul_(mask.to(t.dtype))

    @classmethod
    def from_graph(cls, graph, layer_masks, meta: dict | None = None, offpath_masks: list | None = None) -> "MaskSet":
        """Mask set from per-layer ``(n_dst, n_in, k)`` arrays of a :class:`NetGraph`.

        The graph's off-path parameters (``graph.offpath``, e.g. squeeze-and-excitation
        convs, attention query/key rows) get all-true masks (the ``"dense"`` policy) unless
        ``offpath_masks`` gives ``[(param, rows or None, mask of those rows)]``
        (:func:`netgraph.offpath.magnitude_masks`; several entries may share a parameter);
        the mask set's density counts them.
        """
        masks = {n: torch.from_numpy(np.ascontiguousarray(m)) for n, m in graph.masks_to_params(layer_masks).items()}
        for p in graph.offpath:  # off-path rows of a layer's parameter are already true
            masks.setdefault(p["param"], torch.ones(p["shape"], dtype=torch.bool))
        for name, rows, m in offpath_masks or ():
            m = torch.from_numpy(np.ascontiguousarray(m))
            if rows is None:
                masks[name] = m.reshape(masks[name].shape)
            else:
                masks[name][rows[0]:rows[1]] = m
        meta = dict(meta or {})
        meta.setdefault("model", graph.model_spec)
        meta.setdefault("library_version", __version__)
        return cls(masks, meta)


def _check_mode(name: str, module: nn.Module, attr: str, how: str) -> None:
    """One clear line unless ``how`` can mask parameter ``name`` over the way it is masked or
    computed already: torch's pruning takes another ``how="prune"``, :class:`Mask`
    parametrizations stack, and ``how="multiply"`` needs a plain tensor (it would change the
    stored values, not the weight computed from them)."""
    pruned = isinstance(getattr(module, f"{attr}_orig", None), torch.Tensor) and hasattr(module, f"{attr}_mask")
    plist = getattr(module, "parametrizations", None)
    chain = list(plist[attr]) if plist is not None and attr in plist else []
    others = ", ".join(sorted({type(p).__name__ for p in chain if not isinstance(p, Mask)}))
    if others and how != "parametrize":
        raise InvalidInputError(
            f"{name} is computed by a parametrization ({others}) that is not a netgraph Mask: how={how!r} "
            "cannot mask it; apply with how='parametrize' (it stacks a Mask on top)")
    if pruned and how != "prune":
        raise InvalidInputError(
            f"{name} is pruned already by torch.nn.utils.prune (an earlier how='prune'): apply with how='prune' "
            "(torch combines the masks), or make it permanent first (torch.nn.utils.prune.remove)")
    if chain and how != "parametrize":
        raise InvalidInputError(
            f"{name} is parametrized already (an earlier how='parametrize'): apply with how='parametrize' (the "
            "masks stack), or make it permanent first (netgraph.export.remove_parametrize)")


#: ``nn.MultiheadAttention``'s input projections: linear weights held by the module itself.
MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def prunable_parameter_names(model: nn.Module) -> list:
    """Names of the conv and linear weights of ``model`` (``.weight``, even when pruned) and of
    ``nn.MultiheadAttention``'s input projections, in module order."""
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    out = []
    for n, m in model.named_modules():
        attrs = ["weight"] if isinstance(m, layers) else \
            [a for a in MHA_WEIGHTS if getattr(m, a, None) is not None] if isinstance(m, nn.MultiheadAttention) else []
        out += [f"{n}.{a}" if n else a for a in attrs]
    return out


def remove_pruning(model: nn.Module) -> nn.Module:
    """Make pruning permanent: ``torch.nn.utils.prune.remove`` on every pruned tensor."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def remove_parametrize(model: nn.Module) -> nn.Module:
    """Remove every :class:`Mask` parametrization, keeping the masked values as plain parameters."""
    for module in model.modules():
        plist = getattr(module, "parametrizations", None)
        for attr in list(plist.keys()) if plist is not None else ():
            if any(isinstance(p, Mask) for p in plist[attr]):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model


def copy_model(model: nn.Module, plain: bool = False) -> nn.Module:
    """``copy.deepcopy(model)``, also of a model whose weights are computed tensors (the
    ``weight`` that ``torch.nn.utils.prune`` or the old ``weight_norm`` recompute before each
    forward pass, which deepcopy refuses): those are copied detached, and the copy recomputes
    them as the original does. ``plain=True``: the copy's masks applied by :meth:`MaskSet.apply`
    are made permanent (:func:`remove_pruning`, :func:`remove_parametrize`), so every weight
    is a plain parameter under its own name holding its masked value."""
    computed = [(m, k, v) for m in model.modules() for k, v in vars(m).items()
                if isinstance(v, torch.Tensor) and v.grad_fn is not None]
    try:
        for m, k, v in computed:
            setattr(m, k, v.detach())
        out = copy.deepcopy(model)
    finally:
        for m, k, v in computed:
            setattr(m, k, v)
    if not plain:
        return out
    for m in out.modules():  # the copy's own parametrized class: removing a parametrization
        cls = type(m)        # deletes its property from the class, which the original shares
        if parametrize.is_parametrized(m):
            m.__class__ = type(cls.__name__, cls.__bases__,
                               {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")})
    return remove_parametrize(remove_pruning(out))
