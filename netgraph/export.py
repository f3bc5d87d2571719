"""Masks for every runtime: safetensors files, parametrizations, reading masks back, sparse modules.

* :func:`save_safetensors` / :func:`load_safetensors`: the masks as ``bool`` tensors of a
  ``.safetensors`` file, the metadata as JSON in its header (key ``netgraph_meta``);
  :func:`save` / :func:`load` pick the format from the file name.
* :func:`apply_parametrize` / :func:`remove_parametrize`: a ``torch.nn.utils.parametrize``
  parametrization ``weight = original * mask`` (trainable: the optimiser updates
  ``parametrizations.weight.original``; pruned entries get zero gradient; removable).
* :func:`masks_from_model`: the mask a model carries, whichever way it was applied
  (``prune`` buffers, a parametrization, or zeros after ``multiply``).
* :func:`to_sparse`: a copy of a model whose masked ``Linear`` and ``1x1`` ``Conv2d``
  layers multiply with ``torch.sparse_csr`` weights (inference only).

>>> import torch, netgraph
>>> from netgraph import export
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
>>> ms = netgraph.MaskSet({"0.weight": torch.eye(3, 4, dtype=torch.bool)})
>>> export.apply_parametrize(model, ms)
>>> int((model[0].weight != 0).sum())
3
>>> bool(torch.equal(export.masks_from_model(model)["0.weight"], ms["0.weight"]))
True
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from numbers import Real

import torch
import torch.nn as nn

from ._validate import as_path, check_file_path, check_module, write_bytes
from .errors import InvalidInputError, NotAMaskFileError
from .masks import Mask, MaskSet, check_format, copy_model, parameter_of, prunable_parameter_names
from .masks import remove_parametrize as _remove_parametrize

META_KEY = "netgraph_meta"
#: safetensors sorts tensors by name: the mask set's order is kept in the metadata under this key (one
#: header entry: safetensors writes the entries of its header's metadata in no fixed order).
ORDER_META = "parameter_order"
ORDER_KEY = "netgraph_order"  # where files of netgraph 0.1 kept it, a header entry of its own
SAFETENSORS_SUFFIX = ".safetensors"


def _check_masks(masks) -> MaskSet:
    if not isinstance(masks, MaskSet):
        raise InvalidInputError(f"masks must be a netgraph.MaskSet, got {type(masks).__name__}")
    return masks


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError:  # pragma: no cover - a declared dependency
        raise InvalidInputError("safetensors is not installed: pip install safetensors") from None
    return st


def save_safetensors(masks: MaskSet, path) -> None:
    """Write ``masks`` to a ``.safetensors`` file (bool tensors, metadata as JSON in the header).

    Any safetensors reader gets the masks by parameter name; the header holds
    ``netgraph_meta`` (the metadata as JSON; the parameter order under ``parameter_order``),
    its only entry, so that the same masks give the same bytes.
    """
    st = _safetensors()
    _check_masks(masks)
    path = check_file_path(path)
    meta = masks.file_meta()
    meta[ORDER_META] = list(masks)
    tensors = {k: v.contiguous() for k, v in masks.items()}
    header = {META_KEY: json.dumps(meta)}  # (file_meta's values are plain: as a torch file holds them)
    write_bytes(path, st.save(tensors, metadata=header))


def load_safetensors(path) -> MaskSet:
    """Read a mask file written by :func:`save_safetensors` (a clear error otherwise).

    Raises
    ------
    NotAMaskFileError
        If the file is missing, not a safetensors file of bool tensors, its header's entries
        are not JSON, or its format is newer than this code reads (:func:`~netgraph.masks.check_format`).
    """
    st = _safetensors()
    path = as_path(path)
    if not os.path.isfile(path):
        raise NotAMaskFileError(f"{path}: no such file")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
        tensors = st.load_file(path)
    except Exception as exc:
        raise NotAMaskFileError(f"{path} is not a safetensors file ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(header.get(META_KEY, "{}"))
        order = meta.pop(ORDER_META, None) if isinstance(meta, dict) else None
        order = json.loads(header.get(ORDER_KEY, "[]")) if order is None else order
    except json.JSONDecodeError:
        raise NotAMaskFileError(f"{path}: header entries {META_KEY!r}/{ORDER_KEY!r} are not JSON") from None
    check_format(meta if isinstance(meta, dict) else {}, path)  # (before the tensors: a newer format may differ)
    bad = [k for k, v in tensors.items() if v.dtype != torch.bool]
    if bad:
        raise NotAMaskFileError(f"{path} is not a mask file: tensors {bad[:5]} are not bool")
    names = [n for n in order if n in tensors] + sorted(n for n in tensors if n not in order)
    return MaskSet({n: tensors[n] for n in names}, meta)


def format_of_name(path) -> str:
    """The format a file name asks for: ``"safetensors"`` (a ``.safetensors`` suffix, any case),
    else ``"torch"``; the one rule of names (:func:`save`, the reader's fallback, the CLI)."""
    return "safetensors" if as_path(path).lower().endswith(SAFETENSORS_SUFFIX) else "torch"


def save(masks: MaskSet, path) -> None:
    """Save in the format the file name says (:func:`format_of_name`)."""
    _check_masks(masks)
    if format_of_name(path) == "safetensors":
        save_safetensors(masks, path)
    else:
        masks.save(path)


def _format(path: str) -> str | None:
    """``"safetensors"`` when the file starts as one does (an 8-byte header length, then ``{``),
    ``"torch"`` as a torch file does (a zip, or a pickle), else None (missing, or neither)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotAMaskFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(head) == 9 and head[8:9] == b"{" and 8 + struct.unpack("<Q", head[:8])[0] <= os.path.getsize(path):
        return "safetensors"
    return "torch" if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80" else None


def load(path) -> MaskSet:
    """Load a mask file of either format, torch (:meth:`MaskSet.save`) or safetensors
    (:func:`save_safetensors`), told apart by its first bytes, whatever its name. The one
    reader of mask files: ``netgraph.load_masks``, the CLI, PHEW's ``init_mask``.

    Raises
    ------
    NotAMaskFileError
        If the file is missing, not a mask file of either format, or of a newer format than
        this code reads.
    """
    path = as_path(path)
    kind = _format(path)
    if kind is None and os.path.isfile(path):  # readable or not, neither kind: say so plainly
        size = os.path.getsize(path)
        what = "it is empty" if size == 0 else "neither a torch file (zip or pickle) nor a safetensors file"
        raise NotAMaskFileError(f"{path} is not a mask file: {what}")
    return load_safetensors(path) if (kind or format_of_name(path)) == "safetensors" else MaskSet.load(path)


load_masks = load  # netgraph.load_masks


def apply_parametrize(model: nn.Module, masks: MaskSet, strict: bool = True) -> None:
    """Register a :class:`~netgraph.masks.Mask` parametrization on every masked parameter of ``model``.

    The weight stays trainable (``module.parametrizations.weight.original``); the forward
    pass always sees ``original * mask``, so pruned weights are zero and get no gradient.
    :func:`remove_parametrize` makes it permanent. ``strict`` as in :meth:`MaskSet.check`.
    """
    _check_masks(masks).apply(model, how="parametrize", strict=strict)


def remove_parametrize(model: nn.Module) -> nn.Module:
    """Remove every :class:`~netgraph.masks.Mask` parametrization, keeping the masked values as plain parameters."""
    return _remove_parametrize(check_module(model, "remove_parametrize"))


def _maskable_names(model: nn.Module) -> list:
    """:func:`~netgraph.masks.prunable_parameter_names` and every other parameter that carries a
    mask (a pruning buffer or a Mask parametrization), in module order."""
    out = prunable_parameter_names(model)
    for mname, module in model.named_modules():
        plist = getattr(module, "parametrizations", None)
        attrs = [b[:-len("_mask")] for b, _ in module.named_buffers(recurse=False) if b.endswith("_mask")]
        attrs += [a for a in (plist or {}) if any(isinstance(p, Mask) for p in plist[a])]
        out += [n for n in (f"{mname}.{a}" if mname else a for a in attrs) if n not in out]
    return out


def masks_from_model(model: nn.Module, meta: dict | None = None) -> MaskSet:
    """The masks ``model`` carries for its conv and linear weights, ``nn.MultiheadAttention``'s
    input projections and any other parameter masked by :meth:`MaskSet.apply`.

    A ``torch.nn.utils.prune`` buffer (``weight_mask``) or :class:`~netgraph.masks.Mask`
    parametrizations (several stacked: all of them, and-ed) give the mask exactly; otherwise
    the mask is ``weight != 0`` (after ``how="multiply"`` or :func:`remove_parametrize`, a
    weight that is zero by chance reads as pruned; after ``how="multiply"`` and then another
    mode, the later mask is read: the zeros the multiply left are in the weights, not a mask).
    """
    out = {}
    for pname in _maskable_names(check_module(model, "masks_from_model")):
        module, attr, _ = parameter_of(model, pname)
        plist = getattr(module, "parametrizations", None)
        found = None
        if plist is not None and attr in plist:
            for p in plist[attr]:
                if isinstance(p, Mask):
                    found = p.mask if found is None else found & p.mask
        if found is None and hasattr(module, f"{attr}_mask"):
            found = getattr(module, f"{attr}_mask") != 0
        if found is None:
            found = getattr(module, attr).detach() != 0
        out[pname] = found.detach().cpu()
    return MaskSet(out, meta)


def _csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().contiguous().to_sparse_csr()


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` a ``torch.sparse_csr`` tensor (inference only)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", _csr(weight))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x):
        lead = x.shape[:-1]
        y = (self.weight @ x.reshape(-1, self.in_features).T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


class SparseConv1x1(nn.Module):
    """A ``1x1`` ``Conv2d`` (groups 1, no padding) as a sparse ``C_out x C_in`` product."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride=(1, 1)):
        super().__init__()
        self.stride = tuple(stride)
        self.register_buffer("weight", _csr(weight[:, :, 0, 0]))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x):
        x = x[:, :, :: self.stride[0], :: self.stride[1]]
        n, c, h, w = x.shape
        y = self.weight @ x.permute(1, 0, 2, 3).reshape(c, -1)
        y = y.reshape(-1, n, h, w).permute(1, 0, 2, 3)
        return y if self.bias is None else y + self.bias[None, :, None, None]


