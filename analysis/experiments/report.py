"""A report of one mask: every figure and a Markdown summary (``netgraph report``).

>>> import netgraph, tempfile, os
>>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
>>> ms = netgraph.sparsify(g, "phew", 0.1, seed=0)
>>> out = tempfile.mkdtemp()
>>> files = write_report(ms, out, graph=g, formats=("png",))
>>> sorted(os.path.basename(f) for f in files)
['layer_density.png', 'report.md', 'spectral_by_layer.png', 'widths.png']
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from netgraph import zoo
from netgraph.errors import MaskMismatchError
from netgraph.masked import as_masked
from netgraph.masks import MaskSet

from .. import plots
from ..spectral import layer_spectra
from ..table import METRICS, measure_masked
from ..widths import layer_table
from .markdown import table
from .maskfile import read_masks, rebuild_args


def graph_for(ms: MaskSet, model=None, input_shape=None, seed=None, num_classes=None):
    """The graph a mask file was made for (from its metadata), or of ``model``: the CLI's rule
    (:func:`~analysis.experiments.maskfile.rebuild_args`), its errors naming Python arguments."""
    return zoo.graph_of(**rebuild_args(ms, "the mask file", model, input_shape, seed, num_classes, cli=False))[1]


def _layer_density_figure(layers) -> Figure:
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(layers))
    ax.bar(x, [r["density"] for r in layers], color=plots.METHOD_COLOURS["phew"], alpha=0.8, label="kept / weights")
    ax.plot(x, [r["active_units"] / r["units"] for r in layers], "o-", color="black", ms=3.5,
            label="active / dense width")
    ax.set_ylim(0, 1.05)
    plots.layer_axis(ax, pd.Series([r["layer"] for r in layers], index=x))
    ax.set_ylabel("fraction")
    ax.legend(fontsize=8)
    ax.set_title("Per-layer density and active width")
    return fig


def _fmt(v):
    if isinstance(v, float):
        return "-inf" if v == -math.inf else f"{v:.6g}"
    return str(v)


#: The figures :func:`write_report` writes (file stems), beside ``report.md``.
REPORT_STEMS = ("widths", "layer_density", "spectral_by_layer")


def report_files(out_dir) -> list:
    """The files of ``out_dir`` that :func:`write_report` writes (``report.md`` and its figures in
    any format), if present: what a rewrite replaces."""
    names = ["report.md"] + [f"{s}.{fmt}" for s in REPORT_STEMS for fmt in plots.FORMATS]
    return [os.path.join(out_dir, n) for n in names if os.path.isfile(os.path.join(out_dir, n))]


def write_report(masks, out_dir, graph=None, model=None, input_shape=None, seed=None,
                 formats=("png", "svg"), num_classes=None) -> list:
    """Write the figures and ``report.md`` of one mask to ``out_dir``; returns the paths.

    ``masks`` is a :class:`~netgraph.MaskSet` or a mask file (torch or ``.safetensors``).
    Figures: per-layer active widths (``widths``), per-layer density against the fraction
    of the dense width that stays active (``layer_density``), the spectral gap by layer
    (``spectral_by_layer``). The Markdown summary has every metric of the table and a
    per-layer table (kept, density, active units beside the dense width, ``mu2`` against the
    Ramanujan bound).

    The graph is ``graph``, or the model the mask was made for (its metadata), or ``model``
    (a zoo name, ``"torchvision:NAME"``, ``"timm:NAME"``, ``"pkg.module:factory"``) built with
    ``input_shape``, ``seed`` and ``num_classes`` where given (:func:`graph_for`).
    """
    ms = read_masks(masks) if isinstance(masks, (str, os.PathLike)) else masks
    g = graph if graph is not None else graph_for(ms, model, input_shape, seed, num_classes)
    try:
        mg = as_masked(g, ms)
    except MaskMismatchError as exc:
        raise MaskMismatchError(f"the mask does not fit model {g.model_spec.get('name')!r}: {exc}") from None
    rec = measure_masked(mg, max_flow=True)
    layers = layer_table(g, mg)
    spectra = layer_spectra(g, mg)
    method = ms.meta.get("method", "mask")
    os.makedirs(out_dir, exist_ok=True)
    row = {"model": g.model_spec.get("name", "model"), "method": method,
           "target_density": ms.meta.get("density", rec["achieved_density"]), "seed": ms.meta.get("seed", 0),
           "layer_names": [r["layer"] for r in layers], "layer_units": [r["units"] for r in layers],
           "layer_widths": [r["active_units"] for r in layers]}
    figs = dict(zip(REPORT_STEMS, (plots.plot_width_profile(pd.DataFrame([row])), _layer_density_figure(layers),
                                   plots.plot_spectral_by_layer({method: spectra}, f"Spectral gap by layer - {method}"))))
    paths = []
    for stem, fig in figs.items():
        paths += plots.save(fig, os.path.join(out_dir, stem), formats=formats)
    lines = [f"# Mask report: {method} on {row['model']}", "",
             f"{rec['kept']} of {rec['total']} weights kept (achieved density {rec['achieved_density']:.6g}; "
             + "; ".join(f"{what} {_fmt(ms.meta[key])}" if key in ms.meta else f"{what} not recorded"
                         for what, key in (("asked", "density"), ("seed", "seed"))) + ").", "",
             "## Metrics", "",
             table(["metric", "value", "description"],
                   [[f"`{m.key}`", _fmt(rec[m.key]), m.full_description] for m in METRICS])]
    lines += ["", "## Layers", "",
              table(["layer", "kept", "density", "active units / dense width", "mu1", "mu2", "2 sqrt(d-1)",
                     "weighted gap"],
                    [[r["layer"], r["kept"], f"{r['density']:.4g}",
                      f"{r['active_units']} / {r['units']} ({r['active_units'] / r['units']:.0%})", f"{s['mu1']:.4g}",
                      f"{s['mu2']:.4g}", f"{s['ramanujan_bound']:.4g}", f"{s['weighted_gap']:.3f}"]
                     for r, s in zip(layers, spectra)])]
    lines += ["", "## Figures", ""] + [f"![{stem}]({stem}.{formats[0]})" for stem in figs]
    md = os.path.join(out_dir, "report.md")
    with open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return paths + [md]
