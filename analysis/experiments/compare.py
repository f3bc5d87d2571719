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

import numpy as np
import pandas as pd

from netgraph._numba import compile_notice
from netgraph._validate import check_density
from netgraph.errors import InvalidInputError
from netgraph.provenance import provenance
from netgraph.sparsifiers import get

from ..table import METRICS, RUN_KEYS
from .collapse import collapse_margins
from .grid import check_distinct, check_distinct_methods, seed_axis
from .run import LIST_COLUMNS, DENSE, layer_columns, model_graph, parse_method, run_one
from .markdown import table

__all__ = ["compare", "to_csv", "read_results", "summary_markdown", "write_comparison", "parse_method",
           "layer_columns", "LIST_COLUMNS"]


def _data_for(kind, built, seed):
    if kind is None or not isinstance(kind, str):
        return kind  # caller's own (inputs, labels) or batches
    from netgraph.data import prune_batch

    return prune_batch(kind, built[1], seed, model=built[0])


def compare(model="vgg19", methods=("phew", "synflow", "synflow-l2", "random"), densities=(0.1, 0.05, 0.02, 0.01),
            seeds=1, *, input_shape=None, num_classes=None, data=None, progress: bool = False,
            max_flow: bool = True, callback=None, collapse: bool = False, offpath: str = "dense",
            layer_scale: str = "as_is") -> pd.DataFrame:
    """Build and measure masks for every method, density and seed.

    Parameters
    ----------
    model : str or torch.nn.Module
        A zoo name or ``"pkg.module:factory"`` (seed ``s`` initialises the model with ``s``
        and runs every method with ``s``), or a module (used as it is; give ``input_shape``).
    methods : str or sequence
        One method spec or several: ``"phew"``, ``"phew:bias=uniform"`` (an ablation) or ``(name, options)``.
    densities : sequence of float
        Kept fractions in (0, 1].
    seeds : int or sequence of int
        A count (seeds 0..n-1), a range, or explicit seeds. A method (with the same options),
        density or seed listed twice is refused (:mod:`analysis.experiments.grid`).
    input_shape : tuple, optional
        Required for user models; default: the model's own.
    num_classes : int, optional
        Number of outputs of named models (default: the model's).
    data : {"random", "digits"} or (inputs, labels), optional
        For data-dependent methods.
    progress : bool
        Show a progress bar over the runs.
    max_flow : bool
        Compute the max-flow metrics (minimum vertex cut, edge-disjoint paths).
    callback : callable, optional
        Called with each finished row (a dict).
    collapse : bool
        Also find each data-free method's layer-collapse margin per seed
        (:func:`analysis.experiments.collapse.collapse_margin`, bisection to 5%); the rows go
        to ``df.attrs["collapse"]`` and :func:`write_comparison` writes ``collapse.csv``,
        a summary section and the ``collapse_margin`` figure.
    offpath : {"dense", "magnitude"}
        Policy for the off-path parameters (see :func:`netgraph.sparsify`).
    layer_scale : {"as_is", "one"}
        Layer-scale factors in the graph as they are, or as 1 (see :func:`netgraph.from_torch`).

    Returns
    -------
    pandas.DataFrame
        One row per (model, method, density, seed).

    Raises
    ------
    InvalidInputError
        An empty method list, an unknown method or option, a density outside (0, 1].
    """
    if isinstance(methods, str):
        methods = [methods]
    specs = check_distinct_methods(parse_method(m) for m in methods)
    if not specs:
        raise InvalidInputError("the method list is empty; give at least one method, e.g. phew,synflow")
    dens = check_distinct("densities", [check_density(d) for d in densities])
    if not dens:
        raise InvalidInputError("the density list is empty")
    seed_list = seed_axis(seeds)
    from tqdm.auto import tqdm

    with compile_notice(progress):  # (a first compile of numba kernels says so: once per install)
        rows, margins = [], []
        bar = tqdm(total=len(specs) * len(dens) * len(seed_list), desc=f"compare {getattr(model, '__name__', model)}",
                   disable=not progress)
        for seed in seed_list:
            built = model_graph(model, input_shape, seed, num_classes, layer_scale)
            batch = None
            for label, name, opts in specs:
                if name != DENSE and get(name).needs_data:
                    if data is None:
                        raise InvalidInputError(f"method {name!r} needs data: pass data='random' or 'digits'")
                    batch = batch if batch is not None else _data_for(data, built, seed)
                for d in dens:
                    bar.set_postfix_str(f"{label} @ {d:g}, seed {seed}")
                    row = run_one(model, (label, name, opts), d, seed, data=batch, max_flow=max_flow, built=built,
                                 offpath=offpath).row
                    rows.append(row)
                    if callback is not None:
                        callback(row)
                    bar.update(1)
            if collapse:
                free = [(name, opts) for _, name, opts in specs if name != DENSE and not get(name).needs_data]
                margins += collapse_margins(built[1], free, seeds=(seed,), rtol=0.05)
    bar.close()
    df = pd.DataFrame(rows)
    if collapse:
        df.attrs["collapse"] = [{k: v for k, v in r.items() if k != "evaluations"} for r in margins]
    return df


#: Wall-clock columns: written apart from the results, so a results table is the same bytes
#: on every run with the same inputs.
TIMING_COLUMNS = ("seconds", "measure_seconds", "train_seconds")


