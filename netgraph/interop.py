"""Unit-level graphs for networkx and igraph.

The core keeps a network as per-layer arrays; these functions expand it into one vertex
per unit and one edge per kept ``(u, v)`` bundle, with the aggregates as edge attributes:

* ``abs_sum``: sum of kept ``|w|`` of the bundle (identity shortcuts: 1),
* ``sq_sum``: sum of kept ``w^2`` (identity shortcuts: 1),
* ``count``: number of kept elements (identity shortcuts: 1),
* ``layer``: the layer's module name (``"shortcutN"`` for identity edges).

Size guide, measured on a 2-core machine: a dense VGG19 (5,517 units, 2.23 M edges) takes
about 4 s and 760 MB as a ``networkx.MultiDiGraph`` and about 1 s and 140 MB as an
``igraph.Graph``. networkx is comfortable up to a few hundred thousand edges (ResNet-20
has 0.03 M dense edges; sparse masks of VGG19 at 1% density about 0.15 M); use igraph
beyond that, or the vectorised functions of :mod:`netgraph.flows` and :mod:`analysis`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .masked import as_masked

if TYPE_CHECKING:  # the graph's to_networkx/to_igraph call into this module
    from .graph import NetGraph


def unit_offsets(graph: NetGraph) -> np.ndarray:
    """Global vertex id of unit 0 of every group (vertex id = offset[group] + unit)."""
    sizes = np.array([g.size for g in graph.groups], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def edge_arrays(graph: NetGraph, masks=None, weights: bool = True) -> dict:
    """All kept unit-level edges as arrays: ``src``, ``dst`` (global vertex ids),
    ``abs_sum``, ``sq_sum`` (only with ``weights=True``), ``count``, ``layer`` (index into
    ``graph.layers``, -1 for shortcuts: identity edges and index maps)."""
    off = unit_offsets(graph)
    mg = as_masked(graph, masks)
    parts = []
    for layer in graph.layers:
        v, u, _ = mg.kept_bundles(layer)  # u: the source unit (src_index() in a grouped conv)
        c = mg.bundle_values("count", layer)  # O(kept weights) for a sparse layer
        a, s = (mg.bundle_values("abs", layer), mg.bundle_values("square", layer)) if weights else (c, c)
        parts.append((off[layer.src] + u, off[layer.dst] + v, a, s, c, np.full(len(u), layer.index)))
    for sc in graph.shortcuts:
        one = np.ones(sc.size)
        parts.append((off[sc.src] + sc.src_units, off[sc.dst] + sc.dst_units, one, one, one,
                      np.full(sc.size, -1)))
    keys = ("src", "dst", "abs_sum", "sq_sum", "count", "layer")
    out = {k: np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i, k in enumerate(keys)}
    if not weights:
        del out["abs_sum"], out["sq_sum"]
    return out


def _vertex_attrs(graph: NetGraph):
    group = np.concatenate([np.full(g.size, g.index) for g in graph.groups])
    unit = np.concatenate([np.arange(g.size) for g in graph.groups])
    return group, unit


def _layer_names(graph: NetGraph, layer_idx):
    names = np.array([l.name for l in graph.layers] + ["shortcut"], dtype=object)
    return names[layer_idx]


def to_networkx(graph: NetGraph, masks=None):
    """The unit-level DAG as a ``networkx.MultiDiGraph``.

    Vertices are integers ``offset[group] + unit`` with attributes ``group``, ``unit`` and
    ``kind`` (input/hidden/output); edges carry ``abs_sum``, ``sq_sum``, ``count`` and
    ``layer``, and their key is the layer's name. Only bundles with at least one kept
    element are edges. Two edges may join the same pair of units (a layer and an identity
    shortcut between the same unit groups, as in ``y = conv(x) + x``): a multigraph keeps
    both, so the edge count equals the graph's and no weight is merged away. Use
    ``networkx.DiGraph(G)`` for a simple graph (it keeps one of the parallel edges). See
    the module docstring for the sizes at which this is sensible.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> G = netgraph.from_torch(model, (3,)).to_networkx()
    >>> G.number_of_nodes(), G.number_of_edges()
    (9, 20)
    """
    import networkx as nx

    G = nx.MultiDiGraph()
    group, unit = _vertex_attrs(graph)
    kinds = [graph.groups[g].kind for g in group]
    G.add_nodes_from((i, {"group": int(g), "unit": int(u), "kind": k})
                     for i, (g, u, k) in enumerate(zip(group, unit, kinds)))
    e = edge_arrays(graph, masks)
    names = _layer_names(graph, e["layer"].astype(int))
    G.add_edges_from(
        (int(s), int(d), n, {"abs_sum": float(a), "sq_sum": float(q), "count": int(c), "layer": n})
        for s, d, a, q, c, n in zip(e["src"], e["dst"], e["abs_sum"], e["sq_sum"], e["count"], names)
    )
    return G


def to_igraph(graph: NetGraph, masks=None):
    """The unit-level DAG as a directed ``igraph.Graph`` (same attributes as
    :func:`to_networkx`); comfortable for millions of edges.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> G = netgraph.from_torch(model, (3,)).to_igraph()
    >>> G.vcount(), G.ecount(), G.is_dag()
    (9, 20, True)
    """
    import igraph as ig

    group, unit = _vertex_attrs(graph)
    e = edge_arrays(graph, masks)
    G = ig.Graph(n=len(group), edges=np.column_stack([e["src"], e["dst"]]).astype(np.int64), directed=True)
    G.vs["group"] = group.tolist()
    G.vs["unit"] = unit.tolist()
    G.vs["kind"] = [graph.groups[g].kind for g in group]
    G.es["abs_sum"] = e["abs_sum"].tolist()
    G.es["sq_sum"] = e["sq_sum"].tolist()
    G.es["count"] = e["count"].astype(int).tolist()
    G.es["layer"] = _layer_names(graph, e["layer"].astype(int)).tolist()
    return G
