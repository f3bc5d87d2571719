"""The paper's claims, measured: a data-free topology study and a training study.

PHEW (Patil & Dovrolis, 2021) claims that (1) SynFlow-L2 maximises the path-kernel trace at
a given density but leaves bottleneck (narrow) layers; (2) PHEW reaches a path-kernel trace
close to SynFlow-L2's with layers nearly as wide as the dense network; (3) PHEW therefore
trains to better accuracy than SynFlow and SynFlow-L2 across densities.

``netgraph reproduce --study topology --out DIR`` and ``--study training`` run the studies
below, write CSV tables, Markdown summaries with a claims table, and figures. ``--quick``
runs the reduced versions the test suite uses. ``--study mnist1d`` is the training study on
MNIST-1D with confidence intervals and paired tests (:mod:`.mnist1d`); ``--study modern`` the
topology study on torchvision's modern architectures (:mod:`.modern`); :func:`run_study` runs
any study by name.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from netgraph._numba import compile_notice
from netgraph.data import digits, digits_prune_batch
from netgraph.errors import InvalidInputError
from netgraph.sparsifiers import get

from .. import plots
from ..table import RUN_KEYS
from .compare import TIMING_COLUMNS, compare, to_csv
from .markdown import by_cell, table
from .run import DENSE, model_graph, parse_method, run_one
from .training import TrainConfig, train

#: The studies of `netgraph reproduce --study`.
STUDIES = ("topology", "training", "mnist1d", "modern")

# -- studies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TopologyStudy:
    models: tuple = ("vgg19", "resnet20", "resnet18")
    densities: tuple = (0.1, 0.05, 0.02, 0.01, 0.005, 0.001)
    methods: tuple = ("phew", "synflow", "synflow-l2", "random", "magnitude", "phew:bias=uniform",
                      "phew:bias=inverse")
    seeds: int = 3


@dataclass(frozen=True)
class TrainingStudy:
    models: tuple = ("digits_mlp", "digits_cnn")
    methods: tuple = ("phew", "synflow", "synflow-l2", "random", "magnitude", "snip", "grasp")
    densities: tuple = (0.2, 0.1, 0.05, 0.02, 0.01)
    seeds: int = 5
    config: TrainConfig = field(default_factory=TrainConfig)
    curve_density: float = 0.05
    early_epochs: tuple = (1, 3)


QUICK_TOPOLOGY = TopologyStudy(models=("resnet20",), densities=(0.05, 0.01),
                               methods=("phew", "synflow-l2", "random", "phew:bias=uniform"), seeds=1)
QUICK_TRAINING = TrainingStudy(models=("digits_mlp",), methods=("phew", "synflow-l2", "random", "snip"),
                               densities=(0.1,), seeds=1, config=TrainConfig(epochs=3), curve_density=0.1)


# -- topology ---------------------------------------------------------------------------


def run_topology(study: TopologyStudy = TopologyStudy(), out_dir="docs/reproduction", progress=False,
                 command: str | None = None) -> pd.DataFrame:
    """Run the data-free study; write ``topology_results.csv``, ``topology.md`` and figures."""
    t0 = time.perf_counter()
    frames = [compare(m, study.methods, study.densities, study.seeds, progress=progress) for m in study.models]
    df = pd.concat(frames, ignore_index=True)
    seconds = time.perf_counter() - t0
    os.makedirs(out_dir, exist_ok=True)
    _write_tables(df, out_dir, "topology")
    figs = topology_figures(df)
    for stem, fig in figs.items():
        plots.save(fig, os.path.join(out_dir, stem), ("png",))
    with open(os.path.join(out_dir, "topology.md"), "w") as f:
        f.write(topology_report(df, seconds, command, list(figs)))
    return df


def _write_tables(df, out_dir, study, **kw):
    """``<study>_results.csv`` (byte-identical across runs) and ``<study>_timings.csv``."""
    to_csv(df, os.path.join(out_dir, f"{study}_results.csv"), timings=False, **kw)
    keys = list(RUN_KEYS)
    cols = keys + [c for c in TIMING_COLUMNS if c in df]
    df[cols].to_csv(os.path.join(out_dir, f"{study}_timings.csv"), index=False)


def topology_figures(df: pd.DataFrame) -> dict:
    figs = {}
    for model in dict.fromkeys(df["model"]):
        part = df[(df["model"] == model) & df["method"].isin(["phew", "synflow-l2"])]
        if len(part):
            figs[f"widths_{model}"] = plots.plot_width_profile(part)
    for metric, stem, opts in (("log10_path_kernel_trace", "path_kernel_trace", {}),
                               ("bottleneck_width", "bottleneck", {}),
                               ("mean_width_fraction", "mean_width", {}),
                               ("effective_density", "effective_density", {"logy": True, "diagonal": True})):
        figs[stem] = plots.plot_metric_grid(df, metric, **opts)
    return figs


def _cell_means(df, metric):
    return df.groupby(["model", "target_density", "method"])[metric].mean().unstack("method")


def topology_claims(df: pd.DataFrame) -> list:
    """Claims 1 and 2 with the measured numbers and a verdict each."""
    trace = _cell_means(df.replace([np.inf, -np.inf], np.nan), "log10_path_kernel_trace")
    width = _cell_means(df, "mean_width_fraction")
    bott = _cell_means(df, "bottleneck_fraction")
    claims = []
    best = trace.idxmax(axis=1)
    n = len(best)
    wins = int((best == "synflow-l2").sum())
    others = ", ".join(f"{m} at {d:g} ({b})" for (m, d), b in best.items() if b != "synflow-l2")
    claims.append({
        "claim": "1a. SynFlow-L2 has the highest path-kernel trace at a given density",
        "measured": f"highest in {wins} of {n} (model, density) cells" + (f"; otherwise: {others}" if others else ""),
        "holds": "yes" if wins == n else ("mostly" if wins >= 0.75 * n else "no"),
    })
    gap_w = (width["phew"] - width["synflow-l2"])
    claims.append({
        "claim": "1b. SynFlow-L2 leaves bottleneck (narrow) layers",
        "measured": (f"mean active width SynFlow-L2 {width['synflow-l2'].min():.0%}-{width['synflow-l2'].max():.0%} of "
                     f"dense vs PHEW {width['phew'].min():.0%}-{width['phew'].max():.0%}; narrowest layer "
                     f"(bottleneck) SynFlow-L2 {bott['synflow-l2'].min():.0%}-{bott['synflow-l2'].max():.0%} of its "
                     f"dense width vs PHEW {bott['phew'].min():.0%}-{bott['phew'].max():.0%}"),
        "holds": "yes" if (gap_w > 0.05).mean() >= 0.75 else ("mostly" if (gap_w > 0).mean() >= 0.75 else "no"),
    })
    gap = trace["synflow-l2"] - trace["phew"]
    if "random" in trace:
        span = (trace["synflow-l2"] - trace["random"]).replace(0, np.nan)
        closes = ((trace["phew"] - trace["random"]) / span).median()
        closes_txt = f"; PHEW covers a median {closes:.0%} of the log-distance from random to SynFlow-L2"
    else:
        closes_txt = ""
    claims.append({
        "claim": "2a. PHEW's path-kernel trace is close to SynFlow-L2's",
        "measured": (f"PHEW is {gap.min():.1f} to {gap.max():.1f} decades below SynFlow-L2 (median {gap.median():.1f}); "
                     f"the gap grows as density falls{closes_txt}"),
        "holds": "yes" if gap.max() < 1 else ("partly" if gap.median() < 3 else "no"),
    })
    claims.append({
        "claim": "2b. PHEW's layers are nearly as wide as the dense network's",
        "measured": (f"PHEW's mean active width is {width['phew'].min():.0%} to {width['phew'].max():.0%} of dense "
                     f"(SynFlow-L2: {width['synflow-l2'].min():.0%} to {width['synflow-l2'].max():.0%})"),
        "holds": "yes" if width["phew"].min() >= 0.9 else ("mostly" if width["phew"].median() >= 0.9 else "no"),
    })
    return claims


def _claims_md(claims) -> str:
    return table(["claim", "measured", "holds here"], [[c["claim"], c["measured"], c["holds"]] for c in claims])


def _metric_table(df, metric, fmt="{:.2f}") -> str:
    t = df.groupby(["model", "target_density", "method"], sort=False)[metric].agg(["mean", "std"])

    def value(model, d, m):
        if (model, d, m) not in t.index:
            return ""
        mu, sd = t.loc[(model, d, m)]
        return fmt.format(mu) + ("" if not np.isfinite(sd) else " ± " + fmt.format(sd))

    keys = [key for key, _ in df.groupby(["model", "target_density"], sort=False)]
    return by_cell(keys, list(dict.fromkeys(df["method"])), value)


def topology_report(df, seconds, command=None, figures=()) -> str:
    seeds = int(df.groupby(["model", "method", "target_density"]).size().max())
    out = ["# Data-free topology study (generated)", ""]
    if command:
        out += ["Command:", "", f"```\n{command}\n```", ""]
    out += [f"{len(df)} runs ({df['model'].nunique()} models, {df['method'].nunique()} methods, "
            f"{df['target_density'].nunique()} densities, {seeds} seeds) in {seconds / 60:.1f} min.", "",
            "## Claims", "", _claims_md(topology_claims(df)), "",
            "## log10 path-kernel trace (mean ± sd over seeds)", "", _metric_table(df, "log10_path_kernel_trace"), "",
            "## Bottleneck width (fewest active units in a hidden layer)", "",
            _metric_table(df, "bottleneck_width", "{:.1f}"), "",
            "## Mean active width (fraction of dense, averaged over layers)", "",
            _metric_table(df, "mean_width_fraction", "{:.3f}"), "",
            "## Effective fraction (kept weights on an input-output path)", "",
            _metric_table(df, "effective_fraction", "{:.3f}"), "",
            "## log10 input-output paths", "", _metric_table(df, "log10_paths"), "",
            "## Figures", ""]
    out += [f"![{f}]({f}.png)" for f in figures]
    return "\n".join(out) + "\n"


# -- training ---------------------------------------------------------------------------


def run_training(study: TrainingStudy = TrainingStudy(), out_dir="docs/reproduction", progress=False,
                 command: str | None = None) -> pd.DataFrame:
    """Run the training study on scikit-learn's digits; write CSV, ``training.md``, figures."""
    from tqdm.auto import tqdm

    specs = [parse_method(m) for m in study.methods]
    data = digits((1, 8, 8))
    total = len(study.models) * study.seeds * (1 + len(specs) * len(study.densities))
    bar = tqdm(total=total, desc="training study", disable=not progress)
    rows = []
    t0 = time.perf_counter()
    for model_name in study.models:
        for seed in range(study.seeds):
            built = model_graph(model_name, None, seed)
            prune_batch = digits_prune_batch((1, 8, 8), per_class=10, seed=seed)
            runs = [((DENSE, DENSE, {}), 1.0)] + [(spec, d) for spec in specs for d in study.densities]
            for (label, name, opts), d in runs:
                bar.set_postfix_str(f"{model_name} {label} @ {d:g}, seed {seed}")
                needs = name != DENSE and get(name).needs_data
                res = run_one(model_name, (label, name, opts), d, seed, data=prune_batch if needs else None,
                              max_flow=False, built=built)
                rec = res.row
                tr = train(built[0], res.masks, data, study.config, seed)
                row = {"model": model_name, "method": label, "target_density": d, "seed": seed,
                       "density": rec["density"], "log10_path_kernel_trace": rec["log10_path_kernel_trace"],
                       "bottleneck_width": rec["bottleneck_width"], "mean_width_fraction": rec["mean_width_fraction"],
                       "effective_fraction": rec["effective_fraction"], "test_acc": tr["final_test_acc"],
                       "final_train_loss": tr["final_train_loss"], "train_seconds": tr["seconds"],
                       "loss_curve": tr["train_loss"], "acc_curve": tr["test_acc"]}
                for e in study.early_epochs:
                    if e < len(tr["train_loss"]):
                        row[f"loss_epoch{e}"] = tr["train_loss"][e]
                rows.append(row)
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    os.makedirs(out_dir, exist_ok=True)
    _write_tables(df, out_dir, "training", list_columns=("loss_curve", "acc_curve"))
    figs = training_figures(df, study)
    for stem, fig in figs.items():
        plots.save(fig, os.path.join(out_dir, stem), ("png",))
    with open(os.path.join(out_dir, "training.md"), "w") as f:
        f.write(training_report(df, study, seconds, command, list(figs)))
    return df


