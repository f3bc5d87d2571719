"""Metrics of (graph, mask) pairs, comparisons across methods, and plots.

Metrics are plain functions of a :class:`netgraph.NetGraph` and a mask (a
:class:`netgraph.MaskSet`, a dict, per-layer arrays, or ``None`` for dense); they never
reach back into the sparsifiers.

>>> import netgraph, analysis
>>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
>>> analysis.bottleneck(g)["width"]
32
"""

from .connectivity import active_units, connectivity, effective_counts, effective_weights, min_vertex_cut
from .paths import edge_disjoint_paths, path_diversity
from .summary import measure
from .widths import bottleneck, layer_table

__all__ = [
    "active_units",
    "bottleneck",
    "connectivity",
    "edge_disjoint_paths",
    "effective_counts",
    "effective_weights",
    "layer_table",
    "measure",
    "min_vertex_cut",
    "path_diversity",
]

from .compare import compare, read_results, summary_markdown, to_csv, write_comparison  # noqa: E402
from . import plots  # noqa: E402

__all__ += ["compare", "read_results", "summary_markdown", "to_csv", "write_comparison", "plots"]
