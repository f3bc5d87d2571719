"""A graph with one mask: the object every flow and metric reads.

:func:`as_masked` is the one place where a mask in any accepted form (``None`` for dense,
a :class:`~netgraph.MaskSet`, a dict of tensors, per-layer arrays, or an existing
:class:`MaskedGraph`) is checked against the graph and turned into per-layer boolean
arrays. The result caches the per-layer aggregates and anything else computed from them
(flows, reachability), so many metrics of one mask share the work.

>>> import torch, netgraph
>>> from netgraph.masked import as_masked
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> g = netgraph.from_torch(model, (3,))
>>> mg = as_masked(g, None)
>>> as_masked(g, mg) is mg
True
>>> [a.shape for a in mg.aggregates("count")]
[(4, 3), (2, 4)]
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._validate import check_choice

WEIGHTS = ("abs", "square", "count")


def layer_aggregates(graph, weights: str, layer_masks) -> list:
    """Per-layer bundle aggregates (float64) under per-layer masks (``None`` = dense).

    ``weights`` is ``"abs"`` (sum of kept ``|w|``), ``"square"`` (sum of kept ``w^2``) or
    ``"count"`` (number of kept elements). Each array has the shape of the layer's bundle
    matrix, ``layer.weight.shape[:2]``.
    """
    check_choice("weights", weights, WEIGHTS)
    out = []
    for i, layer in enumerate(graph.layers):
        m = None if layer_masks is None else layer_masks[i]
        shape = layer.weight.shape[:2]
        if weights == "count":
            if m is None:
                a = np.full(shape, float(layer.k))
            else:  # exact small integers; a float32 matrix-vector product is the fast reduction
                a = (m.reshape(-1, layer.k).astype(np.float32) @ np.ones(layer.k, np.float32))
                a = a.astype(np.float64).reshape(shape)
        elif m is None:
            a = layer.abs_sum if weights == "abs" else layer.sq_sum
        else:
            w = layer.weight.astype(np.float64)
            w = np.abs(w, out=w) if weights == "abs" else np.square(w, out=w)
            a = np.einsum("ijk,ijk->ij", w, m)
        out.append(a)
    return out


class MaskedGraph:
    """A graph with one mask, whose aggregates (and derived values) are computed once each.

    Make one with :func:`as_masked` (or ``MaskedGraph(graph, masks)``, which validates
    ``masks`` the same way). ``layer_masks`` is ``None`` for the dense network, else one
    boolean array of shape ``layer.weight.shape`` per layer.
    """

    def __init__(self, graph, masks=None):
        self.graph = graph
        self.layer_masks = None if masks is None else graph.layer_masks(masks)
        self._cache: dict = {}

    @property
    def dense(self) -> bool:
        return self.layer_masks is None

    def masks_or_dense(self) -> list:
        """Per-layer masks, all-true arrays for the dense network."""
        return self.graph.dense_masks() if self.layer_masks is None else self.layer_masks

    def cached(self, key, compute: Callable):
        """``compute()`` the first time ``key`` is asked for, the stored value after."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def aggregates(self, weights: str) -> list:
        return self.cached(("aggregates", weights),
                           lambda: layer_aggregates(self.graph, weights, self.layer_masks))

    def __repr__(self) -> str:
        kept = "dense" if self.dense else f"{int(sum(m.sum() for m in self.layer_masks))} kept weights"
        return f"MaskedGraph({self.graph!r}, {kept})"


def as_masked(graph, masks=None) -> MaskedGraph:
    """The :class:`MaskedGraph` of ``graph`` under ``masks`` (validated once).

    A :class:`MaskedGraph` of the same graph is returned as is, so functions can call this
    on whatever they are given.

    Raises
    ------
    MaskMismatchError
        If the masks do not fit the graph (a parameter missing or unknown, a wrong shape).
    """
    if isinstance(masks, MaskedGraph):
        if masks.graph is graph:
            return masks
        masks = masks.layer_masks
    return MaskedGraph(graph, masks)