def to_csv(df: pd.DataFrame, path, list_columns=LIST_COLUMNS, timings: bool = True) -> None:
    """Write a results table, list columns as JSON strings.

    With ``timings=False`` the wall-clock columns (:data:`TIMING_COLUMNS`) are left out, so
    that two runs with the same inputs write byte-identical files.
    """
    out = df.drop(columns=[c for c in TIMING_COLUMNS if c in df]) if not timings else df.copy()
    for c in list_columns:
        if c in out:
            out[c] = out[c].map(json.dumps)
    out.to_csv(path, index=False)


def read_results(path, list_columns=LIST_COLUMNS) -> pd.DataFrame:
    """Read a results CSV written by :func:`to_csv` (its ``list_columns`` parsed back); one
    clear line (:class:`~netgraph.errors.InvalidInputError`) for a file that is not one."""
    from netgraph.errors import InvalidInputError

    try:
        df = pd.read_csv(path)
        for c in list_columns:
            if c in df:
                df[c] = df[c].map(json.loads)
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError, TypeError) as exc:  # (pandas' parser errors are ValueErrors)
        raise InvalidInputError(f"{path} is not a results table of netgraph: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    missing = [c for c in RUN_KEYS if c not in df]
    if missing:
        raise InvalidInputError(f"{path} is not a results table of netgraph: no {', '.join(missing)} column(s)")
    return df


def _summary_columns(df) -> list:
    """The headline metrics of the metric table (plus the method's time) present in ``df``."""
    cols = [(m.key, m.key) for m in METRICS if m.headline] + [("seconds", "seconds")]
    return [(c, name) for c, name in cols if c in df]


def summary_markdown(df: pd.DataFrame) -> str:
    """A Markdown table of mean ± std per method and density."""
    cols = _summary_columns(df)
    lines = []
    for model, part in df.groupby("model", sort=False):
        n = part.groupby(["method", "target_density"]).size().max()
        lines.append(f"### {model} ({n} seed{'s' if n > 1 else ''} per cell; mean ± std)\n")
        rows = []
        for (method, d), cell in part.groupby(["method", "target_density"], sort=False):
            vals = []
            for c, _ in cols:
                x = pd.to_numeric(cell[c], errors="coerce")
                with np.errstate(invalid="ignore"):  # -inf (no path) in a cell: its mean is -inf, no sd
                    m, s = x.mean(), x.std()
                if np.isfinite(s) and s <= 1e-12 * max(1.0, abs(m)):  # equal values, rounding noise
                    s = 0.0
                fmt = "{:.4g}"
                vals.append(fmt.format(m) + ("" if not np.isfinite(s) or len(cell) < 2 else " ± " + fmt.format(s)))
            rows.append([method, f"{d:g}", *vals])
        lines += [table(["method", "target density", *(n for _, n in cols)], rows), ""]
    return "\n".join(lines)


#: What :func:`write_comparison` writes besides the figures.
TABLE_FILES = ("results.csv", "provenance.json", "summary.md", "collapse.csv")


def comparison_files(out_dir) -> list:
    """The files of ``out_dir`` that :func:`write_comparison` writes (tables and standard figures), if present."""
    from .. import plots

    stems = [*plots.standard_stems(), "collapse_margin"]
    names = list(TABLE_FILES) + [f"{s}.{fmt}" for s in stems for fmt in plots.FORMATS]
    return [os.path.join(out_dir, n) for n in names if os.path.isfile(os.path.join(out_dir, n))]


def write_comparison(df: pd.DataFrame, out_dir, formats=("png", "svg"), command: str | None = None) -> list:
    """Write ``results.csv``, ``provenance.json``, ``summary.md`` and the standard plots into ``out_dir``.

    Returns the list of files written.
    """
    from .. import plots

    os.makedirs(out_dir, exist_ok=True)
    written = []
    path = os.path.join(out_dir, "results.csv")
    to_csv(df, path)
    written.append(path)
    prov = provenance(command)
    path = os.path.join(out_dir, "provenance.json")
    with open(path, "w") as f:
        json.dump({**prov, "models": sorted(map(str, dict.fromkeys(df["model"])))}, f, indent=2)
    written.append(path)
    md = summary_markdown(df)
    md = (f"Made with:\n\n```\n{prov['command']}\n```\n\nnetgraph {prov['library_version']}"
          f" (commit {prov['git_commit'] or 'not a checkout'}), torch {prov['torch']}, numpy {prov['numpy']}.\n\n"
          + md)
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as f:
        f.write(md)
    written.append(path)
    for stem, fig in plots.standard_figures(df).items():
        written += plots.save(fig, os.path.join(out_dir, stem), formats)
    margins = df.attrs.get("collapse")
    if margins:
        path = os.path.join(out_dir, "collapse.csv")
        pd.DataFrame(margins).assign(options=lambda t: t["options"].map(json.dumps)).to_csv(path, index=False)
        written.append(path)
        lines = ["", "### Layer-collapse margin (largest density whose mask disconnects the net)", "",
                 table(["model", "method", "seed", "margin", "upper"],
                       [[r["model"], r["method"], r["seed"],
                         "never" if r["margin"] is None else format(r["margin"], ".3g"),
                         "-" if r["upper"] is None else format(r["upper"], ".3g")] for r in margins])]
        with open(os.path.join(out_dir, "summary.md"), "a") as f:
            f.write("\n".join(lines) + "\n")
        written += plots.save(plots.plot_collapse_margin(margins), os.path.join(out_dir, "collapse_margin"), formats)
    return written