def _sparsifiable(module) -> bool:
    # a subclass with its own forward (weight standardisation, dynamic padding) may use
    # another weight than its parameter: it stays as it is
    if isinstance(module, nn.Linear):
        return type(module).forward is nn.Linear.forward
    return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
            and module.kernel_size == (1, 1) and module.groups == 1
            and module.padding in ((0, 0), "valid") and module.padding_mode == "zeros")


def to_sparse(model: nn.Module, max_density: float = 1.0) -> nn.Module:
    """A copy of ``model`` whose ``Linear`` and ``1x1`` ``Conv2d`` layers use sparse CSR weights.

    The weights are the model's current (masked) values: apply a mask first (any mode);
    the model itself is not changed.
    Layers whose kept fraction is above ``max_density`` (a number in [0, 1]) stay dense
    (sparse kernels only pay off at low density). The copy is for inference (the sparse
    weights are buffers).

    Raises
    ------
    InvalidInputError
        If ``model`` is not a container module or ``max_density`` is not in [0, 1].

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.mul_(torch.rand(4, 8) < 0.3)
    >>> sparse = to_sparse(model)
    >>> x = torch.randn(2, 8)
    >>> torch.allclose(sparse(x), model(x), atol=1e-6)
    True
    """
    check_module(model, "to_sparse")
    if isinstance(max_density, bool) or not isinstance(max_density, Real) or not 0.0 <= max_density <= 1.0:
        raise InvalidInputError(
            f"max_density must be a number in [0, 1] (layers kept above it stay dense), got {max_density!r}")
    names = [n for n, m in model.named_modules() if n and _sparsifiable(m)]
    if not names and _sparsifiable(model):
        raise InvalidInputError("to_sparse needs a container module; wrap a single layer in nn.Sequential")
    # The copy keeps parametrizations and pruning hooks of the other layers as they are:
    # removing a parametrization from a deep copy would break the original (they share
    # the parametrized class), so sparse modules are built from the original's weights.
    out = copy_model(model)
    for name in names:
        mod = model.get_submodule(name)
        with torch.no_grad():
            weight = mod.weight.detach().clone()
        if int(torch.count_nonzero(weight)) > max_density * weight.numel():  # exact count (no float32 mean)
            continue
        if isinstance(mod, nn.Linear):
            new = SparseLinear(weight, mod.bias)
        else:
            new = SparseConv1x1(weight, mod.bias, mod.stride)
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, child, new)
    return out
