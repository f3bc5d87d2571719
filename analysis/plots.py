"""Figures from a results table (:func:`analysis.compare` or :func:`analysis.read_results`).

Every function takes the table and returns a :class:`matplotlib.figure.Figure` (never
calls ``plt.show()``; no pyplot state is touched, so this works headless and inside other
applications). Colours are fixed per method across figures. Use :func:`save` to write PNG
and SVG.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .table import label_of

#: Figure formats :func:`save` writes (matplotlib's raster and vector formats).
FORMATS = ("png", "svg", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff")

_STYLE = {"axes.grid": True, "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False}


def _palette(methods) -> dict:
    methods = list(dict.fromkeys(methods))
    colours = sns.color_palette("tab10", max(10, len(methods)))
    return {m: colours[i] for i, m in enumerate(methods)}


def _title(df, what):
    models = ", ".join(dict.fromkeys(df["model"]))
    seeds = df.groupby(["model", "method", "target_density"]).size().max()
    return f"{what} - {models} ({seeds} seed{'s' if seeds > 1 else ''}; mean ± sd)"


def _new_figure(width=6.4, height=4.2, ncols=1, nrows=1, **kw):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plot_width_profile(df: pd.DataFrame, model: str | None = None) -> Figure:
    """Active units per layer, one panel per density, the dense width drawn dashed."""
    if model is not None:
        df = df[df["model"] == model]
    rows = []
    for _, r in df.iterrows():
        for i, (name, units, w) in enumerate(zip(r["layer_names"], r["layer_units"], r["layer_widths"])):
            rows.append({"method": r["method"], "density": r["target_density"], "seed": r["seed"], "layer": i,
                         "name": name, "units": units, "active": w})
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
            ax.plot(dense.index, dense.values, ls="--", color="black", lw=1.2, label="dense width")
            sns.lineplot(data=part, x="layer", y="active", hue="method", palette=pal, errorbar="sd",
                         marker="o", markersize=3.5, ax=ax, legend=ax is axes.flat[0])
            ax.set_title(f"density {d:g} ({d * 100:g}% of weights)")
            ax.set_xlabel("layer (topological order)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("active units (on an input-output path)")
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
    sns.lineplot(data=data, x="target_density", y=metric, hue="method", palette=pal, errorbar="sd",
                 marker="o", ax=ax, legend=legend)
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
            sns.lineplot(data=long[long["model"] == model], x="epoch", y="loss", hue="method", palette=pal,
                         errorbar="sd", ax=ax, legend=i == 0)
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
)


def standard_figures(df: pd.DataFrame) -> dict:
    """The comparison figures, keyed by file stem."""
    figs = {}
    for model in dict.fromkeys(df["model"]):
        part = df[df["model"] == model]
        prefix = "" if df["model"].nunique() == 1 else f"{model}_"
        figs[prefix + "widths"] = plot_width_profile(part)
        for metric, stem, opts in STANDARD_METRICS:
            figs[prefix + stem] = plot_metric(part, metric, **opts)
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
