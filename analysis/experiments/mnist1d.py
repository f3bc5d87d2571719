"""The training study on MNIST-1D: masks of every method, trained, with confidence intervals.

Every (model, method, density, seed) is one :func:`~analysis.experiments.run.run_one` (mask
and metrics row) followed by one :func:`~analysis.experiments.training.train`; runs may go
to ``workers`` processes (each single-threaded), collected in the grid's fixed order, so
the result table is byte-identical whatever the number of workers. Wall-clock columns go to
``mnist1d_timings.csv``. The statistics and the report are in :mod:`.mnist1d_report`.

``netgraph reproduce --study mnist1d [--quick]`` runs :func:`run_mnist1d`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd
import torch

from netgraph import zoo1d
from netgraph.data import MNIST1D_ARGS, balanced_batch, mnist1d
from netgraph.errors import InvalidInputError
from netgraph.sparsifiers import get
from netgraph.zoo import init_weights

from .. import plots
from ..table import RUN_KEYS
from .compare import TIMING_COLUMNS, read_results, to_csv
from .mnist1d_report import cell_summary, claims, paired_comparisons, report, study_figures
from .run import DENSE, layer_columns, model_graph, parse_method, run_one
from .training import TrainConfig, train

#: The study's training settings: Adam, cosine schedule, no weight decay (see docs/reproduction.md).
MNIST1D_TRAIN = TrainConfig(epochs=12, batch_size=128, lr=0.01, weight_decay=0.0, optimizer="adam")
#: The list columns of the results table (JSON in the CSV).
CURVE_COLUMNS = ("layer_widths", "loss_curve", "acc_curve")
KEYS = RUN_KEYS
#: Wall-clock columns (in ``mnist1d_timings.csv``, never in the results table); ``cpu_seconds`` is
#: the run's processor time (mask, metrics and training), what an idle machine would take.
TIMINGS = TIMING_COLUMNS + ("cpu_seconds",)


@dataclass(frozen=True)
class Mnist1dStudy:
    """The grid, the training settings and the data of the MNIST-1D study.

    ``data`` holds MNIST-1D generator arguments that replace :data:`netgraph.data.MNIST1D_ARGS`
    (pairs, e.g. ``(("num_samples", 500),)``); ``prune_per_class`` training signals of each
    class, drawn once with ``prune_seed``, are the pruning batch of SNIP and GraSP.
    """

    models: tuple = tuple(zoo1d.MODELS)
    methods: tuple = ("phew", "phew:bias=uniform", "phew:bias=inverse", "synflow", "synflow-l2", "snip", "grasp",
                      "random", "random:distribution=erk", "magnitude")
    densities: tuple = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001)
    seeds: int = 5
    config: TrainConfig = field(default_factory=lambda: MNIST1D_TRAIN)
    data: tuple = ()
    prune_per_class: int = 10
    prune_seed: int = 0
    early_epochs: tuple = (1, 2)
    workers: int = 2
    reference: str = "phew"

    def grid(self) -> list:
        """The runs in their fixed order: ``(model, method spec, density, seed)``."""
        specs = [parse_method(m) for m in self.methods]
        return [(model, spec, d, seed) for model in self.models for seed in range(self.seeds)
                for spec, d in [((DENSE, DENSE, {}), 1.0)] + [(s, d) for s in specs for d in self.densities]]


QUICK_MNIST1D = Mnist1dStudy(models=("mnist1d_mlp", "mnist1d_cnn"), methods=("phew", "synflow-l2"),
                             densities=(0.1,), seeds=2, data=(("num_samples", 400),), prune_per_class=2,
                             config=TrainConfig(epochs=2, batch_size=64, lr=3e-3, weight_decay=0.0, optimizer="adam"),
                             early_epochs=(1,), workers=1)


def build_model(name: str, seed: int = 0) -> torch.nn.Module:
    """An MNIST-1D network of :data:`netgraph.zoo1d.MODELS`, with the zoo's seeded initialisation."""
    if name not in zoo1d.MODELS:
        raise InvalidInputError(f"unknown MNIST-1D model {name!r}; known: {', '.join(zoo1d.MODELS)}")
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        model = zoo1d.MODELS[name][0]()
    return init_weights(model, seed)


@lru_cache(maxsize=4)
def _built(name: str, seed: int):
    net, g, _ = model_graph(build_model(name, seed), zoo1d.INPUT_SHAPE)
    return net, g, name


@lru_cache(maxsize=2)
def _data(cache_dir, overrides: tuple, per_class: int, prune_seed: int):
    data = mnist1d(cache_dir, **dict(overrides))
    return data, balanced_batch(data[0], data[1], per_class, prune_seed)


def _run_task(task) -> dict:
    """One training run (in a worker or inline): mask, metrics row, training, one result row."""
    (model, (label, name, opts), density, seed), (cache_dir, overrides, per_class, prune_seed, config, early) = task
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = time.process_time()
    try:
        data, batch = _data(cache_dir, overrides, per_class, prune_seed)
        built = _built(model, seed)
        needs = name != DENSE and get(name).needs_data
        res = run_one(model, (label, name, opts), density, seed, data=batch if needs else None, max_flow=False,
                      built=built)
        rec = res.row
        tr = train(built[0], res.masks, data, config, seed)
    finally:
        torch.set_num_threads(threads)
    row = {"model": model, "method": label, "target_density": density, "seed": seed, "density": rec["density"],
           "log10_path_kernel_trace": rec["log10_path_kernel_trace"], "bottleneck_width": rec["bottleneck_width"],
           "bottleneck_fraction": rec["bottleneck_fraction"], "mean_width_fraction": rec["mean_width_fraction"],
           "effective_fraction": rec["effective_fraction"], "test_acc": tr["final_test_acc"],
           "final_train_loss": tr["final_train_loss"]}
    for e in early:
        row[f"loss_epoch{e}"] = tr["train_loss"][e] if e < len(tr["train_loss"]) else float("nan")
    row.update({"layer_widths": rec["layer_widths"], "loss_curve": tr["train_loss"], "acc_curve": tr["test_acc"],
                "seconds": rec["seconds"], "measure_seconds": rec["measure_seconds"], "train_seconds": tr["seconds"],
                "cpu_seconds": time.process_time() - cpu})
    return row


