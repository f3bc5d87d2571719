"""Reachability: which units an input reaches and which reach an output, in booleans."""

from __future__ import annotations

import numpy as np

from .layer import Layer
from .masked import as_masked


def reachability(graph, masks=None) -> tuple:
    """Which units an input reaches and which reach an output, through kept weights.

    Returns ``(forward, backward)``: one boolean array per unit group. Decided with
    booleans (0/1 vectors through the 0/1 pattern of kept bundles), never from the
    magnitudes of flows, which can underflow on deep networks. Cached on the masked graph.

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
        kept = {layer.index: (a > 0).astype(np.float64) for layer, a in zip(graph.layers, mg.aggregates("count"))}
        G = len(graph.groups)
        fwd = [np.ones(graph.groups[0].size, dtype=bool)] + [None] * (G - 1)
        for g in range(1, G):
            acc = np.zeros(graph.groups[g].size)
            for e in graph.edges_into(g):
                acc += e.push(kept.get(e.index) if isinstance(e, Layer) else None, fwd[e.src].astype(np.float64))
            fwd[g] = acc > 0
        bwd = [None] * (G - 1) + [np.ones(graph.groups[-1].size, dtype=bool)]
        for g in range(G - 2, -1, -1):
            acc = np.zeros(graph.groups[g].size)
            for e in graph.edges_out_of(g):
                acc += e.pull(kept.get(e.index) if isinstance(e, Layer) else None, bwd[e.dst].astype(np.float64))
            bwd[g] = acc > 0
        return fwd, bwd

    return mg.cached("reachability", compute)


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

