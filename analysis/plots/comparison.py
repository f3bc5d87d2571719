"""Figures of comparison tables: layer widths, metrics against density, path norms,
spectral gaps by layer, collapse margins, and the standard set of a comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from netgraph.errors import InvalidInputError

from ..table import label_of
from .base import (_STYLE, _band, _density_axis, _labels, _new_figure, _palette, _per_model, _shared_legend, _title,
                   check_table, fit_suptitle, layer_axis, metric_range)


def plot_width_profile(df: pd.DataFrame, model: str | None = None, fraction: bool = False) -> Figure:
    """Active units per layer, one panel per density, the dense width drawn dashed.

    With ``fraction=True`` the y axis is active units / dense width of each layer (the
    dense width is then the line y = 1).
    """
    df = check_table(df, "plot_width_profile", model=model,
                     columns=("layer_names", "layer_units", "layer_widths"))
    if len({tuple(u) for u in df["layer_units"]}) > 1:
        raise InvalidInputError(f"plot_width_profile: the rows of model {df['model'].iloc[0]!r} come from networks "
                                "of different layer widths; give each network its own model label")
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
            ax.set_ylabel("active units /\ndense width" if fraction else "active units\n(on an input-output path)")
            ax.set_ylim(bottom=0)
            if not fraction:  # whole units
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(dens):]:
            ax.set_visible(False)
        first = axes.flat[0]
        if first.get_legend() is not None:  # below the panels: beside them it met the title of a narrow figure
            handles, labels = first.get_legend_handles_labels()
            first.get_legend().remove()
            fig.legend(handles, labels, loc="outside lower center", title="method", ncols=min(len(labels), 4))
        fit_suptitle(fig, _title(df, "Layer widths"))
    return fig


def _infinite_seeds(ax, data, values, metric, pal) -> bool:
    """Mark each (method, density) whose seeds include an infinite value (log10 of no path:
    -inf), left out of the mean: an x at the others' mean (at the axis' foot when all are),
    labelled ``k/n −∞``; whether any was."""
    from matplotlib.transforms import blended_transform_factory

    foot = blended_transform_factory(ax.transData, ax.transAxes)
    marked = False
    for (method, d), part in data.assign(_v=values).groupby(["method", "target_density"], sort=False):
        k = int(np.isinf(part["_v"]).sum())
        if not k:
            continue
        sign = "−∞" if (part["_v"] < 0).any() else "+∞"
        finite = part[metric].dropna()
        y, trans = (finite.mean(), ax.transData) if len(finite) else (0.03, foot)
        ax.plot([d], [y], marker="x", ms=7, mew=1.5, color=pal[method], transform=trans, ls="none")
        ax.annotate(f"{k}/{len(part)} {sign}", (d, y), xycoords=trans, xytext=(4, 3), textcoords="offset points",
                    fontsize=7, color=pal[method])
        marked = True
    return marked


def _metric_on(ax, data, metric, ylabel, pal, logy=False, diagonal=False, legend=True):
    data = data[data["method"].isin(pal)].copy()
    values = pd.to_numeric(data[metric], errors="coerce")
    data[metric] = values.replace([np.inf, -np.inf], np.nan)
    _band(ax, data.dropna(subset=[metric]), "target_density", metric, "method", pal, metric_range(metric), legend)
    marked = _infinite_seeds(ax, data, values, metric, pal)
    if data[metric].isna().all():
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", color="0.4")
    _density_axis(ax, data["target_density"])
    if logy:
        ax.set_yscale("log")
    if diagonal:
        lim = [data["target_density"].min(), data["target_density"].max()]
        ax.plot(lim, lim, ls="--", color="grey", lw=1, label="no dead weights (y = x)")
        if legend:
            ax.legend(title="method")
    ax.set_xlabel("density: kept weights (log scale)"
                  + ("\nx: k/n seeds infinite (no path), the line their others' mean" if marked else ""))
    ax.set_ylabel(ylabel)


def plot_metric(df: pd.DataFrame, metric: str, ylabel: str | None = None, title: str | None = None,
                logy: bool = False, diagonal: bool = False, model: str | None = None) -> Figure:
    """``metric`` against target density (log x axis), one line per method, for one model
    (``model`` picks one of a table of several; :func:`plot_metric_grid` draws them all).

    The axis label and title default to the metric table's label of ``metric``. Lines are
    the mean of the seeds' finite values; a density where some seeds have none (``-inf``:
    no input-output path) is marked with how many.
    """
    df = check_table(df, "plot_metric", (metric,), model)
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
    df = check_table(df, "plot_metric_grid", (metric,), one_model=False)
    ylabel, title = _labels(metric, ylabel, title)
    pal = _palette(df["method"])
    with _per_model(df, _title(df, title)) as (fig, panels):
        for ax, model, first in panels:
            _metric_on(ax, df[df["model"] == model], metric, ylabel, pal, logy, diagonal, legend=first)
    return fig


PATH_NORMS = ("log10_path_norm_1", "log10_path_norm_2", "log10_path_norm_inf")


def plot_path_norms(df: pd.DataFrame, model: str | None = None) -> Figure:
    """``log10`` path norms (q = 1, 2, inf) against density, one panel per q, one line per
    method, for one model (``model`` picks one of several)."""
    df = check_table(df, "plot_path_norms", PATH_NORMS, model)
    pal = _palette(df["method"])
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.6, 3.8, len(PATH_NORMS), 1)
        for i, (ax, key) in enumerate(zip(axes.flat, PATH_NORMS)):
            _metric_on(ax, df, key, label_of(key), pal, legend=i == 0)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(_title(df, "Path norms vs density"))
    return fig


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


def plot_collapse_margin(rows) -> Figure:
    """Layer-collapse margins (rows of ``analysis.experiments.collapse.collapse_margins``).

    One dot per method and seed at the largest density whose mask disconnects the net
    (log x axis); methods that never collapse are marked "never" at the left edge.
    """
    df = pd.DataFrame(list(rows))
    if df.empty or not {"method", "margin", "upper"} <= set(df):
        raise InvalidInputError("plot_collapse_margin takes the rows of collapse_margins (method, margin, upper, "
                                f"...), got {'no rows' if df.empty else 'columns ' + ', '.join(map(str, df))}")
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


#: The metrics of a comparison's standard figures: (metric key, file stem, plot options).
STANDARD_METRICS = (
    ("log10_paths", "paths", {}),
    ("log10_path_kernel_trace", "path_kernel_trace", {}),
    ("bottleneck_width", "bottleneck", {}),
    ("bottleneck_fraction", "bottleneck_fraction", {}),
    ("effective_density", "effective_density", {"logy": True, "diagonal": True}),
    ("ramanujan_gap_mean", "ramanujan_gap", {}),
)


def standard_stems() -> list:
    """File stems of :func:`standard_figures` for one model (what a comparison writes)."""
    return ["widths", "widths_fraction", *(stem for _, stem, _ in STANDARD_METRICS), "path_norms"]


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