def _init_worker():
    torch.set_num_threads(1)


def execute(study: Mnist1dStudy, cache_dir, progress: bool = False) -> pd.DataFrame:
    """Run the study's grid; the rows come back in :meth:`Mnist1dStudy.grid` order."""
    from tqdm.auto import tqdm

    shared = (None if cache_dir is None else os.fspath(cache_dir), tuple(study.data), study.prune_per_class,
              study.prune_seed, study.config, tuple(study.early_epochs))
    _data(*shared[:4])  # generate (and cache) the data once, before any worker starts
    tasks = [(run, shared) for run in study.grid()]
    bar = tqdm(total=len(tasks), desc="MNIST-1D study", disable=not progress)
    rows = []
    if study.workers <= 1:
        for task in tasks:
            rows.append(_run_task(task))
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(study.workers, mp_context=ctx, initializer=_init_worker) as pool:
            for row in pool.map(_run_task, tasks, chunksize=1):  # map keeps the grid's order
                rows.append(row)
                bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


def run_mnist1d(study: Mnist1dStudy = Mnist1dStudy(), out_dir="docs/reproduction", progress=False,
                command: str | None = None, report_only: bool = False) -> pd.DataFrame:
    """Run the MNIST-1D study; write the tables, ``mnist1d.md`` and the figures into ``out_dir``.

    Files: ``mnist1d_results.csv`` (byte-identical across runs), ``mnist1d_timings.csv``
    (wall-clock seconds per run), ``mnist1d_cells.csv`` (mean accuracy and its 95% interval
    per cell), ``mnist1d_paired.csv`` (the paired comparisons), ``mnist1d.md``, PNG figures,
    and the generated data under ``out_dir/data``. With ``report_only`` nothing is trained:
    the cells, comparisons, report and figures are rebuilt from ``out_dir``'s
    ``mnist1d_results.csv`` (the same bytes as after the run that wrote it).
    """
    if report_only:
        path = os.path.join(out_dir, "mnist1d_results.csv")
        if not os.path.exists(path):
            raise InvalidInputError(f"{path} does not exist: --report-only rebuilds the report of an earlier run "
                                    "of this study in the same --out folder; run the study first")
        df = read_results(path, CURVE_COLUMNS)
        saved = set(zip(df["model"], df["method"], df["target_density"].astype(float), df["seed"].astype(int)))
        grid = {(m, spec[0], float(d), int(seed)) for m, spec, d, seed in study.grid()}
        if saved != grid:
            raise InvalidInputError(f"{path} holds {len(saved)} runs that are not this study's grid of {len(grid)} "
                                    "(models, methods, densities, seeds); rebuild the report with the settings of "
                                    "the run that wrote it (--quick for a quick run)")
        seconds = None
    else:
        t0 = time.perf_counter()
        df = execute(study, os.path.join(out_dir, "data"), progress)
        seconds = time.perf_counter() - t0
        os.makedirs(out_dir, exist_ok=True)
        to_csv(df.drop(columns=[c for c in TIMINGS if c in df]), os.path.join(out_dir, "mnist1d_results.csv"),
               list_columns=CURVE_COLUMNS, timings=False)
        df[list(KEYS) + [c for c in TIMINGS if c in df]].to_csv(
            os.path.join(out_dir, "mnist1d_timings.csv"), index=False)
    cells = cell_summary(df)
    cells.to_csv(os.path.join(out_dir, "mnist1d_cells.csv"), index=False, float_format="%.6g")
    paired = paired_comparisons(df, study.reference)
    paired.to_csv(os.path.join(out_dir, "mnist1d_paired.csv"), index=False, float_format="%.6g")
    figs = study_figures(df, cells, study)
    for stem, fig in figs.items():
        plots.save(fig, os.path.join(out_dir, stem), ("png",))
    with open(os.path.join(out_dir, "mnist1d.md"), "w") as f:
        f.write(report(df, cells, paired, study, seconds, network_sizes(study.models), data_args(study), command,
                       list(figs)))
    return df


def network_sizes(models) -> list:
    """``{"model", "weights" (prunable), "units" (hidden and output)}`` of each network (seed 0)."""
    out = []
    for name in models:
        net, g, _ = _built(name, 0)
        out.append({"model": name, "weights": sum(int(m.weight.numel()) for m in net.modules()
                                                  if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))),
                    "units": sum(layer_columns(g, None)["layer_units"])})
    return out


def mnist1d_claims(df: pd.DataFrame, study: Mnist1dStudy) -> list:
    """The claims table as ``{"claim", "measured", "holds"}`` records (one per claim and setting)."""
    return [{"claim": f"{c['claim']} ({c['model']}, density {c['density']:g})", "measured": f"{c['effect']}; {c['test']}",
             "holds": c["verdict"]} for c in claims(df, paired_comparisons(df, study.reference), study.early_epochs)]


def data_args(study: Mnist1dStudy) -> dict:
    """The MNIST-1D generator's arguments of a study (the defaults with its overrides)."""
    return {**MNIST1D_ARGS, **dict(study.data)}


__all__ = ["Mnist1dStudy", "QUICK_MNIST1D", "MNIST1D_TRAIN", "run_mnist1d", "mnist1d_claims", "execute", "build_model", "data_args"]