def training_figures(df, study: TrainingStudy) -> dict:
    return {"accuracy_vs_density": plots.plot_accuracy(df),
            "loss_curves": plots.plot_loss_curves(df, study.curve_density)}


def training_claims(df, study: TrainingStudy) -> list:
    from scipy.stats import ttest_ind

    claims = []
    sparse = df[df["method"] != "dense"]
    cells = list(sparse.groupby(["model", "target_density"]))
    for rival in ("synflow", "synflow-l2"):
        if rival not in set(sparse["method"]) or "phew" not in set(sparse["method"]):
            continue
        better = sig_better = sig_worse = 0
        diffs = []
        for (_, _), cell in cells:
            a = cell.loc[cell["method"] == "phew", "test_acc"].to_numpy()
            b = cell.loc[cell["method"] == rival, "test_acc"].to_numpy()
            diffs.append(a.mean() - b.mean())
            better += a.mean() > b.mean()
            if len(a) > 1 and len(b) > 1 and (a.std() > 0 or b.std() > 0):
                p = ttest_ind(a, b, equal_var=False).pvalue
                sig_better += bool(p < 0.05 and a.mean() > b.mean())
                sig_worse += bool(p < 0.05 and a.mean() < b.mean())
        n = len(cells)
        claims.append({
            "claim": f"3. PHEW trains to better test accuracy than {rival}",
            "measured": (f"PHEW's mean accuracy is higher in {better} of {n} (model, density) cells "
                         f"(significantly, Welch p < 0.05: {sig_better}; significantly lower: {sig_worse}); "
                         f"mean difference {np.mean(diffs) * 100:+.1f} points, range "
                         f"{min(diffs) * 100:+.1f} to {max(diffs) * 100:+.1f}"),
            "holds": "yes" if better == n else ("mostly" if better >= 0.6 * n else "no"),
        })
    e = study.early_epochs[0]
    col = f"loss_epoch{e}"
    if col in sparse and {"phew", "synflow-l2", "random"} <= set(sparse["method"]):
        m = sparse.groupby(["model", "target_density", "method"])[col].mean().unstack("method")
        faster_than_random = int((m["phew"] < m["random"]).sum())
        vs_l2 = (m["phew"] - m["synflow-l2"])
        claims.append({
            "claim": f"learns fast: PHEW's training loss after {e} epoch(s) is close to SynFlow-L2's and below random's",
            "measured": (f"below random in {faster_than_random} of {len(m)} cells; PHEW minus SynFlow-L2: "
                         f"{vs_l2.min():+.3f} to {vs_l2.max():+.3f} nats (median {vs_l2.median():+.3f})"),
            "holds": "yes" if faster_than_random == len(m) and vs_l2.median() < 0.1 else
                     ("partly" if faster_than_random >= 0.6 * len(m) else "no"),
        })
    return claims


