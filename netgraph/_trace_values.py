"""Symbolic tensor values of the tracer and the builder that turns them into unit groups.

A value is a set of channel units (the channel dimension, or the features of a flat
tensor) laid out in a tensor as ``(batch, channels, *spatial)`` or, with
``channels_last``, ``(batch, *spatial, channels)``. It is either

* a *unit group* that already exists in the graph (``group``), read with an optional
  per-unit ``scale``, or
* *pending* incoming edges (``terms``): layer outputs that have no unit group yet, and
  index-map terms (channel ``dst_units[i]`` of the value is unit ``src_units[i]`` of group
  ``src``) made by concatenation, split and channel permutation.

Pending values become a unit group (:meth:`_Builder.materialize`) when a layer reads them,
when a value with layer terms is used by several operations, or at the output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch.nn as nn

from .graph import Layer, Shortcut, UnitGroup


def _mul(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a * b


@dataclass
class _Term:
    """A pending incoming edge: a layer (``layer`` set), an identity shortcut, or an index map.

    ``scale`` is per destination channel for layers and identity shortcuts, per edge
    (aligned with ``dst_units``) for index maps.
    """

    src: int
    scale: np.ndarray | None = None
    layer: dict | None = None
    in_scale: np.ndarray | None = None
    src_units: np.ndarray | None = None
    dst_units: np.ndarray | None = None

    @property
    def is_map(self) -> bool:
        return self.layer is None and self.dst_units is not None

    def scaled(self, s):
        if s is None:
            return self
        if self.is_map:
            s = s[self.dst_units]
        return dataclasses.replace(self, scale=_mul(self.scale, s))


@dataclass
class _Value:
    """Symbolic value of a tensor: units plus a group or pending terms."""

    n: int
    spatial: tuple
    flat_k: int = 1
    group: int | None = None
    terms: list | None = None
    scale: np.ndarray | None = None
    last_only: bool = False  # produced by softmax: may only feed the output
    channels_last: bool = False
    raw: object = None  # id tensor of a layout that is not (batch, channels, ...) (see _trace_ops)
    lead: int = 1  # size of dim 0 for one sample: > 1 when windows are folded into the batch (_trace_windows)

    def with_(self, **kw):
        return dataclasses.replace(self, **kw)

    @property
    def ndim(self) -> int:
        return 2 + len(self.spatial)

    @property
    def cdim(self) -> int:
        """Position of the channel dimension in the tensor."""
        return self.ndim - 1 if self.channels_last else 1

    @property
    def has_layer_terms(self) -> bool:
        return self.group is None and any(t.layer is not None for t in self.terms)


@dataclass
class _Tuple:
    """A tuple of values (the result of ``split``/``chunk``/``unbind``)."""

    items: list


class _Bad:
    """The value of an operation that could not be represented (already reported)."""


BAD = _Bad()


def _injective_pieces(src_units, dst_units, scale):
    """Split an index map into pieces whose source units are distinct."""
    out = []
    while src_units.size:
        _, first = np.unique(src_units, return_index=True)
        first.sort()
        out.append((src_units[first], dst_units[first], None if scale is None else scale[first]))
        rest = np.ones(src_units.size, bool)
        rest[first] = False
        src_units, dst_units = src_units[rest], dst_units[rest]
        scale = None if scale is None else scale[rest]
    return out


@dataclass
class _Builder:
    input_shape: tuple
    groups: list = field(default_factory=list)
    layers: list = field(default_factory=list)  # (fx order, Layer)
    shortcuts: list = field(default_factory=list)
    input_fixed: bool = False
    order: int = 0

    def new_group(self, name, size):
        g = UnitGroup(index=len(self.groups), name=name, size=size)
        self.groups.append(g)
        return g.index

    def materialize(self, v: _Value, name: str) -> _Value:
        """Give a pending value a unit group (the pending scale goes onto its edges)."""
        if v.group is not None:
            return v
        names = [t.layer["name"] for t in v.terms if t.layer is not None]
        g = self.new_group("+".join(names) if names else name, v.n)
        for t in v.terms:
            t = t.scaled(v.scale)
            if t.layer is not None:
                spec = t.layer
                self.layers.append((spec["order"], Layer(
                    index=-1, name=spec["name"], kind=spec["kind"], param=spec["param"],
                    param_shape=spec["param_shape"], src=t.src, dst=g, weight=spec["weight"],
                    in_scale=t.in_scale, out_scale=t.scale, groups=spec.get("groups", 1),
                    rows=spec.get("rows"))))
            elif not t.is_map:
                self.shortcuts.append(Shortcut(index=len(self.shortcuts), src=t.src, dst=g,
                                               size=v.n, scale=t.scale))
            else:
                self.add_map(t.src, g, t.src_units, t.dst_units, t.scale)
        return v.with_(group=g, terms=None, scale=None)

    def add_map(self, src, dst, src_units, dst_units, scale):
        """Index-map shortcuts ``src_units[i] -> dst_units[i]`` (split so each is injective)."""
        n_src, n_dst = self.groups[src].size, self.groups[dst].size
        for su, du, s in _injective_pieces(np.asarray(src_units, np.int64), np.asarray(dst_units, np.int64),
                                           scale):
            if n_src == n_dst == su.size and np.array_equal(su, du) and np.array_equal(su, np.arange(su.size)):
                self.shortcuts.append(Shortcut(index=len(self.shortcuts), src=src, dst=dst, size=su.size, scale=s))
            else:
                self.shortcuts.append(Shortcut(index=len(self.shortcuts), src=src, dst=dst, size=su.size, scale=s,
                                               kind="index", src_units=su, dst_units=du, n_src=n_src, n_dst=n_dst))

    def terms_of(self, v: _Value) -> list:
        if v.group is None:
            return [t.scaled(v.scale) for t in v.terms]
        if v.group == 0:
            self.input_fixed = True
        return [_Term(src=v.group, scale=v.scale)]

    def map_terms(self, v: _Value, name: str) -> list:
        """The value as index-map terms only (a value with layer terms gets a group first)."""
        if v.has_layer_terms:
            v = self.materialize(v, name)
        out = []
        for t in self.terms_of(v):
            if not t.is_map:
                ar = np.arange(v.n)
                t = dataclasses.replace(t, src_units=ar, dst_units=ar)
            out.append(t)
        return out


def stand_in(b, node, modules, env, signal):
    """A value standing in for an unsupported operation's output, so that the operations
    after it are still checked (the graph is not built): an input's value if the operation
    keeps its shape, fresh units for a conv/linear output or a ``(batch, C, ...)`` tensor
    (channels-last if the input was), else BAD."""
    shape = node.meta.get("ng_shape")
    if isinstance(shape, list):
        return _Tuple([stand_in_shaped(b, node, modules, env, signal, s) for s in shape])
    return stand_in_shaped(b, node, modules, env, signal, shape)


def stand_in_shaped(b, node, modules, env, signal, shape):
    if not isinstance(shape, tuple) or len(shape) < 2:
        return BAD
    ins = [a for a in node.all_input_nodes if a in signal and isinstance(env.get(a), _Value)]
    for a in ins:
        if a.meta.get("ng_shape") == shape and env[a].raw is None:
            return env[a].with_(last_only=False)
    x = env[ins[0]] if ins else None
    mod = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(mod, nn.Linear) or (x is not None and x.channels_last and len(shape) > 2):
        return _Value(n=shape[-1], spatial=tuple(shape[1:-1]), channels_last=len(shape) > 2,
                      group=b.new_group(node.name, shape[-1]))
    return _Value(n=shape[1], spatial=tuple(shape[2:]), group=b.new_group(node.name, shape[1]))
