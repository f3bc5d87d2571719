"""A graph with one mask: the object every flow and metric reads.

:func:`as_masked` is the one place where a mask in any accepted form (``None`` for dense,
a :class:`~netgraph.MaskSet`, a dict of tensors, per-layer arrays, or an existing
:class:`MaskedGraph`) is checked against the graph and turned into per-layer boolean
arrays. The result caches the per-layer aggregates and anything else computed from them
(flows, reachability), so many metrics of one mask share the work. A sparse layer (kept
indices) also offers its kept bundles, their aggregates and a CSR matrix of them
(:meth:`MaskedGraph.kept_bundles`, :meth:`~MaskedGraph.bundle_values`,
:meth:`~MaskedGraph.operator`) in O(kept weights), with no dense aggregate made.

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

from typing import Callable, Mapping

import numpy as np

from ._numba import LOAD_FROM
from ._validate import as_bool_mask, check_choice
from .errors import InvalidInputError

WEIGHTS = ("abs", "square", "count")


#: Below this kept fraction a layer's masked aggregates come from its kept indices (bincount).
SPARSE_BELOW = 0.125
#: Sparse layers of at least this many bundles give the flow programme CSR matrices of their
#: kept bundles (:meth:`MaskedGraph.operator`); smaller ones their dense aggregates, which
#: cost little (4 MiB at most) and keep the floats of the dense (BLAS) products.
CSR_FROM = 1 << 19


def csr_rows(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple):
    """The ``scipy.sparse`` CSR matrix of ``shape`` holding ``vals`` at ``(rows, cols)``, given
    in row-major order (ascending flat index): no sort, no copy of ``vals`` (so updates to it
    show in the matrix), explicit zeros kept, int32 indices where they fit."""
    import scipy.sparse as sp

    itype = np.int32 if max(shape[1], cols.size) < 2**31 else np.int64
    indptr = np.zeros(shape[0] + 1, itype)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return sp.csr_matrix((vals, cols.astype(itype, copy=False), indptr), shape=shape, copy=False)


def kept_indices(mask: np.ndarray, count: int | None = None, compiled: bool = False) -> np.ndarray:
    """Flat indices of the kept elements of one layer mask; ``compiled`` (with its ``count`` of
    kept elements, a C-contiguous boolean mask): by :func:`netgraph._mask_kernels.kept_indices`,
    the same indices in one pass."""
    if compiled and count is not None and mask.dtype == np.bool_ and mask.flags.c_contiguous:
        from ._mask_kernels import kept_indices as compiled_kept

        return compiled_kept(mask, count)
    return np.flatnonzero(mask.reshape(-1))


def _weights_at(layer, idx: np.ndarray, w=None) -> np.ndarray:
    """The weights of one layer's kept elements ``idx``: ``w`` if gathered already, else read."""
    return layer.weight.reshape(-1)[idx] if w is None else w


def _element_values(layer, weights: str, idx: np.ndarray, w=None) -> np.ndarray:
    """``1``, ``|w|`` or ``w^2`` (float64) of the kept elements ``idx`` of one layer (``w``:
    their weights, gathered already, else read here)."""
    if weights == "count":
        return np.ones(idx.size)
    w = _weights_at(layer, idx, w).astype(np.float64)
    return np.abs(w) if weights == "abs" else w * w


def layer_aggregate(layer, weights: str, m, idx=None, w=None) -> np.ndarray:
    """One layer's bundle aggregate (float64, the layer's bundle shape ``weight.shape[:2]``):
    the sum of kept ``|w|`` (``weights="abs"``), of kept ``w^2`` (``"square"``) or the number
    of kept elements (``"count"``). ``m``: the layer's mask (None: dense); ``idx``: its flat
    kept indices (O(kept weights), no float64 copy of the layer), else the mask is reduced
    block by block; ``w``: the weights at ``idx``, if gathered already."""
    shape = layer.weight.shape[:2]
    if m is None:
        return np.full(shape, float(layer.k)) if weights == "count" else (
            layer.abs_sum if weights == "abs" else layer.sq_sum)
    if idx is not None:
        b = idx // layer.k if layer.k > 1 else idx
        # float64 weights at once (no int64 copy for counts)
        return np.bincount(b, weights=_element_values(layer, weights, idx, w), minlength=layer.num_bundles).reshape(shape)
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
    return a


