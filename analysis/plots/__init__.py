"""Figures from a results table (:func:`analysis.compare` or :func:`analysis.read_results`).

Every function takes the table and returns a :class:`matplotlib.figure.Figure` (never
calls ``plt.show()``; no pyplot state is touched, so this works headless and inside other
applications). Colours are fixed per method across figures (:data:`METHOD_COLOURS`, the
one palette); uncertainty bands are mean ± sd clipped to the metric's range
(:func:`metric_range`: no negative widths, no fractions above 1); layer axes carry layer
names. Use :func:`save` to write PNG and SVG.

* ``base``: the one palette (:data:`METHOD_COLOURS`), styles, metric ranges, :func:`save`;
* ``comparison``: widths, metrics against density, path norms, spectral gaps, collapse
  margins, :func:`standard_figures`;
* ``training``: accuracy against density, loss curves, scatter plots;
* ``blocks``: active width by block type and collapse densities per model (the
  modern-architecture study).
"""

from .blocks import plot_block_widths, plot_collapse_by_model
from .base import EXTRA_COLOURS, FORMATS, METHOD_COLOURS, UNIT_RANGE, layer_axis, metric_range, save
from .comparison import (PATH_NORMS, STANDARD_METRICS, plot_collapse_margin, plot_metric, plot_metric_grid,
                         plot_path_norms, plot_spectral_by_layer, plot_width_profile, standard_figures,
                         standard_stems)
from .training import plot_accuracy, plot_accuracy_bands, plot_loss_curves, plot_scatter_by_method

__all__ = ["EXTRA_COLOURS", "FORMATS", "METHOD_COLOURS", "UNIT_RANGE", "PATH_NORMS", "STANDARD_METRICS", "layer_axis",
           "metric_range", "save", "plot_collapse_margin", "plot_metric", "plot_metric_grid", "plot_path_norms",
           "plot_spectral_by_layer", "plot_width_profile", "standard_figures", "standard_stems", "plot_accuracy",
           "plot_accuracy_bands", "plot_loss_curves", "plot_scatter_by_method", "plot_block_widths",
           "plot_collapse_by_model"]
