"""Metrics of (graph, mask) pairs; plots, experiments and the CLI in layers above them.

Layers, each importing only from those before it (``docs/architecture.md``)::

    netgraph (core) <- analysis metrics <- analysis.plots <- analysis.experiments <- analysis.cli

* metrics: ``connectivity``, ``widths``, ``paths``, ``spectral`` (Ramanujan measures),
  ``pathnorm`` (path norms) (plain functions of a graph and a mask),
  ``table`` (the metric table: every metric declared once) and ``summary`` (``measure``);
* ``plots``: results tables -> matplotlib figures;
* ``experiments``: one run (``run_one``), comparison grids, sweeps, reproduction studies,
  training;
* ``cli``: the ``netgraph`` command.

Import it as ``analysis`` or, where a module of yours named ``analysis`` would shadow it, as
``import netgraph_analysis as analysis`` (the same package under a name that cannot clash).

This package namespace offers the metrics, and (loaded on first use) ``compare``,
``write_comparison``, ``read_results``, ``read_sweep``, ``run_one`` and ``plots``. Inside
the project, modules import the module that owns a name, never this namespace.

>>> import netgraph, analysis
>>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
>>> analysis.bottleneck(g)["width"]
32
"""

from importlib import import_module

from .connectivity import active_units, connectivity, effective_counts, effective_weights, min_vertex_cut
from .pathnorm import log10_path_norm, path_norms
from .paths import edge_disjoint_paths, path_diversity
from .spectral import layer_spectra, spectral_summary
from .summary import measure
from .table import METRICS, Metric, get_metric, metric_keys, register_metric
from .widths import bottleneck, layer_table

# Names of the upper layers offered here for convenience; imported on first use, so that
# importing the metrics never imports the experiments.
_LAZY = {
    "compare": ".experiments.compare",
    "write_comparison": ".experiments.compare",
    "read_results": ".experiments.compare",
    "summary_markdown": ".experiments.compare",
    "to_csv": ".experiments.compare",
    "read_sweep": ".experiments.sweep_db",
    "run_sweep": ".experiments.sweep",
    "run_one": ".experiments.run",
    "collapse_margin": ".experiments.collapse",
    "collapse_margins": ".experiments.collapse",
    "write_report": ".experiments.report",
    "plots": ".plots",
}

__all__ = [
    "METRICS", "Metric", "active_units", "bottleneck", "connectivity", "edge_disjoint_paths",
    "effective_counts", "effective_weights", "get_metric", "layer_spectra", "layer_table", "log10_path_norm",
    "measure", "metric_keys", "min_vertex_cut", "path_diversity", "path_norms", "register_metric",
    "spectral_summary", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        module = import_module(_LAZY[name], __name__)
        value = module if name == "plots" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
