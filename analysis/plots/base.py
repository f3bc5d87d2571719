"""What every figure shares: the one palette, styles, bands clipped to a metric's range,
axes, and saving."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from netgraph.errors import InvalidInputError

from ..table import METRICS, RUN_KEYS, label_of, metric_keys


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
    unit = next((m.unit for m in METRICS if m.key == metric), None)
    return UNIT_RANGE.get(unit, (-np.inf, np.inf))


def check_table(df, what: str, metrics=(), model=None, one_model: bool = True, columns=()) -> pd.DataFrame:
    """The rows of results table ``df`` that figure ``what`` draws, checked at the plots' boundary:
    a DataFrame with the table's columns (and ``columns``) and rows, numeric ``metrics`` columns,
    and one model (``model``, if given, selects it; ``one_model=False`` allows several). One
    clear line otherwise."""
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"{what} takes a results table (a DataFrame of analysis.compare or "
                                f"analysis.read_results), got {type(df).__name__}")
    missing = [c for c in (*RUN_KEYS, *columns) if c not in df]
    if missing:
        raise InvalidInputError(f"{what}: the table has no {', '.join(missing)} column(s); it takes a table of "
                                "analysis.compare or analysis.read_results")
    models = list(dict.fromkeys(df["model"]))
    if model is not None:
        if model not in models:
            raise InvalidInputError(f"{what}: model {model!r} is not in the table; its models: "
                                    f"{', '.join(map(repr, models)) or 'none (no rows)'}")
        df = df[df["model"] == model]
    elif one_model and len(models) > 1:
        raise InvalidInputError(f"{what} draws one model and the table holds {len(models)} "
                                f"({', '.join(map(repr, models))}): pass model=, or plot_metric_grid for a panel each")
    if df.empty:
        raise InvalidInputError(f"{what}: the table has no rows")
    for key in metrics:
        if key not in df:
            known = [k for k in metric_keys() if k in df]
            raise InvalidInputError(f"{what}: no column {key!r} in the table; its metrics: {', '.join(known)}")
        named = any(m.key == key and m.unit == "name" for m in METRICS)
        if named or (df[key].notna().any() and pd.to_numeric(df[key], errors="coerce").isna().all()):
            raise InvalidInputError(f"{what}: {key!r} holds names, not numbers; plot a numeric metric")
    return df


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
    return f"{what} - {models} ({seeds} seeds; mean ± sd)" if seeds > 1 else f"{what} - {models} (1 seed)"


def fit_suptitle(fig: Figure, text: str):
    """``fig.suptitle(text)``, its words wrapped onto more lines where one line would be wider than
    the figure (the width measured in the title's font)."""
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=rcParams["figure.titlesize"], weight=rcParams["figure.titleweight"])
    renderer = RendererAgg(1, 1, 72)  # (widths in points)
    limit = 0.95 * fig.get_figwidth() * 72
    lines: list = []
    for word in text.split(" "):
        wider = f"{lines[-1]} {word}" if lines else word
        if lines and renderer.get_text_width_height_descent(wider, prop, ismath=False)[0] <= limit:
            lines[-1] = wider
        else:
            lines.append(word)
    return fig.suptitle("\n".join(lines))


def _new_figure(width=6.4, height=4.2, ncols=1, nrows=1, **kw):
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


@contextmanager
def _per_model(df, title: str):
    """A figure of one panel per model of ``df`` (first-seen order) in the house style: yields
    ``(fig, [(ax, model, first)])`` to draw on; then each panel takes its model's name, the
    first panel's legend (if any) becomes the figure's and ``title`` its title."""
    models = list(dict.fromkeys(df["model"]))
    with sns.axes_style("whitegrid", _STYLE):
        fig, axes = _new_figure(4.8, 3.8, len(models), 1)
        panels = [(ax, model, i == 0) for i, (ax, model) in enumerate(zip(axes.flat, models))]
        yield fig, panels
        for ax, model, _ in panels:
            ax.set_title(model)
        _shared_legend(fig, axes.flat[0])
        fig.suptitle(title)


def _dense_line(ax, mean: float) -> None:
    """The dense network's value: a dashed black line, labelled for the legend."""
    ax.axhline(mean, ls="--", color="black", lw=1.2, label="dense")


def _labels(metric, ylabel, title):
    ylabel = ylabel or label_of(metric)
    return ylabel, title or f"{ylabel} vs density"


def _shared_legend(fig, ax):
    if ax.get_legend() is not None:
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside right upper", title="method")


def _short(name: str, most: int = 24) -> str:
    """A layer name of at most ``most`` characters for a tick label: the parts that tell the
    layers of a deep model apart (those with a number, and the last two) and, if that is
    still long, its end (``encoder.layers.encoder_layer_11.mlp.3`` -> ``encoder_layer_11.mlp.3``)."""
    if len(name) <= most:
        return name
    parts = name.split(".")
    name = ".".join(p for i, p in enumerate(parts) if i >= len(parts) - 2 or any(c.isdigit() for c in p))
    return name if len(name) <= most else "…" + name[-(most - 1):]


def layer_axis(ax, names):
    """Layer names on the x axis (every n-th when there are many), depth otherwise."""
    idx = list(names.index)
    step = max(1, int(np.ceil(len(idx) / 24)))
    ax.set_xticks(idx[::step])
    ax.set_xticklabels([_short(str(n)) for n in list(names.values)[::step]], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer (topological order)")


def _density_axis(ax, densities):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = sorted(set(float(d) for d in densities))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x * 100:g}%"))


#: The metadata that leaves the creation date out of a format's file (PostScript's is fixed
#: by SOURCE_DATE_EPOCH, the reproducible-builds convention matplotlib follows; the others hold none).
_NO_DATE = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


@contextmanager
def _epoch_date(fmt: str):
    """For PostScript: ``SOURCE_DATE_EPOCH=0`` while the file is written (restored after)."""
    if fmt not in ("ps", "eps"):
        yield
        return
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved


def save(fig: Figure, stem, formats=("png", "svg"), dpi: int = 150) -> list:
    """Write ``fig`` as ``stem.png`` / ``stem.svg`` (``formats``: one name or several of
    :data:`FORMATS`); returns the paths. The same figure gives
    the same bytes: an SVG, PDF or PostScript file has no date, and an SVG's clip-path ids are hashed with a fixed salt
    (matplotlib salts them with a random uuid otherwise)."""
    import matplotlib

    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not isinstance(fig, Figure):
        raise InvalidInputError(f"save takes a matplotlib Figure and formats among {', '.join(FORMATS)}; got "
                                + (f"format(s) {', '.join(map(repr, unknown))}" if unknown else type(fig).__name__))
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        with matplotlib.rc_context({"svg.hashsalt": "netgraph"}), _epoch_date(fmt):
            fig.savefig(path, dpi=dpi, metadata=_NO_DATE.get(fmt))
        paths.append(path)
    return paths
