"""Reachability: which units an input reaches and which reach an output, in booleans."""

from __future__ import annotations

import numpy as np

from .layer import Layer
from .masked import as_masked


def reachability(graph, masks=None) -> tuple:
    """Which units an input reaches and which reach an output, through kept weights.

    Returns ``(forward, backward)``: one boolean array per unit group. Decided with
    booleans (the kept bundles of each layer, O(kept bundles)), never from the magnitudes
    of flows, which can underflow on deep networks. Cached on the masked graph.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> g = netgraph.from_torch(model, (2,))
    >>> lm = g.dense_masks(); lm[1][0, 0, 0] = False
    >>> from netgraph.flows import reachability
    >>> fwd, bwd = reachability(g, lm)
    >>> fwd[1].tolist(), bwd[1].tolist()
    ([True, True, True], [False, True, True])
    """
    mg = as_masked(graph, masks)

    def compute():
        G = len(graph.groups)
        fwd = [np.ones(graph.groups[0].size, dtype=bool)] + [None] * (G - 1)
        for g in range(1, G):
            fwd[g] = _reached(mg, graph.edges_into(g), fwd, graph.groups[g].size, forward=True)
        bwd = [None] * (G - 1) + [np.ones(graph.groups[-1].size, dtype=bool)]
        for g in range(G - 2, -1, -1):
            bwd[g] = _reached(mg, graph.edges_out_of(g), bwd, graph.groups[g].size, forward=False)
        return fwd, bwd

    return mg.cached("reachability", compute)


def _reached(mg, edges, seen: list, size: int, forward: bool) -> np.ndarray:
    """Units of one group reached along ``edges`` from the units marked in ``seen`` (one
    step of the forward or backward programme): a layer's kept bundles, O(kept bundles)."""
    out = np.zeros(size, dtype=bool)
    for e in edges:
        if isinstance(e, Layer):
            v, u, _ = mg.kept_bundles(e)
            if forward:
                out[v[seen[e.src][u]]] = True
            else:
                out[u[seen[e.dst][v]]] = True
        elif forward:
            out |= e.push(None, seen[e.src].astype(np.float64)) > 0
        else:
            out |= e.pull(None, seen[e.dst].astype(np.float64)) > 0
    return out


def shortest_path_weights(graph) -> int:
    """Fewest weights any input-output path crosses (a layer costs one, a shortcut none).

    A mask with fewer kept weights than this leaves no input-output path.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> shortest_path_weights(netgraph.from_torch(model, (2,)))
    2
    """
    G = len(graph.groups)
    dist = [0] + [None] * (G - 1)
    for g in range(1, G):
        options = [dist[e.src] + (1 if isinstance(e, Layer) else 0) for e in graph.edges_into(g)
                   if dist[e.src] is not None]
        dist[g] = min(options) if options else None
    return dist[-1] if dist[-1] is not None else graph.num_weights + 1

