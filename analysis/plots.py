"""Figures from a results table (:func:`analysis.compare` or :func:`analysis.read_results`).

Every function takes the table and returns a :class:`matplotlib.figure.Figure` (never
calls ``plt.show()``; no pyplot state is touched, so this works headless and inside other
applications). Colours are fixed per method across figures (:data:`METHOD_COLOURS`, the
one palette); uncertainty bands are mean ± sd clipped to the metric's range
(:func:`metric_range`: no negative widths, no fractions above 1); layer axes carry layer
names. Use :func:`save` to write PNG and SVG.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .table import label_of

#: Figure formats :func:`save` writes (matplotlib's raster and vector formats).
FORMATS = ("png", "svg", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff")

_STYLE = {"axes.grid": True, "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False}


#: One colour per method, in every figure (the one palette of the project). A variant with
#: options (``"phew:bias=uniform"``) takes its method's colour when the plain method is not
#: in the figure; other variants and unknown methods take :data:`EXTRA_COLOURS` in order.
METHOD_COLOURS = {
    "phew": "#1f77b4", "synflow": "#d62728", "synflow-l2": "#ff7f0e", "random": "#7f7f7f",
    "magnitude": "#8c564b", "snip": "#2ca02c", "grasp": "#9467bd", "expander": "#17becf",
    "npb": "#e377c2", "synflow-schedule": "#bcbd22", "phew-layerwise": "#393b79", "dense": "#000000",
}
EXTRA_COLOURS = ("#aec7e8", "#ff9896", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
                 "#ffbb78", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3")


def _palette(methods) -> dict:
    """Colour of each method: :data:`METHOD_COLOURS`, then :data:`EXTRA_COLOURS` in order."""
    methods = list(dict.fromkeys(methods))
    out, extra = {}, iter(EXTRA_COLOURS * 4)
    for m in methods:
        base = str(m).partition(":")[0]
        if m in METHOD_COLOURS:
            out[m] = METHOD_COLOURS[m]
        elif base in METHOD_COLOURS and base not in methods and base not in out:  # a lone variant
            out[m] = METHOD_COLOURS[base]
        else:
            out[m] = next(extra)
    return out


#: Range of a metric by its unit: uncertainty bands are clipped to it (no negative widths).
UNIT_RANGE = {"fraction": (0.0, 1.0), "bool": (0.0, 1.0), "units": (0.0, np.inf), "weights": (0.0, np.inf),
              "layers": (0.0, np.inf), "paths": (0.0, np.inf)}


def metric_range(metric: str) -> tuple:
    """``(low, high)`` a metric can take (from its unit in the metric table); unbounded otherwise."""
    from .table import METRICS

    unit = next((m.unit for m in METRICS if m.key == metric), None)
    return UNIT_RANGE.get(unit, (-np.inf, np.inf))


def _band(ax, data, x, y, hue, pal, bounds=(-np.inf, np.inf), legend=True, marker="o"):
    """Mean line and a mean ± sd band clipped to ``bounds``, one per ``hue`` value."""
    for key, part in data.groupby(hue, sort=False):
        st = part.groupby(x)[y].agg(["mean", "std"]).sort_index()
        sd = st["std"].fillna(0.0)
        lo = np.clip(st["mean"] - sd, *bounds)
        hi = np.clip(st["mean"] + sd, *bounds)
        ax.plot(st.index, st["mean"], marker=marker, markersize=4, color=pal[key], label=key if legend else None)
        ax.fill_between(st.index, lo, hi, color=pal[key], alpha=0.2, lw=0)
    if legend:
        ax.legend(title=hue)


def _title(df, what):
    models = ", ".join(dict.fromkeys(df["model"]))
    seeds = df.groupby(["model", "method", "target_density"]).size().max()
    return f"{what} - {models} ({seeds} seed{'s' if seeds > 1 else ''}; mean ± sd)"


def _new_figure(width=6.4, height=4.2, ncols=1, nrows=1, **kw):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plot_width_profile(df: pd.DataFrame, model: str | None = None, fraction: bool = False) -> Figure:
    """Active units per layer, one panel per density, the dense width drawn dashed.

    With ``fraction=True`` the y axis is active units / dense width of each layer (the
    dense width is then the line y = 1).
    """
    if model is not None:
        df = df[df["model"] == model]
    rows = []
    for _, r in df.iterrows():
        for i, (name, units, w) in enumerate(zip(r["layer_names"], r["layer_units"], r["layer_widths"])):
            rows.append({"method": r["method"], "density": r["target_density"], "seed": r["seed"], "layer": i,
                         "name": name, "units": units, "active": w / units if fraction else w})
    long = pd.DataFrame(rows)
    dens = sorted(long["density"].unique(), reverse=True)
    ncols = min(len(dens), 2)
    nrows = int(np.ceil(len(dens) / ncols))
    pal = _palette(df["method"])
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(5.2, 3.6, ncols, nrows, sharey=True)
        for ax, d in zip(axes.flat, dens):
            part = long[long["density"] == d]
            dense = part.groupby("layer")["units"].first()
            ax.plot(dense.index, 1.0 + 0 * dense.values if fraction else dense.values, ls="--", color="black",
                    lw=1.2, label="dense width")
            _band(ax, part, "layer", "active", "method", pal, (0.0, 1.0 if fraction else np.inf),
                  legend=ax is axes.flat[0])
            ax.set_title(f"density {d:g} ({d * 100:g}% of weights)")
            layer_axis(ax, part.groupby("layer")["name"].first())
            ax.set_ylabel("active units / dense width" if fraction else "active units (on an input-output path)")
            ax.set_ylim(bottom=0)
        for ax in list(axes.flat)[len(dens):]:
            ax.set_visible(False)
        first = axes.flat[0]
        if first.get_legend() is not None:
            handles, labels = first.get_legend_handles_labels()
            first.get_legend().remove()
            fig.legend(handles, labels, loc="outside right upper", title="method")
        fig.suptitle(_title(df, "Layer widths"))
    return fig


def _metric_on(ax, data, metric, ylabel, pal, logy=False, diagonal=False, legend=True):
    data = data.copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)
    data = data[data["method"].isin(pal)]
    _band(ax, data.dropna(subset=[metric]), "target_density", metric, "method", pal, metric_range(metric), legend)
    _density_axis(ax, data["target_density"])
    if logy:
        ax.set_yscale("log")
    if diagonal:
        lim = [data["target_density"].min(), data["target_density"].max()]
        ax.plot(lim, lim, ls="--", color="grey", lw=1, label="no dead weights (y = x)")
        if legend:
            ax.legend(title="method")
    ax.set_xlabel("density: kept weights (log scale)")
    ax.set_ylabel(ylabel)


def _labels(metric, ylabel, title):
    ylabel = ylabel or label_of(metric)
    return ylabel, title or f"{ylabel} vs density"


def plot_metric(df: pd.DataFrame, metric: str, ylabel: str | None = None, title: str | None = None,
                logy: bool = False, diagonal: bool = False) -> Figure:
    """``metric`` against target density (log x axis), one line per method.

    The axis label and title default to the metric table's label of ``metric``.
    """
    ylabel, title = _labels(metric, ylabel, title)
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure()
        ax = axes[0, 0]
        _metric_on(ax, df, metric, ylabel, _palette(df["method"]), logy, diagonal)
        ax.set_title(_title(df, title), fontsize=10)
    return fig


def plot_metric_grid(df: pd.DataFrame, metric: str, ylabel: str | None = None, title: str | None = None,
                     logy: bool = False, diagonal: bool = False) -> Figure:
    """Like :func:`plot_metric` with one panel per model and one legend."""
    ylabel, title = _labels(metric, ylabel, title)
    models = list(dict.fromkeys(df["model"]))
    pal = _palette(df["method"])
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.8, 3.8, len(models), 1)
        for i, (ax, model) in enumerate(zip(axes.flat, models)):
            _metric_on(ax, df[df["model"] == model], metric, ylabel, pal, logy, diagonal, legend=i == 0)
            ax.set_title(model)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(_title(df, title))
    return fig


def _shared_legend(fig, ax):
    if ax.get_legend() is not None:
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside right upper", title="method")


def plot_accuracy(df: pd.DataFrame) -> Figure:
    """Test accuracy against density, one panel per model; dense accuracy as a dashed line."""
    models = list(dict.fromkeys(df["model"]))
    sparse = df[df["method"] != "dense"]
    pal = _palette(sparse["method"])
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.8, 3.8, len(models), 1)
        for i, (ax, model) in enumerate(zip(axes.flat, models)):
            part = sparse[sparse["model"] == model]
            _metric_on(ax, part, "test_acc", "test accuracy", pal, legend=i == 0)
            dense = df[(df["model"] == model) & (df["method"] == "dense")]["test_acc"]
            if len(dense):
                ax.axhline(dense.mean(), ls="--", color="black", lw=1.2, label="dense")
                if i == 0:
                    ax.legend(title="method")
            ax.set_title(model)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(_title(sparse, "Test accuracy vs density (digits)"))
    return fig


def plot_loss_curves(df: pd.DataFrame, density: float) -> Figure:
    """Training loss per epoch at one density (dense for reference), one panel per model."""
    models = list(dict.fromkeys(df["model"]))
    rows = []
    for r in df.itertuples():
        if r.method == "dense" or np.isclose(r.target_density, density):
            for epoch, loss in enumerate(r.loss_curve):
                rows.append({"model": r.model, "method": r.method, "seed": r.seed, "epoch": epoch, "loss": loss})
    long = pd.DataFrame(rows)
    pal = _palette(df.loc[df["method"] != "dense", "method"])  # same colours as the other figures
    pal["dense"] = (0.0, 0.0, 0.0)
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.8, 3.8, len(models), 1)
        for i, (ax, model) in enumerate(zip(axes.flat, models)):
            _band(ax, long[long["model"] == model], "epoch", "loss", "method", pal, (1e-12, np.inf),
                  legend=i == 0, marker=None)
            ax.set_yscale("log")
            ax.set_xlabel("epoch (0 = at initialization)")
            ax.set_ylabel("training cross-entropy (nats, log scale)")
            ax.set_title(model)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(_title(df[df["method"] != "dense"], f"Training loss at density {density:g}"))
    return fig


def plot_accuracy_bands(cells: pd.DataFrame) -> Figure:
    """Mean test accuracy against density with its interval as a band (clipped to [0, 1]).

    ``cells`` has columns ``model``, ``method``, ``target_density``, ``mean``, ``low``,
    ``high`` (e.g. 95% t intervals over seeds); the ``dense`` rows are drawn as a dashed line
    with a grey band. One panel per model.
    """
    models = list(dict.fromkeys(cells["model"]))
    sparse = cells[cells["method"] != "dense"]
    pal = _palette(sparse["method"])
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.8, 3.8, len(models), 1)
        for i, (ax, model) in enumerate(zip(axes.flat, models)):
            part = sparse[sparse["model"] == model]
            for method, m in part.groupby("method", sort=False):
                m = m.sort_values("target_density")
                ax.plot(m["target_density"], m["mean"], marker="o", markersize=3.5, color=pal[method], label=method)
                lo, hi = np.clip(m["low"].to_numpy(float), 0, 1), np.clip(m["high"].to_numpy(float), 0, 1)
                ax.fill_between(m["target_density"], lo, hi, color=pal[method], alpha=0.15, lw=0)
            dense = cells[(cells["model"] == model) & (cells["method"] == "dense")]
            if len(dense):
                r = dense.iloc[0]
                ax.axhline(r["mean"], ls="--", color="black", lw=1.2, label="dense")
                if np.isfinite(r["low"]):
                    ax.axhspan(max(r["low"], 0), min(r["high"], 1), color="black", alpha=0.08, lw=0)
            _density_axis(ax, part["target_density"])
            ax.set_ylim(0, 1)
            ax.set_xlabel("density (fraction of weights kept)")
            ax.set_ylabel("test accuracy")
            ax.set_title(model)
            if i == 0:
                ax.legend(title="method")
        _shared_legend(fig, axes.flat[0])
        n = int(cells["n"].max()) if "n" in cells else 0
        fig.suptitle(f"Test accuracy vs density ({n} seeds; mean and 95% interval)")
    return fig


def plot_scatter_by_method(df: pd.DataFrame, x: str, y: str, density: float, xlabel: str | None = None,
                           ylabel: str | None = None) -> Figure:
    """One point per run at ``density`` (``x`` against ``y``), coloured by method; a panel per model.

    Axis labels default to the metric table's (the column name for other columns).
    """
    xlabel, ylabel = xlabel or label_of(x), ylabel or label_of(y)
    models = list(dict.fromkeys(df["model"]))
    pal = _palette(df.loc[df["method"] != "dense", "method"])
    part = df[(df["method"] != "dense") & np.isclose(df["target_density"], density)]
    part = part.replace([np.inf, -np.inf], np.nan)
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.8, 3.8, len(models), 1)
        for i, (ax, model) in enumerate(zip(axes.flat, models)):
            sns.scatterplot(data=part[part["model"] == model], x=x, y=y, hue="method", palette=pal, ax=ax,
                            legend=i == 0, s=22)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(model)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(f"{ylabel} vs {xlabel} at density {density:g} (one point per mask)")


def layer_axis(ax, names):
    """Layer names on the x axis (every n-th when there are many), depth otherwise."""
    idx = list(names.index)
    step = max(1, int(np.ceil(len(idx) / 24)))
    ax.set_xticks(idx[::step])
    ax.set_xticklabels([str(n) for n in list(names.values)[::step]], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer (topological order)")


def plot_spectral_by_layer(spectra: dict, title: str = "Spectral gap by layer") -> Figure:
    """Per-layer ``mu2`` against the Ramanujan bound, and the weighted spectral gap.

    ``spectra`` maps a label (method) to the rows of :func:`analysis.spectral.layer_spectra`.
    Left: ``mu2`` (solid) and ``2 sqrt(d - 1)`` (dashed) per layer; a layer below its dashed
    line meets the Ramanujan bound. Right: ``1 - mu2_w / mu1_w`` of the ``|w|``-weighted graph.
    """
    pal = _palette(spectra)
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(6.0, 4.0, 2, 1)
        a, b = axes[0]
        names = None
        for label, rows in spectra.items():
            x = np.arange(len(rows))
            names = pd.Series([r["layer"] for r in rows], index=x)
            a.plot(x, [r["mu2"] for r in rows], marker="o", ms=3.5, color=pal[label], label=f"{label}: mu2")
            a.plot(x, [r["ramanujan_bound"] for r in rows], ls="--", color=pal[label], lw=1,
                   label=f"{label}: 2√(d−1)")
            b.plot(x, [r["weighted_gap"] for r in rows], marker="o", ms=3.5, color=pal[label], label=label)
        for ax in (a, b):
            if names is not None:
                layer_axis(ax, names)
        a.set_ylabel("second singular value of the bi-adjacency")
        a.set_ylim(bottom=0)
        b.set_ylabel("weighted spectral gap 1 − μ₂/μ₁")
        b.set_ylim(0, 1)
        a.legend(fontsize=7)
        fig.suptitle(title)
    return fig


PATH_NORMS = ("log10_path_norm_1", "log10_path_norm_2", "log10_path_norm_inf")


def plot_path_norms(df: pd.DataFrame) -> Figure:
    """``log10`` path norms (q = 1, 2, inf) against density, one panel per q, one line per method."""
    pal = _palette(df["method"])
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.6, 3.8, len(PATH_NORMS), 1)
        for i, (ax, key) in enumerate(zip(axes.flat, PATH_NORMS)):
            _metric_on(ax, df, key, label_of(key), pal, legend=i == 0)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(_title(df, "Path norms vs density"))
    return fig


def plot_collapse_margin(rows) -> Figure:
    """Layer-collapse margins (rows of ``analysis.experiments.collapse.collapse_margins``).

    One dot per method and seed at the largest density whose mask disconnects the net
    (log x axis); methods that never collapse are marked "never" at the left edge.
    """
    df = pd.DataFrame(list(rows))
    labels = [m if not o else f"{m}:" + ",".join(f"{k}={v}" for k, v in o.items())
              for m, o in zip(df["method"], df.get("options", [{}] * len(df)))]
    df = df.assign(label=labels)
    pal = _palette(df["label"])
    order = list(dict.fromkeys(df["label"]))
    finite = df["margin"].dropna()
    left = finite.min() / 3 if len(finite) else 1e-6
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(6.4, 0.5 * len(order) + 1.6)
        ax = axes[0, 0]
        for i, lab in enumerate(order):
            part = df[df["label"] == lab]
            for r in part.itertuples():
                if r.margin is None or (isinstance(r.margin, float) and np.isnan(r.margin)):
                    ax.text(left, i, "never", va="center", ha="left", color=pal[lab], fontsize=9)
                else:
                    ax.plot([r.margin, r.upper], [i, i], color=pal[lab], lw=3, alpha=0.5)
                    ax.plot(r.margin, i, "o", color=pal[lab])
        ax.set_xscale("log")
        ax.set_xlim(left=left / 1.5, right=1.0)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order)
        ax.set_xlabel("largest density at which the mask disconnects the net (log scale)")
        models = ", ".join(str(m) for m in dict.fromkeys(df.get("model", ["model"])))
        ax.set_title(f"Layer-collapse margin - {models} (lower is better)", fontsize=10)
    return fig


def _density_axis(ax, densities):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = sorted(set(float(d) for d in densities))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x * 100:g}%"))


#: The metrics of a comparison's standard figures: (metric key, file stem, plot options).
STANDARD_METRICS = (
    ("log10_paths", "paths", {}),
    ("log10_path_kernel_trace", "path_kernel_trace", {}),
    ("bottleneck_width", "bottleneck", {}),
    ("bottleneck_fraction", "bottleneck_fraction", {}),
    ("effective_density", "effective_density", {"logy": True, "diagonal": True}),
    ("ramanujan_gap_mean", "ramanujan_gap", {}),
)


def standard_figures(df: pd.DataFrame) -> dict:
    """The comparison figures, keyed by file stem."""
    figs = {}
    for model in dict.fromkeys(df["model"]):
        part = df[df["model"] == model]
        prefix = "" if df["model"].nunique() == 1 else f"{model}_"
        figs[prefix + "widths"] = plot_width_profile(part)
        figs[prefix + "widths_fraction"] = plot_width_profile(part, fraction=True)
        for metric, stem, opts in STANDARD_METRICS:
            figs[prefix + stem] = plot_metric(part, metric, **opts)
        if all(k in part for k in PATH_NORMS):
            figs[prefix + "path_norms"] = plot_path_norms(part)
    return figs


def save(fig: Figure, stem, formats=("png", "svg"), dpi: int = 150) -> list:
    """Write ``fig`` as ``stem.png`` / ``stem.svg``; returns the paths."""
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        fig.savefig(path, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths
