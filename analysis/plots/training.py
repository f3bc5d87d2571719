"""Figures of training studies: accuracy against density (with interval bands), loss
curves, and scatter plots of a topology measure against accuracy or loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..table import label_of
from .base import _band, _dense_line, _density_axis, _palette, _per_model, _title
from .comparison import _metric_on


def plot_accuracy(df: pd.DataFrame) -> Figure:
    """Test accuracy against density, one panel per model; dense accuracy as a dashed line."""
    sparse = df[df["method"] != "dense"]
    pal = _palette(sparse["method"])
    with _per_model(df, _title(sparse, "Test accuracy vs density (digits)")) as (fig, panels):
        for ax, model, first in panels:
            _metric_on(ax, sparse[sparse["model"] == model], "test_acc", "test accuracy", pal, legend=first)
            dense = df[(df["model"] == model) & (df["method"] == "dense")]["test_acc"]
            if len(dense):
                _dense_line(ax, dense.mean())
                if first:
                    ax.legend(title="method")
    return fig


def plot_loss_curves(df: pd.DataFrame, density: float) -> Figure:
    """Training loss per epoch at one density (dense for reference), one panel per model."""
    rows = []
    for r in df.itertuples():
        if r.method == "dense" or np.isclose(r.target_density, density):
            for epoch, loss in enumerate(r.loss_curve):
                rows.append({"model": r.model, "method": r.method, "seed": r.seed, "epoch": epoch, "loss": loss})
    long = pd.DataFrame(rows)
    pal = _palette(df.loc[df["method"] != "dense", "method"])  # same colours as the other figures
    pal["dense"] = (0.0, 0.0, 0.0)
    with _per_model(df, _title(df[df["method"] != "dense"], f"Training loss at density {density:g}")) as (fig, panels):
        for ax, model, first in panels:
            _band(ax, long[long["model"] == model], "epoch", "loss", "method", pal, (1e-12, np.inf),
                  legend=first, marker=None)
            ax.set_yscale("log")
            ax.set_xlabel("epoch (0 = at initialization)")
            ax.set_ylabel("training cross-entropy (nats, log scale)")
    return fig


def plot_accuracy_bands(cells: pd.DataFrame) -> Figure:
    """Mean test accuracy against density with its interval as a band (clipped to [0, 1]).

    ``cells`` has columns ``model``, ``method``, ``target_density``, ``mean``, ``low``,
    ``high`` (e.g. 95% t intervals over seeds); the ``dense`` rows are drawn as a dashed line
    with a grey band. One panel per model.
    """
    sparse = cells[cells["method"] != "dense"]
    pal = _palette(sparse["method"])
    n = int(cells["n"].max()) if "n" in cells else 0
    with _per_model(cells, f"Test accuracy vs density ({n} seeds; mean and 95% interval)") as (fig, panels):
        for ax, model, first in panels:
            part = sparse[sparse["model"] == model]
            for method, m in part.groupby("method", sort=False):
                m = m.sort_values("target_density")
                ax.plot(m["target_density"], m["mean"], marker="o", markersize=3.5, color=pal[method], label=method)
                lo, hi = np.clip(m["low"].to_numpy(float), 0, 1), np.clip(m["high"].to_numpy(float), 0, 1)
                ax.fill_between(m["target_density"], lo, hi, color=pal[method], alpha=0.15, lw=0)
            dense = cells[(cells["model"] == model) & (cells["method"] == "dense")]
            if len(dense):
                r = dense.iloc[0]
                _dense_line(ax, r["mean"])
                if np.isfinite(r["low"]):
                    ax.axhspan(max(r["low"], 0), min(r["high"], 1), color="black", alpha=0.08, lw=0)
            _density_axis(ax, part["target_density"])
            ax.set_ylim(0, 1)
            ax.set_xlabel("density (fraction of weights kept)")
            ax.set_ylabel("test accuracy")
            if first:
                ax.legend(title="method")
    return fig


def plot_scatter_by_method(df: pd.DataFrame, x: str, y: str, density: float, xlabel: str | None = None,
                           ylabel: str | None = None) -> Figure:
    """One point per run at ``density`` (``x`` against ``y``), coloured by method; a panel per model.

    Axis labels default to the metric table's (the column name for other columns).
    """
    xlabel, ylabel = xlabel or label_of(x), ylabel or label_of(y)
    pal = _palette(df.loc[df["method"] != "dense", "method"])
    part = df[(df["method"] != "dense") & np.isclose(df["target_density"], density)]
    part = part.replace([np.inf, -np.inf], np.nan)
    with _per_model(df, f"{ylabel} vs {xlabel} at density {density:g} (one point per mask)") as (fig, panels):
        for ax, model, first in panels:
            sns.scatterplot(data=part[part["model"] == model], x=x, y=y, hue="method", palette=pal, ax=ax,
                            legend=first, s=22)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
    return fig