def training_report(df, study: TrainingStudy, seconds, command=None, figures=()) -> str:
    out = ["# Training study on scikit-learn digits (generated)", ""]
    if command:
        out += ["Command:", "", f"```\n{command}\n```", ""]
    c = study.config
    out += [f"{len(df)} training runs in {seconds / 60:.1f} min: models {', '.join(study.models)}; "
            f"{study.seeds} seeds; SGD (lr {c.lr}, momentum {c.momentum}, Nesterov {c.nesterov}, weight decay "
            f"{c.weight_decay}, batch {c.batch_size}, cosine schedule, {c.epochs} epochs); digits 8x8, "
            "1,257 training / 540 test images (fixed stratified split); SNIP and GraSP see 10 training images "
            "per class.", "",
            "## Claims", "", _claims_md(training_claims(df, study)), "",
            "## Test accuracy (mean ± sd over seeds)", "", _metric_table(df, "test_acc", "{:.3f}"), ""]
    for e in study.early_epochs:
        col = f"loss_epoch{e}"
        if col in df:
            out += [f"## Training loss after epoch {e}", "", _metric_table(df, col, "{:.3f}"), ""]
    out += ["## log10 path-kernel trace of the masks", "", _metric_table(df, "log10_path_kernel_trace"), "",
            "## Bottleneck width of the masks", "", _metric_table(df, "bottleneck_width", "{:.1f}"), "",
            "## Figures", ""]
    out += [f"![{f}]({f}.png)" for f in figures]
    return "\n".join(out) + "\n"


