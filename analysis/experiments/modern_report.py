"""The modern-architecture study's claims table, Markdown report and figures (:mod:`.modern`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import plots
from .markdown import by_cell, records, table


def _short(model) -> str:
    return str(model).partition(":")[2] or str(model)


def _cell(df, metric):
    return df.groupby(["model", "target_density", "method"], sort=False)[metric].mean().unstack("method")


def claims(runs: pd.DataFrame) -> list:
    """Per model: does SynFlow-L2 leave narrow layers, keep the highest trace; is PHEW nearly dense-wide?

    Each claim is ``{"claim", "measured", "holds"}`` with the numbers per density.
    """
    out = []
    methods = set(runs["method"])
    for model, part in runs.groupby("model", sort=False):
        dens = sorted(set(part["target_density"]), reverse=True)
        cell = part.groupby(["target_density", "method"])[["mean_width_fraction", "narrow_layers",
                                                           "log10_path_kernel_trace"]].mean()
        n_layers = len(part["layer_units"].iloc[0])
        if {"phew", "synflow-l2"} <= methods:
            gaps = [cell.loc[(d, "phew"), "mean_width_fraction"] - cell.loc[(d, "synflow-l2"), "mean_width_fraction"]
                    for d in dens]
            txt = "; ".join(f"{d:g}: SynFlow-L2 {cell.loc[(d, 'synflow-l2'), 'mean_width_fraction']:.0%} wide, "
                            f"{cell.loc[(d, 'synflow-l2'), 'narrow_layers']:.0f}/{n_layers} layers narrow vs PHEW "
                            f"{cell.loc[(d, 'phew'), 'mean_width_fraction']:.0%}, "
                            f"{cell.loc[(d, 'phew'), 'narrow_layers']:.0f}" for d in dens)
            wins = sum(g > 0.05 for g in gaps)
            out.append({"claim": f"1b. SynFlow-L2 leaves narrow layers ({_short(model)})", "measured": txt,
                        "holds": "yes" if wins == len(dens) else ("partly" if wins else "no")})
        trace = cell["log10_path_kernel_trace"].replace([np.inf, -np.inf], np.nan).unstack("method")
        if "synflow-l2" in trace:
            best = trace.idxmax(axis=1)
            wins = int((best == "synflow-l2").sum())
            out.append({"claim": f"1a. SynFlow-L2 has the highest path-kernel trace ({_short(model)})",
                        "measured": "; ".join(f"{d:g}: highest {best.loc[d]} ({trace.loc[d, best.loc[d]]:.1f}), "
                                              f"SynFlow-L2 {trace.loc[d, 'synflow-l2']:.1f}" for d in dens),
                        "holds": "yes" if wins == len(dens) else ("partly" if wins else "no")})
        if "phew" in methods:
            w = [cell.loc[(d, "phew"), "mean_width_fraction"] for d in dens]
            out.append({"claim": f"2b. PHEW's layers are nearly as wide as the dense network's ({_short(model)})",
                        "measured": "; ".join(f"{d:g}: {x:.0%}" for d, x in zip(dens, w)),
                        "holds": "yes" if min(w) >= 0.9 else ("partly" if max(w) >= 0.9 else "no")})
    return out


def _pivot(runs, metric, fmt) -> str:
    t = _cell(runs, metric)

    def value(model, d, m):
        row = t.loc[(model, d)]
        return "" if m not in row or pd.isna(row[m]) else fmt(row[m])

    return by_cell(t.index, list(dict.fromkeys(runs["method"])), value, _short)


def _bottleneck_table(runs) -> str:
    first = runs[runs["seed"] == runs["seed"].min()].set_index(["model", "target_density", "method"])

    def value(model, d, m):
        r = first.loc[(model, d, m)]
        return "disconnected" if not r["connected"] else f"{r['bottleneck_fraction']:.0%} ({r['bottleneck_type']})"

    cells = [key for key, _ in runs.groupby(["model", "target_density"], sort=False)]
    return by_cell(cells, list(dict.fromkeys(runs["method"])), value, _short)


def _block_tables(blocks) -> str:
    """One table per model: block types x methods, width at each density (``10% / 1% / 0.1%``)."""
    out = []
    dens = sorted(set(blocks["target_density"]), reverse=True)
    methods = list(dict.fromkeys(blocks["method"]))
    mean = blocks.groupby(["model", "type", "method", "target_density"], sort=False)[["width", "min_width"]].mean()
    for model, part in blocks.groupby("model", sort=False):
        first = part.drop_duplicates("type")
        rows = []
        for r in first.itertuples():
            cells = []
            for m in methods:
                vals = [mean.loc[(model, r.type, m, d)] if (model, r.type, m, d) in mean.index else None for d in dens]
                txt = " / ".join("" if v is None else f"{v['width']:.0%}" for v in vals)
                cells.append(txt + ("" if vals[-1] is None else f" ({vals[-1]['min_width']:.0%})"))
            rows.append([r.type, r.layers, *cells])
        out += [f"**{_short(model)}** (active / dense units of all layers of the type at densities "
                f"{' / '.join(f'{d:g}' for d in dens)}; in brackets the narrowest layer at the lowest density)", "",
                table(["block type", "layers", *methods], rows)]
        out.append("")
    return "\n".join(out)


def _collapse_table(coll) -> str:
    if not len(coll):
        return "(not run)"
    rows = []
    for r in coll.itertuples():
        if r.margin is None or pd.isna(r.margin):
            at = f"never (connected at {r.upper:.2g}, one weight per layer)"
        elif r.upper is None or pd.isna(r.upper):
            at = "disconnected even dense"
        else:
            at = f"{r.margin:.3g} (connected at {r.upper:.3g})"
        rows.append({"model": _short(r.model), "method": r.method, "seed": r.seed, "collapses at": at,
                     "new masks": r.new_masks})
    return records(rows, ["model", "method", "seed", "collapses at", "new masks"])


def _networks(layers) -> str:
    rows = []
    for model, part in layers.groupby("model", sort=False):
        counts = part["type"].value_counts(sort=False)
        rows.append({"model": _short(model), "layers": len(part), "layer weights": f"{int(part['weights'].sum()):,}",
                     "block types": ", ".join(f"{t} {n}" for t, n in counts.items())})
    return records(rows, ["model", "layers", "layer weights", "block types"])


def report(runs, blocks, coll, layers, study, seconds, command=None, figures=()) -> str:
    """The Markdown report ``modern.md``."""
    out = ["# Topology study on modern architectures (generated)", ""]
    if command:
        out += ["Command:", "", f"```\n{command}\n```", ""]
    out += [f"{len(runs)} masks ({runs['model'].nunique()} models, {runs['method'].nunique()} methods, "
            f"{runs['target_density'].nunique()} densities, {study.seeds} seed(s)) and {len(coll)} collapse "
            f"bisections in {seconds / 60:.1f} min. Densities are fractions of the layers' weights (off-path "
            f"parameters kept dense, not counted). SNIP prunes on {study.snip_batch} seeded standard-normal inputs "
            f"with random labels. Collapse: bisection in log density from the grid's bracket, until upper / margin "
            f"<= {1 + study.collapse_rtol:g} or {study.collapse_evals} new masks"
            + ("" if not study.collapse_skip else "; not run for " + ", ".join(
                f"{m} on {_short(mod)}" for mod, m in study.collapse_skip if mod in set(runs["model"])))
            + ". A layer is narrow below 50% of its dense units.", "",
            "## Networks", "", _networks(layers), ""]
    if "redrawn" in layers and layers["redrawn"].any():
        out += ["Layers whose weights the architecture initialises to zero, re-initialised (seeded, the "
                "module's own `reset_parameters`) so that weight-magnitude paths exist: "
                + ", ".join(f"`{_short(m)}: {n}`" for m, n in zip(layers.loc[layers["redrawn"], "model"],
                                                                layers.loc[layers["redrawn"], "layer"])) + ".", ""]
    errors = runs.attrs.get("errors", [])
    if errors:
        out += ["## Failures", "", records(errors, ["model", "seed", "stage", "error"]), ""]
    out += ["## Claims", "", records(claims(runs), ["claim", "measured", "holds"]), "",
            "## Bottleneck: narrowest hidden unit group (active / dense) and its layer's block type", "",
            _bottleneck_table(runs), "",
            "## Mean active width (fraction of dense, averaged over layers)", "",
            _pivot(runs, "mean_width_fraction", "{:.3f}".format), "",
            "## Narrow layers (active width below 50% of dense)", "",
            _pivot(runs, "narrow_layers", "{:.0f}".format), "",
            "## Empty layers (no active unit; paths bypass them through shortcuts)", "",
            _pivot(runs, "empty_layers", "{:.0f}".format), "",
            "## log10 path-kernel trace", "", _pivot(runs, "log10_path_kernel_trace", "{:.1f}".format), "",
            "## Effective fraction (kept weights on an input-output path)", "",
            _pivot(runs, "effective_fraction", "{:.3f}".format), "",
            "## Active width by block type", "", _block_tables(blocks),
            "## Collapse density", "", _collapse_table(coll), "",
            "## Figures", ""]
    out += [f"![{f}]({f}.png)" for f in figures]
    return "\n".join(out) + "\n"


def figures(runs, blocks, coll, prefix="modern") -> dict:
    """Width profiles per model, block-type widths per density, metric grids, collapse densities."""
    figs = {}
    for model in dict.fromkeys(runs["model"]):
        figs[f"{prefix}_widths_{_short(model)}"] = plots.plot_width_profile(runs[runs["model"] == model], fraction=True)
    for d in sorted(set(blocks["target_density"]), reverse=True):
        figs[f"{prefix}_blocks_{d:g}".replace(".", "p")] = plots.plot_block_widths(blocks, d)
    for metric, stem in (("bottleneck_fraction", "bottleneck"), ("mean_width_fraction", "mean_width"),
                         ("log10_path_kernel_trace", "path_kernel_trace")):
        figs[f"{prefix}_{stem}"] = plots.plot_metric_grid(runs, metric)
    if len(coll):
        figs[f"{prefix}_collapse"] = plots.plot_collapse_by_model(coll)
    return figs
