"""Connectivity of a mask: which units and weights lie on input-output paths, and cuts.

A unit is *active* when it lies on at least one input-output path of kept weights: it can
be reached from an input and it reaches an output, decided with booleans
(:func:`netgraph.flows.reachability`), never from flow magnitudes that can underflow. A
kept weight is *effective* when it joins two active units; the others are
dead (Vysogorets & Kempe, 2021).
"""

from __future__ import annotations

import numpy as np

from netgraph._numba import LOAD_FROM
from netgraph._validate import check_choice
from netgraph.flows import aggregates, reachability
from netgraph.masked import as_masked


def active_units(graph, masks=None) -> list:
    """Boolean array per unit group: units on some input-output path of kept weights.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> g = netgraph.from_torch(model, (2,))
    >>> lm = g.dense_masks(); lm[1][0, 0, 0] = False  # hidden unit 0 loses its way out
    >>> [a.tolist() for a in active_units(g, lm)]
    [[True, True], [False, True, True], [True]]
    """
    fwd, bwd = reachability(graph, masks)
    return [f & b for f, b in zip(fwd, bwd)]


def effective_weights(graph, masks=None, active=None) -> list:
    """Per layer, the kept elements that lie on an input-output path (``(n_dst, n_in, k)``)."""
    if active is None:
        active = active_units(graph, masks)
    out = []
    for layer, m in zip(graph.layers, as_masked(graph, masks).masks_or_dense()):
        live = active[layer.dst][:, None] & layer.gather(active[layer.src])
        out.append(m & live[:, :, None])
    return out


def effective_counts(graph, masks=None, active=None) -> list:
    """Per layer, the number of effective elements of each bundle, ``(n_dst, n_in)``.

    The bundle-level form of :func:`effective_weights`: kept elements of bundles joining
    two active units. O(bundles), where the element masks are O(weights).
    """
    if active is None:
        active = active_units(graph, masks)
    return [count * (active[layer.dst][:, None] & layer.gather(active[layer.src]))
            for layer, count in zip(graph.layers, aggregates(graph, "count", masks))]


def effective_per_layer(graph, masks=None, active=None) -> list:
    """Per layer, the number of effective (on-path) kept weights: the sums of
    :func:`effective_counts`, over the kept bundles only (O(kept bundles); cached)."""
    mg = as_masked(graph, masks)

    def compute():
        act = active_units(graph, mg) if active is None else active
        out = []
        for layer in graph.layers:
            v, u, _ = mg.kept_bundles(layer)
            out.append(int(mg.bundle_values("count", layer)[act[layer.dst][v] & act[layer.src][u]].sum()))
        return out

    return mg.cached("analysis.effective_per_layer", compute)


def connectivity(graph, masks=None) -> dict:
    """Connectivity summary of a mask.

    Keys: ``kept`` (kept weights of the graph's layers; off-path parameters are not counted
    here, see ``graph_kept`` in ``docs/metrics.md``), ``effective`` (kept weights on an
    input-output path), ``dead``, ``effective_fraction`` (effective / kept: 1 when no kept
    weight is wasted), ``effective_density`` (effective / the layers' weights
    ``graph.num_weights``, Vysogorets & Kempe 2021),
    ``collapsed_layers`` (names of layers with no effective weight), ``inputs_connected`` and
    ``outputs_connected`` (input units that reach an output, output units reached from an
    input), ``connected`` (at least one input-output path).

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> g = netgraph.from_torch(model, (2,))
    >>> lm = g.dense_masks(); lm[1][0, 0, 0] = False
    >>> c = connectivity(g, lm)
    >>> c["kept"], c["effective"], c["dead"], c["effective_fraction"]
    (8, 6, 2, 0.75)
    """
    active = active_units(graph, masks)
    eff = effective_per_layer(graph, masks, active)
    kept = int(sum(as_masked(graph, masks).kept_counts()))
    ne = int(sum(eff))
    return {
        "kept": kept,
        "effective": ne,
        "dead": kept - ne,
        "effective_fraction": ne / kept if kept else 0.0,
        "effective_density": ne / graph.num_weights,
        "collapsed_layers": [l.name for l, e in zip(graph.layers, eff) if e == 0],
        "inputs_connected": int(active[0].sum()),
        "outputs_connected": int(active[-1].sum()),
        "connected": bool(active[-1].any()),
    }


