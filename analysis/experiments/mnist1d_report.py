"""The MNIST-1D study's statistics, claims table, Markdown report and figures.

* Accuracy per (model, density, method): mean over seeds with a 95% Student-t interval.
* Paired comparisons: the reference method (PHEW) minus each other method, per (model,
  density), paired by seed (same initialisation and batch order), paired t-test; Holm's
  correction over every comparison of the table (one family).
* "Learns fast": Spearman correlation, across the masks of one (model, density), between
  the log10 path-kernel trace and the training loss after the first epoch(s).
* "Wider layers generalize better": Spearman correlation, across the masks of one (model,
  density), between mean active width (and bottleneck fraction) and test accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import plots
from .markdown import by_cell, records, table
from .run import DENSE
from .stats import holm, mean_ci, paired_t, spearman_ci, verdict

#: Accuracy differences within this many points (both ends of the 95% interval) count as negligible.
MARGIN = 0.01
ALPHA = 0.05


def cell_summary(df: pd.DataFrame, value: str = "test_acc") -> pd.DataFrame:
    """Per (model, target_density, method): ``n``, ``mean``, ``low``, ``high`` (95% t interval)."""
    rows = []
    for (model, d, method), part in df.groupby(["model", "target_density", "method"], sort=False):
        mean, low, high = mean_ci(part[value].to_numpy())
        rows.append({"model": model, "target_density": d, "method": method, "n": len(part), "mean": mean,
                     "low": low, "high": high})
    return pd.DataFrame(rows)


def paired_comparisons(df: pd.DataFrame, reference: str = "phew", value: str = "test_acc") -> pd.DataFrame:
    """``reference`` minus every other sparse method per (model, density), paired by seed; Holm over all."""
    sparse = df[df["method"] != DENSE]
    rows = []
    for (model, d), cell in sparse.groupby(["model", "target_density"], sort=False):
        wide = cell.pivot(index="seed", columns="method", values=value)
        if reference not in wide:
            continue
        for rival in [m for m in dict.fromkeys(cell["method"]) if m != reference]:
            r = paired_t(wide[reference].to_numpy(), wide[rival].to_numpy())
            rows.append({"model": model, "target_density": d, "rival": rival, **r})
    out = pd.DataFrame(rows, columns=["model", "target_density", "rival", "n", "diff", "low", "high", "t", "p"])
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["verdict"] = [_paired_verdict(r) for r in out.itertuples()]
    return out


def _paired_verdict(r) -> str:
    if np.isnan(r.p_holm):
        return "cannot tell (fewer than 2 seeds)"
    if r.p_holm < ALPHA:
        return "holds" if r.diff > 0 else "does not hold (opposite)"
    if -MARGIN <= r.low and r.high <= MARGIN:
        return "does not hold (negligible)"
    return "cannot tell at this power"


#: Short verdicts of the effect-by-density table.
SHORT = {"holds": "holds", "does not hold (opposite)": "opposite", "does not hold (negligible)": "negligible",
         "cannot tell at this power": "can't tell"}


def claims_by_density(rows: list) -> str:
    """Markdown: one row per claim and model, one column per density: ``effect [95% interval] verdict``.

    Accuracy claims give PHEW minus the rival in points, correlation claims Spearman's rho.
    """
    dens = sorted({r["density"] for r in rows}, reverse=True)
    cells = {}
    for r in rows:
        cells.setdefault((r["claim"], r["model"]), {})[r["density"]] = \
            f"{r['value']} {SHORT.get(r['verdict'], r['verdict'])}"
    return table(["claim", "model", *(f"{d:g}" for d in dens)],
                 [[c, m, *(by.get(d, "") for d in dens)] for (c, m), by in cells.items()])


def _fmt(x, lo, hi, scale=1.0, digits=1, sign=True) -> str:
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if np.isnan(x):
        return "n/a"
    txt = f.format(x * scale)
    return txt + ("" if np.isnan(lo) else f" [{f.format(lo * scale)}, {f.format(hi * scale)}]")


def correlations(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Spearman ``rho`` of ``x`` vs ``y`` across the sparse masks of each (model, density)."""
    sparse = df[df["method"] != DENSE]
    rows = [{"model": model, "target_density": d, **spearman_ci(cell[x].to_numpy(), cell[y].to_numpy())}
            for (model, d), cell in sparse.groupby(["model", "target_density"], sort=False)]
    return pd.DataFrame(rows, columns=["model", "target_density", "n", "rho", "low", "high", "p"])


