"""The weighted layered DAG at unit granularity.

Nodes are *units*: the input features or channels, the neurons of linear layers and the
channels of conv layers. Units come in :class:`UnitGroup` s (all units of one tensor), and
the groups are in topological order. Edges come in two kinds:

* :class:`Layer` (module :mod:`netgraph.layer`): the edge bundles of one parameterised layer (``nn.Linear`` or
  ``nn.ConvNd``). The bundle of edge ``u -> v`` is the set of weight elements connecting
  unit ``u`` of the source group to unit ``v`` of the destination group: the kernel
  ``W[v, u]`` of a conv, the single weight ``W[v, u]`` of a linear layer, or, after a
  flatten, the ``k`` columns of the linear weight that read channel ``u``. The weights are
  stored as an array of shape ``(n_dst, n_in, k)`` that is a reshape of the parameter
  (same element order), so a mask of that shape reshapes straight to the parameter's.
  A grouped (or depthwise) conv with ``groups`` groups stores only its blocks: bundle
  ``(v, j)`` joins destination unit ``v`` to source unit
  ``(v // (n_dst / groups)) * n_in + j`` (:meth:`Layer.src_index`); for ``groups == 1``
  this is source unit ``j`` and ``n_in == n_src``.
* :class:`Shortcut`: edges of weight 1 without parameters: identity edges from unit ``c``
  of one group to unit ``c`` of another (a residual identity shortcut), or an index map
  ``src_units[i] -> dst_units[i]`` (concatenation, split, channel permutation).

Per-unit scales (BatchNorm in eval mode, scalar multiplications) are attached to the edges
that cross them: ``out_scale`` on the destination side (a scale applied to the sum arriving
at a unit) and ``in_scale`` on the source side (a scale applied to a unit's value before a
layer reads it). With all scales 1 this is exactly the data model of DESIGN.md.

The graph is built by :func:`netgraph.from_torch`; its weight arrays *view* the model's
float32/float64 CPU parameters (no copy: a 1B-weight model costs no second 4 GB), so an
in-place change of the model's weights (training, ``MaskSet.apply``) shows through. Build
the graph again, or from a deep copy of the model, to keep a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Mapping, Union

import numpy as np

from ._validate import as_bool_mask
from .errors import InvalidInputError, MaskMismatchError
from .layer import Layer


@dataclass(eq=False)
class UnitGroup:
    """All units of one tensor: a node set of the DAG.

    Attributes
    ----------
    index : int
        Position in topological order.
    name : str
        Name of the traced operation whose output these units are (``"input"`` for the
        input).
    size : int
        Number of units.
    kind : {"input", "hidden", "output"}
    """

    index: int
    name: str
    size: int
    kind: str = "hidden"


@dataclass(eq=False)
class Shortcut:
    """Weight-1 edges between two unit groups: an identity shortcut or an index map.

    ``kind="identity"``: edges ``c -> c`` between two groups of equal size (a residual
    identity shortcut). ``kind="index"``: edges ``src_units[i] -> dst_units[i]`` (a
    concatenation, split or channel permutation maps units onto units without weights);
    within one shortcut both index arrays hold distinct units, so every source unit has
    at most one edge out of it and every destination unit at most one edge into it.

    ``scale`` (length ``size``, one per edge, or ``None``) is a per-edge factor from scale
    operations (e.g. BatchNorm) on either side of the shortcut.
    """

    index: int
    src: int
    dst: int
    size: int
    scale: np.ndarray | None = None
    kind: str = "identity"
    src_units: np.ndarray | None = None
    dst_units: np.ndarray | None = None
    n_src: int | None = None
    n_dst: int | None = None

    def __post_init__(self):
        if self.src_units is None:
            self.src_units = np.arange(self.size)
        if self.dst_units is None:
            self.dst_units = np.arange(self.size)
        if self.n_src is None:
            self.n_src = self.size
        if self.n_dst is None:
            self.n_dst = self.size

    @property
    def name(self) -> str:
        return f"shortcut{self.index}"

    @property
    def is_identity(self) -> bool:
        return self.kind == "identity"

    @cached_property
    def in_scale(self) -> np.ndarray | None:
        """The edge scales as a per-source-unit vector (length ``n_src``; 1 off the map)."""
        if self.scale is None or self.is_identity:
            return self.scale
        s = np.ones(self.n_src)
        s[self.src_units] = self.scale
        return s

    def push(self, agg, x: np.ndarray) -> np.ndarray:
        """Forward along the edges (``agg`` is unused: every edge weighs 1)."""
        if self.is_identity:
            return x
        y = np.zeros(self.n_dst, dtype=np.result_type(x, np.float64))
        y[self.dst_units] = x[self.src_units]
        return y

    def pull(self, agg, y: np.ndarray) -> np.ndarray:
        """Backward along the edges (the transpose of :meth:`push`)."""
        if self.is_identity:
            return y
        x = np.zeros(self.n_src, dtype=np.result_type(y, np.float64))
        x[self.src_units] = y[self.dst_units]
        return x

    @property
    def out_scale(self) -> None:
        return None


Edge = Union[Layer, Shortcut]


@dataclass(eq=False)
class NetGraph:
    """A network as a weighted layered DAG of units.

    Build one with :func:`netgraph.from_torch`. Algorithms (flows, sparsifiers, metrics)
    are plain functions taking the graph first.

    Attributes
    ----------
    groups : list of UnitGroup
        Node sets in topological order; ``groups[0]`` is the input, ``groups[-1]`` the output.
    layers : list of Layer
        Parameterised layers in topological order.
    shortcuts : list of Shortcut
        Weight-free edges: identity shortcuts and index maps.
    input_shape : tuple of int
        Shape of one input sample (without the batch dimension).
    model_spec : dict
        How to rebuild the model (zoo name or factory, input shape, seed), when known.
    offpath : list of dict
        *Off-path parameters*: weights that feed only non-path operations (the convs of a
        squeeze-and-excitation gate, attention query/key weights and relative position
        biases), each ``{"param", "shape", "numel", "role", "module"}``, plus ``"rows"``
        when only a row range of the parameter is off-path (the query/key rows of a fused
        ``qkv`` whose value rows are a layer, see :attr:`Layer.rows`). They are not layers of the graph (no path crosses them; their effect
        is a per-unit scale fixed at the linearisation point). Densities count them; a
        policy (``netgraph.offpath``: dense, or magnitude) gives their masks (see
        docs/data-model.md).
    offpath_weights : dict
        Parameter name -> read-only numpy view of each off-path parameter (the whole
        parameter, also for a row range), for the ``"magnitude"`` policy.
    """

    groups: list
    layers: list
    shortcuts: list = field(default_factory=list)
    input_shape: tuple = ()
    model_spec: dict = field(default_factory=dict)
    offpath: list = field(default_factory=list)
    offpath_weights: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self._in = [[] for _ in self.groups]
        self._out = [[] for _ in self.groups]
        for e in [*self.layers, *self.shortcuts]:
            if not e.src < e.dst:
                raise ValueError(f"edge {e.name} goes from group {e.src} to {e.dst}: not topological")
            self._in[e.dst].append(e)
            self._out[e.src].append(e)
        for lst in (*self._in, *self._out):
            lst.sort(key=lambda e: (isinstance(e, Shortcut), e.index))
        self._by_param = {}
        rows: dict = {}
        for layer in self.layers:  # one parameter: several layers only over disjoint row ranges
            taken = rows.setdefault(layer.param, np.zeros(layer.param_shape[0], dtype=bool))
            r = layer.rows or (0, layer.param_shape[0])
            if taken[r[0]:r[1]].any():
                raise ValueError(f"parameters used by several layers (shared weights): [{layer.param!r}]")
            taken[r[0]:r[1]] = True
            self._by_param.setdefault(layer.param, layer)
        for p in self.offpath:  # off-path rows: never rows that a layer (or another entry) holds
            shape = tuple(p.get("shape") or ())
            if not shape:
                continue
            taken = rows.setdefault(p["param"], np.zeros(shape[0], dtype=bool))
            r = p.get("rows") or (0, shape[0])
            if taken[r[0]:r[1]].any():
                raise ValueError(f"parameters used by several layers (shared weights): [{p['param']!r}] "
                                 "(on a path and off it, or off-path twice)")
            taken[r[0]:r[1]] = True

    # -- structure --------------------------------------------------------------
    @property
    def input_group(self) -> UnitGroup:
        return self.groups[0]

    @property
    def output_group(self) -> UnitGroup:
        return self.groups[-1]

    def edges_into(self, group: int) -> list:
        """Layers and shortcuts whose destination is ``group`` (layers first)."""
        return self._in[group]

    def edges_out_of(self, group: int) -> list:
        """Layers and shortcuts whose source is ``group`` (layers first)."""
        return self._out[group]

    def edges(self) -> Iterator[Edge]:
        """All layers and shortcuts."""
        yield from self.layers
        yield from self.shortcuts

    def layer(self, name: str) -> Layer:
        """The layer with module name or parameter name ``name``."""
        if name in self._by_param:
            return self._by_param[name]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers: {[l.name for l in self.layers]}")

    @property
    def num_weights(self) -> int:
        """Number of prunable weights (elements of conv and linear weights)."""
        return int(sum(layer.numel for layer in self.layers))

    @property
    def num_units(self) -> int:
        return int(sum(g.size for g in self.groups))

    @property
    def num_edges(self) -> int:
        """Number of unit-level edges: ``(u, v)`` bundles of the layers (``n_dst * n_in`` each,
        so a grouped conv counts only its blocks) plus identity edges."""
        return int(sum(l.num_bundles for l in self.layers) + sum(s.size for s in self.shortcuts))

    @property
    def param_names(self) -> list:
        """Names of the parameters the layers are (or are row ranges of), each once."""
        return list(self._by_param)

    # -- masks ------------------------------------------------------------------
    def dense_masks(self) -> list:
        """All-true masks, one ``(n_dst, n_in, k)`` bool array per layer."""
        return [np.ones(layer.weight.shape, dtype=bool) for layer in self.layers]

    def layer_masks(self, masks) -> list:
        """Per-layer bool arrays of shape ``(n_dst, n_in, k)`` for a mask set.

        ``masks`` may be ``None`` (dense), a :class:`~netgraph.MaskSet` or a mapping from
        parameter name to a mask tensor/array of the parameter's shape, or a list with one
        array per layer, of the layer's form ``(n_dst, n_in, k)`` or its parameter's shape
        (its rows, for a layer that is a row range). A mapping must have exactly the graph's
        parameters. Each mask is bool, or numbers that are all exactly 0 or 1 (the rule of
        :class:`~netgraph.MaskSet`); scores, NaN or 2 are refused. (Functions that read
        masks go through :func:`netgraph.masked.as_masked`, which calls this once.)

        Raises
        ------
        MaskMismatchError
            If a parameter is missing, unknown, or its mask has the wrong shape.
        InvalidInputError
            If ``masks`` is of another kind, or a mask is not a tensor/array of 0/1 values.
        """
        if masks is None:
            return self.dense_masks()
        if isinstance(masks, (list, tuple)):
            if len(masks) != len(self.layers):
                raise MaskMismatchError(
                    f"got {len(masks)} layer masks for a graph with {len(self.layers)} layers"
                )
            return [np.asarray(as_bool_mask(layer.param, m, layer.rows_shape, layer.weight.shape))
                    .reshape(layer.weight.shape) for layer, m in zip(self.layers, masks)]
        if not isinstance(masks, Mapping):
            raise InvalidInputError(
                f"masks must be None, a MaskSet, a dict name -> tensor or a list of arrays, "
                f"got {type(masks).__name__}"
            )
        missing = [p for p in self.param_names if p not in masks]
        offpath = {p["param"] for p in self.offpath}  # kept dense by policy: not read here
        extra = [p for p in masks if p not in self._by_param and p not in offpath]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"no mask for parameters {missing[:5]}{'...' if len(missing) > 5 else ''}")
            if extra:
                parts.append(f"masks for parameters the graph does not have {extra[:5]}"
                             f"{'...' if len(extra) > 5 else ''}")
            raise MaskMismatchError("mask set does not fit this graph: " + "; ".join(parts))
        return [np.asarray(layer.take(as_bool_mask(layer.param, masks[layer.param], layer.param_shape)))
                .reshape(layer.weight.shape) for layer in self.layers]

    def split_flat(self, flat: np.ndarray) -> list:
        """Per-layer ``(n_dst, n_in, k)`` views of an array over all weights in layer order."""
        out, off = [], 0
        for layer in self.layers:
            out.append(flat[off:off + layer.numel].reshape(layer.weight.shape))
            off += layer.numel
        return out

    def masks_to_params(self, layer_masks) -> dict:
        """Turn per-layer ``(n_dst, n_in, k)`` masks into ``{param name: bool ndarray}``.

        The rows of a parameter that no layer holds (the off-path query/key rows of a fused
        projection) are true: kept dense by policy.
        """
        return self.to_params([np.asarray(m, dtype=bool) for m in layer_masks], fill=True)

    def to_params(self, arrays, fill) -> dict:
        """Per-layer arrays (any shape with ``layer.numel`` elements) as ``{param: array}``.

        A layer over the whole parameter is reshaped to it; layers over row ranges are
        written into one array of the parameter's shape whose other rows hold ``fill``.
        """
        out = {}
        for layer, a in zip(self.layers, arrays):
            a = np.asarray(a)
            if layer.rows is None:
                out[layer.param] = a.reshape(layer.param_shape)
                continue
            full = out.get(layer.param)
            if full is None:
                full = out[layer.param] = np.full(layer.param_shape, fill, dtype=a.dtype)
            full[layer.rows[0]:layer.rows[1]] = a.reshape(layer.rows_shape)
        return out

    # -- interop ----------------------------------------------------------------
    def to_networkx(self, masks=None, **kwargs):
        """See :func:`netgraph.interop.to_networkx`."""
        from .interop import to_networkx

        return to_networkx(self, masks, **kwargs)

    def to_igraph(self, masks=None, **kwargs):
        """See :func:`netgraph.interop.to_igraph`."""
        from .interop import to_igraph

        return to_igraph(self, masks, **kwargs)

    def __repr__(self) -> str:
        name = self.model_spec.get("name") or "model"
        return (
            f"NetGraph({name}: {len(self.groups)} unit groups, {self.num_units} units, "
            f"{len(self.layers)} layers, {len(self.shortcuts)} shortcuts, "
            f"{self.num_weights} prunable weights)"
        )