def min_vertex_cut(graph, masks=None, backend: str = "auto"):
    """Fewest hidden units whose removal disconnects every input from every output.

    Input and output units are not removable (with 3 input channels the answer would
    otherwise never exceed 3). Computed as a maximum flow with each hidden unit split into
    an in- and an out-vertex joined by an edge of capacity 1, restricted to active units.

    Parameters
    ----------
    backend : {"auto", "compiled", "scipy", "igraph"}
        Dinic's algorithm compiled (:mod:`netgraph._maxflow`: no sparse-matrix set-up, half
        scipy's time on vgg16), ``scipy.sparse.csgraph.maximum_flow`` (Dinic on a CSR matrix)
        or ``igraph.Graph.maxflow_value``: the same value. ``"auto"``: compiled on graphs of
        :data:`netgraph._numba.LOAD_FROM` weights or more, else scipy (numba's load, about
        0.7 s once a process, costs a smaller graph more than it saves).

    Returns
    -------
    int or None
        0 when the mask leaves no input-output path; None when some input-output path
        has no hidden unit to cut.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3),
    ...                             torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> min_vertex_cut(netgraph.from_torch(model, (2,)))
    3
    """
    return _max_flow(graph, masks, split_units=True, backend=backend)


def _unit_edges(graph, masks, active):
    """Kept unit-level edges between active units, as global vertex ids (cached on the
    masked graph: both max-flow metrics read them)."""
    from netgraph.interop import edge_arrays, unit_offsets

    def compute():
        e = edge_arrays(graph, mg, weights=False)
        live = np.concatenate(active)
        keep = live[e["src"]] & live[e["dst"]]
        return e["src"][keep].astype(np.int64), e["dst"][keep].astype(np.int64), unit_offsets(graph)

    mg = as_masked(graph, masks)
    return mg.cached("analysis.unit_edges", compute)


MAX_FLOW_BACKENDS = ("auto", "compiled", "scipy", "igraph")


def _max_flow(graph, masks, split_units: bool, backend: str = "auto"):
    check_choice("backend", backend, MAX_FLOW_BACKENDS)
    if backend == "auto":
        backend = "compiled" if graph.num_weights >= LOAD_FROM else "scipy"
    active = active_units(graph, masks)
    n_units = graph.num_units
    if not active[0].any():
        return 0
    src, dst, off = _unit_edges(graph, masks, active)
    big = n_units + len(src) + 1
    inputs = off[0] + np.flatnonzero(active[0])
    outputs = off[-1] + np.flatnonzero(active[-1])
    if split_units:
        # unit i -> vertices 2i (in) and 2i+1 (out); hidden units have capacity 1
        is_end = np.zeros(n_units, dtype=bool)
        is_end[inputs] = True
        is_end[outputs] = True
        units = np.concatenate([off[g.index] + np.flatnonzero(a) for g, a in zip(graph.groups, active)])
        e_src = [2 * units, 2 * src + 1]
        e_dst = [2 * units + 1, 2 * dst]
        e_cap = [np.where(is_end[units], big, 1), np.full(len(src), big)]
        S, T = 2 * n_units, 2 * n_units + 1
        e_src += [np.full(len(inputs), S), 2 * outputs + 1]
        e_dst += [2 * inputs, np.full(len(outputs), T)]
        n_vertices = 2 * n_units + 2
    else:
        e_src, e_dst, e_cap = [src], [dst], [np.ones(len(src), dtype=np.int64)]
        S, T = n_units, n_units + 1
        e_src += [np.full(len(inputs), S), outputs]
        e_dst += [inputs, np.full(len(outputs), T)]
        n_vertices = n_units + 2
    e_cap += [np.full(len(inputs), big), np.full(len(outputs), big)]
    es, ed, ec = (np.concatenate(x).astype(np.int64, copy=False) for x in (e_src, e_dst, e_cap))
    if backend == "compiled":
        from netgraph._maxflow import max_flow_value

        value = max_flow_value(n_vertices, es, ed, ec, S, T)
    elif backend == "igraph":
        import igraph as ig

        G = ig.Graph(n=n_vertices, edges=np.column_stack([es, ed]), directed=True)
        value = int(round(G.maxflow_value(S, T, capacity=ec.astype(float).tolist())))
    elif backend == "scipy":
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import maximum_flow

        cap = csr_matrix((ec.astype(np.int32), (es, ed)), shape=(n_vertices, n_vertices))
        value = int(maximum_flow(cap, S, T, method="dinic").flow_value)
    else:  # pragma: no cover - checked on entry
        raise AssertionError(backend)
    if split_units and value >= big:
        return None
    return value