def run_study(name: str, quick: bool = False, out_dir="docs/reproduction", progress=False,
              command: str | None = None, report_only: bool = False) -> tuple:
    """Run the study ``name`` of :data:`STUDIES` (its quick version with ``quick``).

    ``report_only`` (the ``mnist1d`` study only) rebuilds its report from ``out_dir``'s saved
    results instead of training.

    Returns ``(results table, claims)``, each claim a dict with ``claim``, ``measured`` and
    ``holds``.
    """
    with compile_notice(progress):  # (a first compile of numba kernels says so: once per install)
        if report_only and name != "mnist1d":
            raise InvalidInputError(f"report_only is available for the mnist1d study, not {name!r}")
        if name == "topology":
            df = run_topology(QUICK_TOPOLOGY if quick else TopologyStudy(), out_dir, progress, command)
            return df, topology_claims(df)
        if name == "training":
            cfg = QUICK_TRAINING if quick else TrainingStudy()
            df = run_training(cfg, out_dir, progress, command)
            return df, training_claims(df, cfg)
        if name == "mnist1d":
            from .mnist1d import QUICK_MNIST1D, Mnist1dStudy, mnist1d_claims, run_mnist1d

            cfg = QUICK_MNIST1D if quick else Mnist1dStudy()
            df = run_mnist1d(cfg, out_dir, progress, command, report_only=report_only)
            return df, mnist1d_claims(df, cfg)
        if name == "modern":
            from .modern import QUICK_MODERN, ModernStudy, run_modern
            from .modern_report import claims as modern_claims

            cfg = QUICK_MODERN if quick else ModernStudy()
            df = run_modern(cfg, out_dir, progress, command)
            return df, modern_claims(df)
    from netgraph._validate import check_choice

    check_choice("study", name, STUDIES)


__all__ = ["run_study", "STUDIES", "TopologyStudy", "TrainingStudy", "QUICK_TOPOLOGY", "QUICK_TRAINING", "run_topology", "run_training",
           "topology_claims", "training_claims"]
