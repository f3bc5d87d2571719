"""Figures of the modern-architecture study: active width by block type, and collapse
densities per model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .base import _STYLE, _new_figure, _palette


def _short(model) -> str:
    return str(model).partition(":")[2] or str(model)


def plot_block_widths(blocks: pd.DataFrame, density: float) -> Figure:
    """Active width (active / dense units) of each block type, one bar per method, one panel per model.

    ``blocks`` is a table of :func:`analysis.experiments.modern.block_widths`; bars are the
    mean over seeds at ``density``, a black tick marks the narrowest layer of the type.
    """
    part = blocks[np.isclose(blocks["target_density"], density)]
    models = list(dict.fromkeys(part["model"]))
    methods = list(dict.fromkeys(part["method"]))
    pal = _palette(methods)
    width = 0.8 / max(1, len(methods))
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.2, 3.6, min(3, len(models)), int(np.ceil(len(models) / 3)), sharey=True)
        for ax, model in zip(axes.flat, models):
            m = part[part["model"] == model].groupby(["type", "method"], sort=False)[["width", "min_width"]].mean()
            types = list(dict.fromkeys(part.loc[part["model"] == model, "type"]))
            x = np.arange(len(types))
            missing = pd.Series({"width": np.nan, "min_width": np.nan})
            for j, method in enumerate(methods):
                vals = [m.loc[(t, method)] if (t, method) in m.index else missing for t in types]
                pos = x - 0.4 + width * (j + 0.5)
                ax.bar(pos, [v["width"] for v in vals], width, color=pal[method],
                       label=method if ax is axes.flat[0] else None)
                ax.plot(pos, [v["min_width"] for v in vals], "_", color="black", ms=6, mew=1.2)
            ax.set_xticks(x)
            ax.set_xticklabels(types, rotation=40, ha="right", fontsize=7)
            ax.set_ylim(0, 1.05)
            ax.set_title(_short(model), fontsize=10)
            ax.set_ylabel("active / dense units")
        for ax in list(axes.flat)[len(models):]:
            ax.set_visible(False)
        if len(models):
            handles, labels = axes.flat[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside right upper", title="method")
        fig.suptitle(f"Active width by block type at density {density:g} (bars: all layers of the type; "
                     "ticks: its narrowest layer)")
    return fig


def plot_collapse_by_model(collapse: pd.DataFrame) -> Figure:
    """Collapse densities, one panel per model: the bracket ``[margin, upper]`` per method.

    Methods whose mask at the smallest density (one weight per layer) is still connected
    are written "never".
    """
    models = list(dict.fromkeys(collapse["model"]))
    methods = list(dict.fromkeys(collapse["method"]))
    pal = _palette(methods)
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.2, 0.35 * len(methods) + 1.4, min(3, len(models)), int(np.ceil(len(models) / 3)),
                                sharex=True)
        for ax, model in zip(axes.flat, models):
            part = collapse[collapse["model"] == model]
            lowest = float(part["lowest"].min())
            for i, method in enumerate(methods):
                for r in part[part["method"] == method].itertuples():
                    if r.margin is None or pd.isna(r.margin):
                        ax.text(lowest, i, "never", va="center", ha="left", color=pal[method], fontsize=8)
                    else:
                        ax.plot([r.margin, r.upper], [i, i], color=pal[method], lw=3, alpha=0.5)
                        ax.plot(r.margin, i, "o", color=pal[method], ms=4)
            ax.set_xscale("log")
            ax.set_yticks(range(len(methods)))
            ax.set_yticklabels(methods, fontsize=8)
            ax.set_title(_short(model), fontsize=10)
            ax.set_xlabel("collapse density (largest disconnected)")
        for ax in list(axes.flat)[len(models):]:
            ax.set_visible(False)
        fig.suptitle("Layer-collapse density (lower is better; bar: bisection bracket)")
    return fig