def kept_bundle_values(layer, weights: str, idx: np.ndarray, w=None) -> np.ndarray:
    """The aggregates of the kept bundles of a sparse layer from its flat kept indices
    ``idx`` (ascending), in bundle order: O(kept weights), and the same floats as the dense
    aggregate at those bundles (each bundle's elements are added in the same order); ``w``:
    the weights at ``idx``, if gathered already."""
    vals = _element_values(layer, weights, idx, w)
    if layer.k == 1 or not idx.size:
        return vals  # one element per bundle: 0 + x is x
    b = idx // layer.k
    run = np.cumsum(np.r_[False, b[1:] != b[:-1]])  # the kept bundle of each element
    return np.bincount(run, weights=vals)


def layer_bundle_max(layer, m, idx=None, w=None) -> np.ndarray:
    """The largest kept ``|w|`` of each bundle of one layer (0 where none is kept), in the
    weights' own dtype (a maximum is exact in it; float32 weights give float32 maxima, which
    keeps a 1-element-bundle layer at the weights' size). ``m``: the layer's mask (None:
    dense); ``idx``: its flat kept indices (a segment maximum; ``w``: the weights there, if
    gathered already), else blocks of rows."""
    a = np.zeros(layer.num_bundles, dtype=np.result_type(layer.weight.dtype, np.float32))
    if idx is not None:
        a[_kept_bundle_ids(layer, idx)] = kept_bundle_max(layer, idx, w)
        return a.reshape(layer.weight.shape[:2])
    a = a.reshape(layer.weight.shape[:2])
    rows = max(1, (1 << 22) // max(1, layer.n_in * layer.k))
    for s in range(0, layer.n_dst, rows):
        w = np.abs(layer.weight[s:s + rows])
        if m is not None:
            w *= m[s:s + rows]
        a[s:s + rows] = w.max(axis=2)
    return a


def _runs(layer, idx: np.ndarray) -> tuple:
    """The bundle of each kept element ``idx`` (ascending, ``k > 1``) and where each bundle's
    run of elements starts."""
    b = idx // layer.k
    return b, (np.flatnonzero(np.r_[True, b[1:] != b[:-1]]) if b.size else b)


def _kept_bundle_ids(layer, idx: np.ndarray) -> np.ndarray:
    """Flat indices (ascending) of the bundles holding the kept elements ``idx`` (ascending)."""
    if layer.k == 1:
        return idx
    b, starts = _runs(layer, idx)
    return b[starts]


def kept_bundle_max(layer, idx: np.ndarray, w=None) -> np.ndarray:
    """The largest kept ``|w|`` of each kept bundle of a sparse layer (flat kept indices
    ``idx``, ascending; ``w``: the weights there, if gathered already), in bundle order and
    the weights' dtype; O(kept weights)."""
    w = np.abs(_weights_at(layer, idx, w))
    if layer.k == 1 or not idx.size:  # one-element bundles: the maximum is the element
        return w
    return np.maximum.reduceat(w, _runs(layer, idx)[1])  # bundles are runs


class MaskedGraph:
    """A graph with one mask, whose aggregates (and derived values) are computed once each.

    Make one with :func:`as_masked` (or ``MaskedGraph(graph, masks)``, which validates
    ``masks`` the same way). ``layer_masks`` is ``None`` for the dense network, else one
    boolean array of shape ``layer.weight.shape`` per layer. They may share the memory of
    the masks given, and what is computed from them is kept: after changing a mask in place,
    make a new masked graph (values cached before the change would be mixed with new ones).
    """

    def __init__(self, graph, masks=None):
        self.graph = graph
        self.layer_masks = None if masks is None else graph.layer_masks(masks)
        # the masks of off-path parameters that a mapping gives (read by offpath_counts only)
        offpath = getattr(graph, "offpath", ())
        self._offpath_masks = {p["param"]: masks[p["param"]] for p in offpath if p["param"] in masks} \
            if isinstance(masks, Mapping) and offpath else {}
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

    def has(self, key) -> bool:
        """Whether ``key`` is computed and stored (:meth:`cached`)."""
        return key in self._cache

    def drop(self, key) -> None:
        """Forget ``key``'s stored value (if any): the next :meth:`cached` computes it again."""
        self._cache.pop(key, None)

    def kept(self) -> list | None:
        """Per layer, the flat kept indices where the mask is sparse (else None); cached."""
        if self.layer_masks is None:
            return None
        compiled = self.graph.num_weights >= LOAD_FROM  # (numba's load pays on large graphs only)
        return self.cached("kept_indices", lambda: [
            kept_indices(m, n, compiled) if n < SPARSE_BELOW * m.size else None
            for m, n in zip(self.layer_masks, self.kept_counts())])

    def kept_counts(self) -> list:
        """Per layer, the number of kept elements (int); cached."""
        if self.layer_masks is None:
            return [layer.numel for layer in self.graph.layers]
        return self.cached("kept_counts", lambda: [int(np.count_nonzero(m)) for m in self.layer_masks])

    def offpath_counts(self) -> tuple:
        """``(kept, total)`` over the graph's off-path parameters (``graph.offpath``); cached.

        An off-path parameter the masks hold (a :class:`~netgraph.MaskSet` or mapping) counts
        its true entries; one they do not hold (per-layer arrays, dense, a mapping without
        it) counts as kept, the library's default ``"dense"`` policy. Each entry counts its own
        rows (``rows``; a fused ``qkv``'s value rows are a layer's, :meth:`kept_counts`).
        With :meth:`kept_counts` this gives :attr:`netgraph.MaskSet.achieved_density` of a
        method's masks, the count its target density refers to.

        Raises
        ------
        InvalidInputError, MaskMismatchError
            If an off-path mask is not a 0/1 tensor or array of its parameter's shape.
        """
        def compute():
            kept = total = 0
            full: dict = {}  # parameter -> its mask, validated once (a parameter may have several entries)
            for p in getattr(self.graph, "offpath", ()):
                n, name = int(p["numel"]), p["param"]
                total += n
                if name not in self._offpath_masks:
                    kept += n
                    continue
                shape = tuple(p["shape"])
                if name not in full:
                    full[name] = np.asarray(as_bool_mask(name, self._offpath_masks[name], shape)).reshape(shape[0], -1)
                a, b = p.get("rows") or (0, shape[0])
                kept += int(np.count_nonzero(full[name][a:b]))
            return kept, total

        return self.cached("offpath_counts", compute)

    def _kept_of(self, layer):
        kept = self.kept()
        return None if kept is None else kept[layer.index]

    def kept_weights(self, layer) -> np.ndarray | None:
        """The weights of a sparse layer's kept elements, in the order of its kept indices
        (:meth:`kept`; the weights' dtype), None for a layer without them. Gathered once and
        cached: every aggregate and maximum reads them (a gather from a large layer misses the
        cache at each kept element: vgg16's fc1 at 1% paid about 10 ms a gather)."""
        idx = self._kept_of(layer)
        if idx is None:
            return None
        return self.cached(("kept_weights", layer.index), lambda: _weights_at(layer, idx))

    def _weights_for(self, weights: str, layer):
        """:meth:`kept_weights` where ``weights`` reads them (not for counts)."""
        return None if weights == "count" else self.kept_weights(layer)

    def aggregate(self, weights: str, layer) -> np.ndarray:
        """One layer's aggregate (see :meth:`aggregates`), computed alone; cached."""
        check_choice("weights", weights, WEIGHTS)
        whole = self._cache.get(("aggregates", weights))
        if whole is not None:
            return whole[layer.index]
        m = None if self.layer_masks is None else self.layer_masks[layer.index]
        return self.cached(("aggregate", weights, layer.index), lambda: layer_aggregate(
            layer, weights, m, self._kept_of(layer), self._weights_for(weights, layer)))

    def aggregates(self, weights: str) -> list:
        """Per-layer dense bundle aggregates (:func:`layer_aggregate`); cached."""
        check_choice("weights", weights, WEIGHTS)
        return self.cached(("aggregates", weights), lambda: [self.aggregate(weights, l) for l in self.graph.layers])

    def kept_bundles(self, layer) -> tuple:
        """``(v, u, nz)`` of the layer's bundles that keep an element: destination unit,
        source unit and flat bundle index (ascending); from the kept indices when the layer
        is sparse, O(kept weights). Cached per layer; the same bundles as
        ``layer.nonzero_bundles(self.aggregates("count")[i])``."""
        def compute():
            idx = self._kept_of(layer)
            if idx is not None:
                nz = _kept_bundle_ids(layer, idx)
            else:
                nz = np.flatnonzero(self.aggregate("count", layer))
            return *layer.bundle_units(nz), nz

        return self.cached(("kept_bundles", layer.index), compute)

    def bundle_values(self, weights: str, layer) -> np.ndarray:
        """The aggregates of the layer's kept bundles, in the order of :meth:`kept_bundles`:
        the floats of ``aggregates(weights)[i].reshape(-1)[nz]``, in O(kept weights) for a
        sparse layer (no dense aggregate is made). Cached."""
        check_choice("weights", weights, WEIGHTS)

        def compute():
            idx = self._kept_of(layer)
            if idx is not None:
                return kept_bundle_values(layer, weights, idx, self._weights_for(weights, layer))
            return self.aggregate(weights, layer).reshape(-1)[self.kept_bundles(layer)[2]]

        return self.cached(("bundle_values", weights, layer.index), compute)

    def operator(self, weights: str, layer):
        """The layer's bundle matrix for :meth:`netgraph.Layer.push` / ``pull``: a
        ``scipy.sparse`` CSR matrix of :meth:`bundle_values` for a large sparse layer (kept
        indices, ``groups == 1``, at least :data:`CSR_FROM` bundles), O(kept bundles); the
        dense aggregate otherwise. Cached."""
        if self._kept_of(layer) is None or layer.groups > 1 or layer.num_bundles < CSR_FROM:
            return self.aggregate(weights, layer)

        def compute():
            v, u, _ = self.kept_bundles(layer)
            return csr_rows(v, u, self.bundle_values(weights, layer), (layer.n_dst, layer.n_in))

        return self.cached(("operator", weights, layer.index), compute)

    def kept_bundle_max(self, layer) -> np.ndarray:
        """The largest kept ``|w|`` of each kept bundle, in the order of :meth:`kept_bundles`
        (weights' dtype): O(kept weights) for a sparse layer. Not cached."""
        idx = self._kept_of(layer)
        if idx is not None:
            return kept_bundle_max(layer, idx, self.kept_weights(layer))
        return self.bundle_max(layer).reshape(-1)[self.kept_bundles(layer)[2]]

    def bundle_max(self, layer) -> np.ndarray:
        """The largest kept ``|w|`` of each of the layer's bundles (:func:`layer_bundle_max`);
        not cached (it is as large as the layer's bundles)."""
        m = None if self.layer_masks is None else self.layer_masks[layer.index]
        return layer_bundle_max(layer, m, self._kept_of(layer), self.kept_weights(layer))

    def __repr__(self) -> str:
        kept = "dense" if self.dense else f"{int(sum(m.sum() for m in self.layer_masks))} kept weights"
        return f"MaskedGraph({self.graph!r}, {kept})"


def check_graph(graph, what: str) -> None:
    """Raise one clear line unless ``graph`` is a :class:`~netgraph.NetGraph` (by its interface:
    the graph module imports this one; ``what``: who asks; a torch model gets the hint to trace
    it first)."""
    if not (hasattr(graph, "layer_masks") and hasattr(graph, "edges") and hasattr(graph, "num_weights")):
        hint = " (trace a torch model first: netgraph.from_torch(model, input_shape))" \
            if hasattr(graph, "named_parameters") else ""
        raise InvalidInputError(f"{what} takes a NetGraph and masks, got a {type(graph).__name__}{hint}")


def as_masked(graph, masks=None) -> MaskedGraph:
    """The :class:`MaskedGraph` of ``graph`` under ``masks`` (validated once).

    A :class:`MaskedGraph` of the same graph is returned as is, so functions can call this
    on whatever they are given.

    Raises
    ------
    InvalidInputError
        If ``graph`` is not a :class:`~netgraph.NetGraph` (a torch model, say).
    MaskMismatchError
        If the masks do not fit the graph (a parameter missing or unknown, a wrong shape).
    """
    check_graph(graph, "a metric")
    if isinstance(masks, MaskedGraph):
        if masks.graph is graph:
            return masks
        masks = masks.layer_masks
    return MaskedGraph(graph, masks)
