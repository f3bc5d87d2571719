"""Grids of methods x densities x seeds -> one tidy table, plus its files on disk.

Each row of the table is one run (model, method, density, seed) with every metric of
:func:`analysis.measure`, the time the method took, and the per-layer active widths as
list columns (``layer_names``, ``layer_units`` = dense widths, ``layer_widths`` = active
units), so that one table feeds every plot. In CSV files the list columns are JSON
strings; :func:`read_results` parses them back.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd

from netgraph import zoo
from netgraph._validate import check_density
from netgraph.errors import InvalidInputError
from netgraph.masked import as_masked
from netgraph.sparsifiers import get, sparsify
from netgraph.sparsifiers.registry import check_options, parse_option_value

from .summary import measure
from .widths import layer_table

LIST_COLUMNS = ("layer_names", "layer_units", "layer_widths", "layer_kept")


def layer_columns(graph, masks) -> dict:
    """The per-layer list columns of a results row (names, dense and active widths, kept)."""
    rows = layer_table(graph, masks)
    return {"layer_names": [r["layer"] for r in rows], "layer_units": [r["units"] for r in rows],
            "layer_widths": [r["active_units"] for r in rows], "layer_kept": [r["kept"] for r in rows]}


def parse_method(spec) -> tuple:
    """``"phew"`` or ``"phew:bias=uniform,kernel_conserved=true"`` -> ``(label, name, options)``.

    A ``(name, options)`` pair or a ``(label, name, options)`` triple passes through
    (validated).
    """
    if isinstance(spec, (tuple, list)):
        if len(spec) == 2:
            name, opts = spec
            label = name if not opts else f"{name}:" + ",".join(f"{k}={v}" for k, v in opts.items())
        else:
            label, name, opts = spec
        m = get(name)
        check_options(m, dict(opts))
        return label, name, dict(opts)
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"a method is a name like 'phew' or 'phew:bias=uniform', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    m = get(name)
    opts = {}
    for pair in filter(None, rest.split(",")):
        k, sep, v = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"method options look like key=value, got {pair!r} in {spec!r}")
        k = k.strip().replace("-", "_")
        opts[k] = parse_option_value(m, k, v.strip())
    check_options(m, opts)
    return spec.strip(), name, opts


def _seeds(seeds) -> list:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise InvalidInputError(f"seeds must be at least 1, got {seeds}")
        return list(range(int(seeds)))
    out = list(seeds)
    if not out or not all(isinstance(s, (int, np.integer)) for s in out):
        raise InvalidInputError(f"seeds must be a count or a list of integers, got {seeds!r}")
    return [int(s) for s in out]


def _data_for(kind, graph, seed):
    if kind is None or not isinstance(kind, str):
        return kind  # caller's own (inputs, labels) or batches
    from netgraph.data import prune_batch

    return prune_batch(kind, graph, seed)


def compare(model="vgg19", methods=("phew", "synflow", "synflow-l2", "random"), densities=(0.1, 0.05, 0.02, 0.01),
            seeds=1, *, input_shape=None, data=None, progress: bool = False, max_flow: bool = True,
            callback=None) -> pd.DataFrame:
    """Build and measure masks for every method, density and seed.

    Parameters
    ----------
    model : str
        A zoo name or ``"pkg.module:factory"``; seed ``s`` initialises the model with ``s``
        and runs every method with ``s``.
    methods : sequence
        Method specs: ``"phew"``, ``"phew:bias=uniform"`` (an ablation) or ``(name, options)``.
    densities : sequence of float
        Kept fractions in (0, 1].
    seeds : int or sequence of int
        A count (seeds 0..n-1) or explicit seeds.
    input_shape : tuple, optional
        Required for user models.
    data : {"random", "digits"} or (inputs, labels), optional
        For data-dependent methods.
    progress : bool
        Show a progress bar over the runs.
    max_flow : bool
        Compute the max-flow metrics (minimum vertex cut, edge-disjoint paths).
    callback : callable, optional
        Called with each finished row (a dict).

    Returns
    -------
    pandas.DataFrame
        One row per (model, method, density, seed).

    Raises
    ------
    InvalidInputError
        An empty method list, an unknown method or option, a density outside (0, 1].
    """
    specs = [parse_method(m) for m in methods]
    if not specs:
        raise InvalidInputError("the method list is empty; give at least one method, e.g. phew,synflow")
    dens = [check_density(d) for d in densities]
    if not dens:
        raise InvalidInputError("the density list is empty")
    seed_list = _seeds(seeds)
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(total=len(specs) * len(dens) * len(seed_list), desc=f"compare {model}", disable=not progress)
    for seed in seed_list:
        net, g = zoo.graph_of(model, input_shape, seed)
        batch = None
        for label, name, opts in specs:
            if get(name).needs_data:
                if data is None:
                    raise InvalidInputError(f"method {name!r} needs data: pass data='random' or 'digits'")
                batch = batch if batch is not None else _data_for(data, g, seed)
            for d in dens:
                bar.set_postfix_str(f"{label} @ {d:g}, seed {seed}")
                t0 = time.perf_counter()
                ms = sparsify(net, name, d, seed, graph=g, data=batch, **opts)
                t1 = time.perf_counter()
                mg = as_masked(g, ms)
                rec = {**measure(g, mg, max_flow=max_flow), **layer_columns(g, mg)}
                row = {"model": model, "method": label, "base_method": name, "target_density": d, "seed": seed,
                       **rec, "seconds": t1 - t0, "measure_seconds": time.perf_counter() - t1}
                rows.append(row)
                if callback is not None:
                    callback(row)
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


def to_csv(df: pd.DataFrame, path, list_columns=LIST_COLUMNS) -> None:
    """Write a results table, list columns as JSON strings."""
    out = df.copy()
    for c in list_columns:
        if c in out:
            out[c] = out[c].map(json.dumps)
    out.to_csv(path, index=False)


def read_results(path) -> pd.DataFrame:
    """Read a results CSV written by :func:`to_csv` (list columns parsed back)."""
    df = pd.read_csv(path)
    for c in LIST_COLUMNS:
        if c in df:
            df[c] = df[c].map(json.loads)
    return df


SUMMARY_METRICS = [
    ("density", "density"),
    ("log10_paths", "log10 paths"),
    ("log10_path_kernel_trace", "log10 PK trace"),
    ("bottleneck_width", "bottleneck"),
    ("min_vertex_cut", "min cut"),
    ("mean_width_fraction", "mean width"),
    ("effective_fraction", "eff. fraction"),
    ("log10_effective_paths", "log10 eff. paths"),
    ("seconds", "seconds"),
]


def summary_markdown(df: pd.DataFrame) -> str:
    """A Markdown table of mean ± std per method and density."""
    cols = [(c, name) for c, name in SUMMARY_METRICS if c in df]
    lines = []
    for model, part in df.groupby("model", sort=False):
        n = part.groupby(["method", "target_density"]).size().max()
        lines.append(f"### {model} ({n} seed{'s' if n > 1 else ''} per cell; mean ± std)\n")
        lines.append("| method | target density | " + " | ".join(n for _, n in cols) + " |")
        lines.append("|---|---|" + "---|" * len(cols))
        for (method, d), cell in part.groupby(["method", "target_density"], sort=False):
            vals = []
            for c, _ in cols:
                x = pd.to_numeric(cell[c], errors="coerce")
                m, s = x.mean(), x.std()
                fmt = "{:.4g}"
                vals.append(fmt.format(m) + ("" if not np.isfinite(s) or len(cell) < 2 else " ± " + fmt.format(s)))
            lines.append(f"| {method} | {d:g} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(df: pd.DataFrame, out_dir, formats=("png", "svg"), command: str | None = None) -> list:
    """Write ``results.csv``, ``summary.md`` and the standard plots into ``out_dir``.

    Returns the list of files written.
    """
    from . import plots

    os.makedirs(out_dir, exist_ok=True)
    written = []
    path = os.path.join(out_dir, "results.csv")
    to_csv(df, path)
    written.append(path)
    md = summary_markdown(df)
    if command:
        md = f"Made with:\n\n```\n{command}\n```\n\n" + md
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as f:
        f.write(md)
    written.append(path)
    for stem, fig in plots.standard_figures(df).items():
        written += plots.save(fig, os.path.join(out_dir, stem), formats)
    return written
