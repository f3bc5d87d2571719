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


#: Below this kept fraction a layer's masked aggregates come from its kept indices (bincount).
SPARSE_BELOW = 0.125


def kept_indices(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the kept elements of one layer mask."""
    return np.flatnonzero(mask.reshape(-1))


def layer_aggregates(graph, weights: str, layer_masks, kept=None) -> list:
    """Per-layer bundle aggregates (float64) under per-layer masks (``None`` = dense).

    ``weights`` is ``"abs"`` (sum of kept ``|w|``), ``"square"`` (sum of kept ``w^2``) or
    ``"count"`` (number of kept elements). Each array has the shape of the layer's bundle
    matrix, ``layer.weight.shape[:2]``. ``kept`` (optional, per layer): flat kept indices, or
    None where the layer is dense enough to reduce block by block; sparse layers then cost
    O(kept weights), never a float64 copy of the layer.
    """
    check_choice("weights", weights, WEIGHTS)
    out = []
    for i, layer in enumerate(graph.layers):
        m = None if layer_masks is None else layer_masks[i]
        shape = layer.weight.shape[:2]
        idx = None if kept is None else kept[i]
        if m is None:
            a = np.full(shape, float(layer.k)) if weights == "count" else (
                layer.abs_sum if weights == "abs" else layer.sq_sum)
        elif idx is not None:
            nb = layer.num_bundles
            b = idx // layer.k if layer.k > 1 else idx
            if weights == "count":
                a = np.bincount(b, weights=np.ones(b.size), minlength=nb)  # float64 at once, no int64 copy
            else:
                w = layer.weight.reshape(-1)[idx].astype(np.float64)
                a = np.bincount(b, weights=np.abs(w) if weights == "abs" else w * w, minlength=nb)
            a = a.reshape(shape)
        else:
            a = np.empty(shape)
            rows = max(1, (1 << 22) // max(1, layer.n_in * layer.k))
            for s in range(0, layer.n_dst, rows):  # row blocks bound the temporaries
                mm = m[s:s + rows]
                if weights == "count":
                    a[s:s + rows] = mm.sum(axis=2, dtype=np.int32)
                    continue
                w = layer.weight[s:s + rows].astype(np.float64)
                w = np.abs(w, out=w) if weights == "abs" else np.square(w, out=w)
                a[s:s + rows] = np.einsum("ijk,ijk->ij", w, mm)
        out.append(a)
    return out


def layer_bundle_max(graph, layer_masks, kept=None) -> list:
    """Per layer, the largest kept ``|w|`` of each bundle (0 where none is kept), in the
    weights' own dtype (a maximum is exact in it; float32 weights give float32 maxima, which
    keeps a 1-element-bundle layer at the weights' size).

    Same arguments as :func:`layer_aggregates`; sparse layers reduce their kept indices
    (a segment maximum), the others blocks of rows.
    """
    out = []
    for i, layer in enumerate(graph.layers):
        m = None if layer_masks is None else layer_masks[i]
        idx = None if kept is None else kept[i]
        a = np.zeros(layer.num_bundles, dtype=np.result_type(layer.weight.dtype, np.float32))
        if idx is not None:
            if idx.size and layer.k == 1:  # one-element bundles: the maximum is the element
                a[idx] = np.abs(layer.weight.reshape(-1)[idx])
            elif idx.size:
                b = idx // layer.k
                starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])  # idx is sorted: bundles are runs
                a[b[starts]] = np.maximum.reduceat(np.abs(layer.weight.reshape(-1)[idx]), starts)
            out.append(a.reshape(layer.weight.shape[:2]))
            continue
        a = a.reshape(layer.weight.shape[:2])
        rows = max(1, (1 << 22) // max(1, layer.n_in * layer.k))
        for s in range(0, layer.n_dst, rows):
            w = np.abs(layer.weight[s:s + rows])
            if m is not None:
                w *= m[s:s + rows]
            a[s:s + rows] = w.max(axis=2)
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

    def kept(self) -> list | None:
        """Per layer, the flat kept indices where the mask is sparse (else None); cached."""
        if self.layer_masks is None:
            return None

        def compute():
            out = []
            for m in self.layer_masks:
                n = int(np.count_nonzero(m))
                out.append(kept_indices(m) if n < SPARSE_BELOW * m.size else None)
            return out

        return self.cached("kept_indices", compute)

    def aggregates(self, weights: str) -> list:
        return self.cached(("aggregates", weights),
                           lambda: layer_aggregates(self.graph, weights, self.layer_masks, self.kept()))

    def kept_bundles(self, layer) -> tuple:
        """``(v, u, nz)`` of the layer's bundles that keep an element: destination unit,
        source unit and flat bundle index (ascending); from the kept indices when the layer
        is sparse, O(kept weights). Cached per layer; the same bundles as
        ``layer.nonzero_bundles(self.aggregates("count")[i])``."""
        def compute():
            kept = self.kept()
            idx = None if kept is None else kept[layer.index]
            if idx is not None:
                b = idx // layer.k
                nz = b[np.flatnonzero(np.r_[True, b[1:] != b[:-1]])] if b.size else b
            else:
                nz = np.flatnonzero(self.aggregates("count")[layer.index])
            v, j = np.divmod(nz, layer.n_in)
            u = j if layer.groups == 1 else (v // layer.group_out) * layer.n_in + j
            return v, u, nz

        return self.cached(("kept_bundles", layer.index), compute)

    def bundle_max(self) -> list:
        """Per layer, the largest kept ``|w|`` of each bundle (:func:`layer_bundle_max`); not
        cached (one metric reads it, and it is as large as a layer's bundles)."""
        return layer_bundle_max(self.graph, self.layer_masks, self.kept())

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
