"""Layer widths: kept weights, active units per layer, and the bottleneck layer."""

from __future__ import annotations

from netgraph.masked import as_masked

from .connectivity import active_units, effective_per_layer


def layer_table(graph, masks=None) -> list:
    """One record per layer: kept weights, density, active units against dense width.

    Keys: ``layer``, ``index``, ``kind``, ``param``, ``kept``, ``total``, ``density``,
    ``effective`` (kept weights on an input-output path), ``dead`` (kept but not on any
    path), ``active_units``, ``units`` (dense width of the layer's output), ``active_inputs``
    (active units among the layer's inputs), ``in_units``.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> g = netgraph.from_torch(model, (2,))
    >>> [(r["layer"], r["kept"], r["active_units"]) for r in layer_table(g)]
    [('0', 6, 3), ('2', 3, 1)]
    """
    active = active_units(graph, masks)
    eff = effective_per_layer(graph, masks, active)
    rows = []
    for layer, kept, ne in zip(graph.layers, as_masked(graph, masks).kept_counts(), eff):
        rows.append({
            "layer": layer.name, "index": layer.index, "kind": layer.kind, "param": layer.param,
            "kept": kept, "total": layer.numel, "density": kept / layer.numel, "effective": ne,
            "dead": kept - ne, "active_units": int(active[layer.dst].sum()), "units": layer.n_dst,
            "active_inputs": int(active[layer.src].sum()), "in_units": layer.n_src,
        })
    return rows


def bottleneck(graph, masks=None) -> dict:
    """The narrowest hidden layer: fewest active units over the groups between input and output.

    Returns ``{"width": int, "layer": name, "fraction": width / dense width}``; ``width``
    is 0 when some hidden group has no active unit. In a chain (MLP, VGG) that means the
    mask disconnects the network; in a residual network the paths may go round an emptied
    group through a shortcut (a block's inner conv), so the network can stay connected
    (see ``connected`` and ``min_vertex_cut``). The output layer (e.g. 10 classes) is not a
    candidate. Of equally narrow groups the first is named, except when several are empty
    (a disconnected net): then the first that a layer keeping no weight writes (named by
    that layer), else the first such a layer reads (the emptied layer is the last one). For a network without hidden units, width is None.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3),
    ...                             torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> g = netgraph.from_torch(model, (2,))
    >>> bottleneck(g)
    {'width': 3, 'layer': '2', 'fraction': 1.0}
    """
    active = active_units(graph, masks)
    hidden = graph.groups[1:-1]
    if not hidden:
        return {"width": None, "layer": None, "fraction": None}
    width = {g.index: int(active[g.index].sum()) for g in hidden}
    w = min(width.values())
    ties = [g for g in hidden if width[g.index] == w]
    if w == 0 and len(ties) > 1:  # a disconnected net: name the emptied layer, not the first group
        empty = [layer for layer, kept in zip(graph.layers, as_masked(graph, masks).kept_counts()) if kept == 0]
        written, read = {layer.dst for layer in empty}, {layer.src for layer in empty}
        ties = [g for g in ties if g.index in written] or [g for g in ties if g.index in read] or ties
    g = ties[0]
    layer = next((l.name for l in graph.layers if l.dst == g.index), g.name)
    return {"width": w, "layer": layer, "fraction": w / g.size}