def claims(df: pd.DataFrame, paired: pd.DataFrame, early_epochs=(1,)) -> list:
    """The claims table: one row per claim and setting, with the effect, its interval and a verdict."""
    out = []
    for rival in ("synflow", "synflow-l2"):
        for r in paired[paired["rival"] == rival].itertuples():
            out.append({"claim": f"3. PHEW trains to better test accuracy than {rival}", "model": r.model,
                        "density": r.target_density,
                        "effect": f"{_fmt(r.diff, r.low, r.high, 100)} points (PHEW minus {rival}, n={r.n})",
                        "value": _fmt(r.diff, r.low, r.high, 100),
                        "test": f"paired t, Holm p = {r.p_holm:.3g}" if not np.isnan(r.p_holm) else "n/a",
                        "verdict": _paired_verdict(r)})
    for early_epoch in early_epochs:
        col = f"loss_epoch{early_epoch}"
        if col not in df:
            continue
        for r in correlations(df, "log10_path_kernel_trace", col).itertuples():
            out.append({"claim": f"learns fast: a higher path-kernel trace gives a lower loss after epoch {early_epoch}",
                        "model": r.model, "density": r.target_density,
                        "effect": f"Spearman rho {_fmt(r.rho, r.low, r.high, digits=2)} (n={r.n} masks)",
                        "value": _fmt(r.rho, r.low, r.high, digits=2),
                        "test": f"p = {r.p:.3g}" if not np.isnan(r.p) else "n/a",
                        "verdict": verdict(r.low, r.high, sign=-1)})
    for x, what in (("mean_width_fraction", "mean active width"), ("bottleneck_fraction", "bottleneck fraction")):
        for r in correlations(df, x, "test_acc").itertuples():
            out.append({"claim": f"wider layers generalize better: {what} vs test accuracy", "model": r.model,
                        "density": r.target_density,
                        "effect": f"Spearman rho {_fmt(r.rho, r.low, r.high, digits=2)} (n={r.n} masks)",
                        "value": _fmt(r.rho, r.low, r.high, digits=2),
                        "test": f"p = {r.p:.3g}" if not np.isnan(r.p) else "n/a",
                        "verdict": verdict(r.low, r.high, sign=1)})
    return out


def claims_summary(rows: list) -> list:
    """Per claim and model: how many densities give each verdict (``holds 3, cannot tell 2``)."""
    out = {}
    for r in rows:
        key = (r["claim"], r["model"])
        counts = out.setdefault(key, {})
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return [{"claim": c, "model": m, "verdicts over densities": ", ".join(f"{v}: {n}" for v, n in counts.items())}
            for (c, m), counts in out.items()]


def cell_table(cells: pd.DataFrame, digits: int = 3) -> str:
    """Markdown: one row per (model, density), one column per method, ``mean [low, high]``."""
    idx = cells.set_index(["model", "target_density", "method"])

    def value(model, d, m):
        if (model, d, m) not in idx.index:
            return ""
        r = idx.loc[(model, d, m)]
        return _fmt(r["mean"], r["low"], r["high"], digits=digits, sign=False)

    keys = [key for key, _ in cells.groupby(["model", "target_density"], sort=False)]
    return by_cell(keys, list(dict.fromkeys(cells["method"])), value)


def collapse_density(cells: pd.DataFrame, chance: float = 0.2) -> dict:
    """Per (model, method): the highest density whose mean accuracy is at most ``chance`` (else None)."""
    out = {}
    for (model, method), part in cells[cells["method"] != DENSE].groupby(["model", "method"], sort=False):
        low = part.loc[part["mean"] <= chance, "target_density"]
        out[(model, method)] = float(low.max()) if len(low) else None
    return out


