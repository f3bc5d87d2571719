"""Every metric of one (graph, mask) pair as one tidy record."""

from __future__ import annotations

from netgraph.masked import as_masked

from .connectivity import connectivity, min_vertex_cut
from .paths import path_diversity
from .widths import bottleneck, layer_table


def measure(graph, masks=None, max_flow: bool = True) -> dict:
    """All metrics of a mask as one flat record (JSON- and DataFrame-ready).

    Keys: ``kept``, ``total``, ``density``; the :func:`~analysis.connectivity.connectivity`
    keys (``effective``, ``dead``, ``effective_fraction``, ``effective_density``,
    ``collapsed_layers`` (count), ``inputs_connected``, ``outputs_connected``,
    ``connected``); ``bottleneck_width``, ``bottleneck_layer``, ``bottleneck_fraction``,
    ``mean_width_fraction`` (active units over dense width, averaged over layers),
    ``min_vertex_cut``; the :func:`~analysis.paths.path_diversity` keys. ``max_flow=False``
    skips the two max-flow metrics (their keys are then None).

    Examples
    --------
    >>> import netgraph, analysis
    >>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    >>> rec = analysis.measure(g, netgraph.sparsify(g, "phew", 0.1, seed=0))
    >>> rec["effective_fraction"], rec["connected"]
    (1.0, True)
    """
    lm = as_masked(graph, masks)  # aggregates and flows computed once, shared by every metric
    kept = int(sum(int(a.sum()) for a in lm.aggregates("count")))
    rec = {"kept": kept, "total": graph.num_weights, "density": kept / graph.num_weights}
    conn = connectivity(graph, lm)
    conn["collapsed_layers"] = len(conn["collapsed_layers"])
    conn.pop("kept")
    rec.update(conn)
    b = bottleneck(graph, lm)
    rec.update({"bottleneck_width": b["width"], "bottleneck_layer": b["layer"], "bottleneck_fraction": b["fraction"]})
    rows = layer_table(graph, lm)
    rec["mean_width_fraction"] = sum(r["active_units"] / r["units"] for r in rows) / len(rows)
    rec["min_vertex_cut"] = min_vertex_cut(graph, lm) if max_flow else None
    rec.update(path_diversity(graph, lm, max_flow=max_flow))
    return rec
