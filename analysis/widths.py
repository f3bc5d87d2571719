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


def cut_groups(graph) -> list:
    """The hidden unit groups that every input-output path crosses, in topological order.

    A group qualifies when the dense graph's group-level paths from the input to the output
    all pass through it: every hidden group of a chain (MLP, VGG), but in a residual
    network only the groups where branches meet (a block's sum, the stem), not the units
    inside a block, which a shortcut goes round. Exact: ``paths(in, g) * paths(g, out) ==
    paths(in, out)`` with the counts as Python integers (no overflow), O(edges).

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    >>> [grp.index for grp in cut_groups(netgraph.from_torch(model, (2,)))]
    [1]
    """
    n = len(graph.groups)
    fwd, bwd = [0] * n, [0] * n
    fwd[0], bwd[n - 1] = 1, 1
    for g in range(1, n):
        fwd[g] = sum(fwd[e.src] for e in graph.edges_into(g))
    for g in range(n - 2, -1, -1):
        bwd[g] = sum(bwd[e.dst] for e in graph.edges_out_of(g))
    total = fwd[n - 1]
    return [grp for grp in graph.groups[1:-1] if total and fwd[grp.index] * bwd[grp.index] == total]


def bottleneck(graph, masks=None) -> dict:
    """The narrowest unit group that every input-output path must cross.

    Returns ``{"width": int, "layer": name, "fraction": width / dense width}``: the fewest
    active units over :func:`cut_groups` (the hidden groups every path crosses; the
    output layer, e.g. 10 classes, is not a candidate). ``width`` is 0 exactly when the mask
    disconnects the network, and never less than the minimum vertex cut. A group that
    paths can go round (the first conv of a residual block, which a mask may empty while
    the shortcut carries every path) is not a candidate: its width is in
    :func:`layer_table`. ``width`` is None for a network without such a group (no hidden
    units, or a shortcut from the input to the output).

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
    best = None
    for g in cut_groups(graph):
        w = int(active[g.index].sum())
        if best is None or w < best[0]:
            best = (w, g)
    if best is None:
        return {"width": None, "layer": None, "fraction": None}
    w, g = best
    layer = next((l.name for l in graph.layers if l.dst == g.index), g.name)
    return {"width": w, "layer": layer, "fraction": w / g.size}