def report(df, cells, paired, study, seconds, networks, args, command=None, figures=()) -> str:
    """The Markdown report ``mnist1d.md``; ``networks`` rows of model, weights, units; ``args`` the
    data generator's arguments."""
    c = study.config
    rows = claims(df, paired, study.early_epochs)
    dense = cells[cells["method"] == DENSE].set_index("model")
    nets = [{**n, "dense accuracy": _fmt(*dense.loc[n["model"], ["mean", "low", "high"]], digits=3, sign=False)
             if n["model"] in dense.index else "n/a"} for n in networks]
    n_tr = int(args["num_samples"] * args["train_split"])
    out = ["# Training study on MNIST-1D (generated)", ""]
    if command:
        out += ["Command:", "", f"```\n{command}\n```", ""]
    took = (f"in {seconds / 60:.1f} min ({study.workers} worker process(es), one thread each)" if seconds is not None
            else "(this report was rebuilt from `mnist1d_results.csv` without training: `--report-only`; the seconds "
                 "of every run are in `mnist1d_timings.csv`)")
    out += [f"{len(df)} training runs {took}; {study.seeds} seed(s) (seed = initialisation, mask and batch order).",
            "",
            f"Data: MNIST-1D generated offline by `mnist1d.data.make_dataset` with arguments `{args}` "
            f"({n_tr} training / {args['num_samples'] - n_tr} test signals); SNIP and GraSP prune on a fixed "
            f"class-balanced batch of {study.prune_per_class} training signals per class (seed {study.prune_seed}).", "",
            f"Training: {c.optimizer} (lr {c.lr}, weight decay {c.weight_decay}), batch {c.batch_size}, cosine "
            f"schedule, {c.epochs} epochs; masks kept by `torch.nn.utils.prune`.", "",
            "## Networks", "", records(nets, ["model", "weights", "units", "dense accuracy"]),
            "", "(weights: prunable conv and linear weights; units: outputs of those layers, summed)", "",
            "## Claims", "",
            f"Verdicts: accuracy claims hold when PHEW is better with Holm-adjusted p < {ALPHA} over all "
            f"{int(paired['p_holm'].notna().sum())} paired comparisons with a test, do not hold when it is significantly worse or the 95% interval "
            f"of the difference lies within ±{MARGIN * 100:g} point, and cannot be told otherwise. Correlation "
            "claims hold when the 95% interval of Spearman's rho lies on the claimed side of 0. Intervals are "
            "unadjusted 95% intervals; zero-variance differences: all-zero is a tie (p = 1).", "",
            records(claims_summary(rows), ["claim", "model", "verdicts over densities"]), "",
            "Effect and 95% interval by density (accuracy claims: PHEW minus the rival, in points; correlation "
            "claims: Spearman's rho), with the verdict:", "", claims_by_density(rows), "",
            records(rows, ["claim", "model", "density", "effect", "test", "verdict"]),
            "", "## Test accuracy: mean [95% interval] over seeds", "", cell_table(cells), "",
            "## Paired comparisons (PHEW minus rival, accuracy points, Holm over the whole table)", "",
            records([{"model": r.model, "density": r.target_density, "rival": r.rival,
                  "difference": _fmt(r.diff, r.low, r.high, 100), "p": f"{r.p:.3g}", "Holm p": f"{r.p_holm:.3g}",
                  "verdict": r.verdict} for r in paired.itertuples()],
                ["model", "density", "rival", "difference", "p", "Holm p", "verdict"]), "",
            "## Collapse (highest density with mean accuracy <= 20%)", "",
            records([{"model": m, "method": k, "collapses at": "-" if v is None else f"{v:g}"}
                 for (m, k), v in collapse_density(cells).items()], ["model", "method", "collapses at"]), "",
            "## Figures", ""]
    out += [f"![{f}]({f}.png)" for f in figures]
    return "\n".join(out) + "\n"


def study_figures(df, cells, study) -> dict:
    """Accuracy vs density with interval bands; early loss vs trace; width vs accuracy."""
    d = sorted(set(study.densities))[len(study.densities) // 2]
    col = f"loss_epoch{study.early_epochs[0]}"
    return {"mnist1d_accuracy": plots.plot_accuracy_bands(cells),
            "mnist1d_early_loss_vs_trace": plots.plot_scatter_by_method(
                df, "log10_path_kernel_trace", col, d, ylabel=f"training loss in epoch {study.early_epochs[0]} (nats)"),
            "mnist1d_width_vs_accuracy": plots.plot_scatter_by_method(df, "mean_width_fraction", "test_acc", d,
                                                                      ylabel="test accuracy")}
