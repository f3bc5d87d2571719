"""Every metric of one (graph, mask) pair as one tidy record, from the metric table."""

from __future__ import annotations

from netgraph.masked import as_masked, check_graph

from .table import measure_masked


def measure(graph, masks=None, max_flow: bool = True) -> dict:
    """All metrics of a mask as one flat record (JSON- and DataFrame-ready).

    The keys, in order, are those of :data:`analysis.table.METRICS` (see
    ``docs/metrics.md``): counts and densities, connectivity, bottleneck and widths,
    the minimum vertex cut, and path diversity. ``max_flow=False`` skips the two max-flow
    metrics (their values are then None). The masked graph is made once
    (:func:`netgraph.masked.as_masked`), so every metric shares its aggregates and flows.

    Examples
    --------
    >>> import netgraph, analysis
    >>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    >>> rec = analysis.measure(g, netgraph.sparsify(g, "phew", 0.1, seed=0))
    >>> rec["effective_fraction"], rec["connected"]
    (1.0, True)

    Raises
    ------
    InvalidInputError
        If ``graph`` is not a :class:`~netgraph.NetGraph` (a torch model must be traced
        first: ``netgraph.from_torch(model, input_shape)``) or ``masks`` is of another kind.
    MaskMismatchError
        If the masks do not fit the graph.
    """
    check_graph(graph, "measure")
    return measure_masked(as_masked(graph, masks), max_flow=max_flow)
