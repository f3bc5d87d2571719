"""The topology study on modern architectures: where the methods put their bottlenecks.

The data-free topology study (:mod:`.reproduce`) measured the PHEW paper's claims on VGG
and ResNets. This study asks the same questions of the architectures that replaced them,
traced from torchvision (architecture only, seeded initialisation, nothing downloaded):
MobileNetV2 and EfficientNet-B0 (depthwise separable inverted residuals, squeeze-and-
excitation gates), ResNeXt-50 (grouped convs), DenseNet-121 (concatenating dense blocks),
ConvNeXt-T (7x7 depthwise conv, MLP of Linears, layer scale) and ViT-B/16 (attention and
MLP blocks). Methods: PHEW, SynFlow, SynFlow-L2, random (uniform per layer) and ERK, SNIP
(on a seeded Gaussian batch: no real data).

Every (model, method, density, seed) is one :func:`~analysis.experiments.run.run_one`
(the topology metrics of the metric table: connectivity, widths, bottleneck, paths and the
path-kernel trace; spectral, path-norm and max-flow metrics are skipped for cost). Each
layer gets a block type from the graph's structure (:func:`layer_types`: depthwise,
grouped, 1x1 or kxk conv, attention value and output projection, MLP linear, stem,
classifier), and the per-layer active widths of each run are summed by block type
(:func:`block_widths`). The collapse density of each (model, method, seed) is found by
bisection in log density, starting from the bracket the grid's masks give
(:func:`~analysis.experiments.collapse.collapse_margin`).

Densities are fractions of the graph's layer weights (``graph_density``): off-path
parameters (SE gate convs, attention query/key rows), kept dense by the library's policy,
are not counted (:func:`~analysis.experiments.collapse.sparsify_density`); ViT-B/16's
query/key rows alone are 16% of its conv/linear weights.

``netgraph reproduce --study modern [--quick]`` runs :func:`run_modern`; the report and the
figures are in :mod:`.modern_report`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from netgraph.data import random_batch
from netgraph.sparsifiers import get

from ..table import RUN_KEYS, metric_keys
from .collapse import collapse_margin, sparsify_density
from .compare import to_csv
from .run import model_graph, parse_method, run_one

#: The six architectures of the study.
MODELS = tuple(f"torchvision:{n}" for n in ("mobilenet_v2", "efficientnet_b0", "resnext50_32x4d", "densenet121",
                                            "convnext_tiny", "vit_b_16"))
#: The metrics each run computes: the table's topology family, no max flow (the others stay empty).
METRIC_KEYS = tuple(metric_keys("topology", max_flow=False, aliases=False))
KEYS = RUN_KEYS
#: Layer weights (millions) of the study's models: the order in which workers take them.
_SIZES = {"torchvision:vit_b_16": 72.1, "torchvision:convnext_tiny": 28.5, "torchvision:resnext50_32x4d": 25.0,
          "torchvision:densenet121": 8.0, "torchvision:efficientnet_b0": 4.6, "torchvision:mobilenet_v2": 3.5}
#: A layer is *narrow* when fewer than this fraction of its dense units stay active.
NARROW = 0.5


@dataclass(frozen=True)
class ModernStudy:
    """The grid of the modern-architecture topology study.

    ``snip_batch`` standard-normal inputs with uniform random labels (seed = the run's
    seed, :func:`netgraph.data.random_batch`) are SNIP's pruning batch. The collapse
    bisection stops when ``upper / margin <= 1 + collapse_rtol`` or after
    ``collapse_evals`` new masks (the default: a factor 2 or 4 new masks);
    ``collapse_methods`` (default: all) limits it and ``collapse_skip`` lists ``(model,
    method)`` pairs left out (default: none). Each (model, seed) is one task on
    ``workers`` processes, the largest models first. ``redraw_zero`` (default on)
    re-initialises (seeded, the module's own ``reset_parameters``) every conv/linear layer
    whose weights are all zero: no weight-magnitude path crosses such a layer. Of
    the six models only torchvision ViT's classifier is one; the report and
    ``modern_layers.csv`` name the layers redrawn. ``prefix`` names the output files.
    """

    models: tuple = MODELS
    methods: tuple = ("phew", "synflow", "synflow-l2", "random", "random:distribution=erk", "snip")
    densities: tuple = (0.1, 0.01, 0.001)
    seeds: int = 1
    snip_batch: int = 8
    collapse: bool = True
    collapse_rtol: float = 1.0
    collapse_evals: int = 4
    collapse_methods: tuple | None = None
    collapse_skip: tuple = ()
    input_shape: tuple | None = None
    workers: int = 2
    redraw_zero: bool = True
    prefix: str = "modern"


#: What the tests and ``--quick`` run: timm's two test networks (depthwise convs; attention), one density.
QUICK_MODERN = ModernStudy(models=("timm:test_efficientnet", "timm:test_vit"), densities=(0.01,), snip_batch=2,
                           collapse_evals=4, collapse_rtol=0.5, workers=1)


def redraw_zero_layers(net, seed: int) -> list:
    """Re-initialise the conv/linear modules whose weight is all zero (seeded); returns their names."""
    import torch

    names = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for name, mod in net.named_modules():
            w = getattr(mod, "weight", None)
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and w is not None and not bool(w.detach().any()):
                mod.reset_parameters()
                names.append(name)
    return names


def _short(model: str) -> str:
    return str(model).partition(":")[2] or str(model)


def layer_types(graph) -> list:
    """The block type of every layer of ``graph``, from its structure alone.

    ``stem`` (reads the input), ``classifier`` (writes the output); convs: ``depthwise
    conv`` (one input channel per group), ``grouped conv``, ``1x1 conv`` and ``kxk conv``;
    linears: ``attention value`` (the value rows of a fused input projection),
    ``attention proj`` (reads what an attention value layer writes), ``linear``. 1x1 convs
    and linears get ``, widening`` or ``, narrowing`` when their output is wider or
    narrower than their input (the expand / project convs of inverted residuals, the two
    Linears of an MLP).

    Examples
    --------
    >>> import torch, netgraph
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=8),
    ...                           torch.nn.Conv2d(8, 16, 1), torch.nn.Flatten(), torch.nn.Linear(16 * 16, 4))
    >>> layer_types(netgraph.from_torch(net, (3, 8, 8)))
    ['stem', 'depthwise conv', '1x1 conv, widening', 'classifier']
    """
    values = {layer.dst for layer in graph.layers if layer.rows is not None}
    first, last = graph.input_group.index, graph.output_group.index
    out = []
    for layer in graph.layers:
        kernel = int(np.prod(layer.param_shape[2:])) if layer.kind == "conv" else 1
        if layer.src == first:
            t = "stem"
        elif layer.dst == last:
            t = "classifier"
        elif layer.kind == "conv" and layer.groups > 1:
            t = "depthwise conv" if layer.weight.shape[1] == 1 else "grouped conv"
        elif layer.kind == "conv" and kernel > 1:
            t = "kxk conv"
        elif layer.rows is not None:
            t = "attention value"
        elif layer.kind == "linear" and layer.src in values:
            t = "attention proj"
        else:
            t = "1x1 conv" if layer.kind == "conv" else "linear"
            if layer.n_dst != layer.n_src:
                t += ", widening" if layer.n_dst > layer.n_src else ", narrowing"
        out.append(t)
    return out


def _run_cells(study, model, seed, built, types, batch, bar) -> list:
    net, g, _ = built
    rows = []
    for label, name, opts in (parse_method(m) for m in study.methods):
        needs = get(name).needs_data
        for d in study.densities:
            bar.set_postfix_str(f"{_short(model)} {label} @ {d:g}, seed {seed}")
            asked = sparsify_density(g, d)
            row = run_one(model, (label, name, opts), asked, seed, data=batch if needs else None, max_flow=False,
                          built=built, metrics=METRIC_KEYS).row
            frac = np.asarray(row["layer_widths"], float) / np.asarray(row["layer_units"], float)
            row.update({"model": model, "target_density": d, "sparsify_density": asked,
                        "narrow_layers": int((frac < NARROW).sum()), "empty_layers": int((frac == 0).sum()),
                        "bottleneck_type": _type_of(row["bottleneck_layer"], g, types)})
            rows.append(row)
            bar.update(1)
    return rows


def _type_of(name, graph, types) -> str:
    by_name = {layer.name: t for layer, t in zip(graph.layers, types)}
    return by_name.get(name, "other" if name is not None else "none")


def _collapse_cells(study, model, seed, built, batch, rows, bar) -> list:
    net, g, _ = built
    out = []
    for label, name, opts in _collapse_specs(study):
        if (model, label) in study.collapse_skip:
            continue
        bar.set_postfix_str(f"{_short(model)} collapse of {label}, seed {seed}")
        needs = get(name).needs_data
        known = [(r["target_density"], bool(r["connected"])) for r in rows if r["method"] == label]
        t0 = time.perf_counter()
        r = collapse_margin(g, name, seed, rtol=study.collapse_rtol, max_evals=study.collapse_evals,
                            model=net if needs else None, data=batch if needs else None, known=known, **opts)
        lo, hi = r["margin"], r["upper"]
        out.append({"model": model, "method": label, "seed": seed,
                    "lowest": len(g.layers) / g.num_weights, "margin": lo, "upper": hi,
                    "resolution": hi / lo if lo is not None and hi is not None else None,
                    "new_masks": len(r["evaluations"]), "seconds": time.perf_counter() - t0})
        bar.update(1)
    return out


def _model_task(task) -> tuple:
    """The grid and the collapse bisections of one (model, seed), single-threaded.

    Returns ``(runs, collapse, layers, errors)``: an error stops that model's task and is
    recorded (``model``, ``seed``, ``stage``, ``error``) instead of losing the other models.
    """
    import torch
    from tqdm.auto import tqdm

    study, model, seed, progress = task
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # SNIP's backward pass sums in a fixed order: the same bytes whatever the workers
    try:
        n_coll = 0 if not study.collapse else len([s for s in _collapse_specs(study)
                                                   if (model, s[0]) not in study.collapse_skip])
        bar = tqdm(total=len(study.methods) * len(study.densities) + n_coll, desc=f"{_short(model)}, seed {seed}",
                   disable=not progress, leave=False, mininterval=20)
        built = model_graph(model, study.input_shape, seed)
        redrawn = []
        if study.redraw_zero:
            import copy

            from netgraph import from_torch

            net = copy.deepcopy(built[0])  # the cached module stays as built
            redrawn = redraw_zero_layers(net, seed)
            if redrawn:
                built = (net, from_torch(net, built[1].input_shape, model_spec=built[1].model_spec), model)
        g = built[1]
        types = layer_types(g)
        layers = [{"model": model, "index": i, "layer": layer.name, "type": t, "kind": layer.kind,
                   "groups": layer.groups, "units": layer.n_dst, "in_units": layer.n_src, "weights": layer.numel}
                  for i, (layer, t) in enumerate(zip(g.layers, types))] if seed == 0 else []
        for row in layers:
            row.update({"redrawn": row["layer"] in redrawn} if study.redraw_zero else {})
        batch = random_batch(g.input_shape, g.output_group.size, study.snip_batch, seed)
        rows, coll, errors = [], [], []
        try:
            rows = _run_cells(study, model, seed, built, types, batch, bar)
            coll = _collapse_cells(study, model, seed, built, batch, rows, bar) if study.collapse else []
        except Exception as exc:  # one model's failure is reported, the others' results kept
            first = (str(exc).strip().splitlines() or [""])[0]
            errors.append({"model": model, "seed": seed, "stage": "collapse" if rows else "grid",
                           "error": f"{type(exc).__name__}: {first}"})
        bar.close()
    finally:
        torch.set_num_threads(threads)
    return rows, coll, layers, errors


def _collapse_specs(study) -> list:
    specs = [parse_method(m) for m in study.methods]
    return [s for s in specs if study.collapse_methods is None or s[0] in study.collapse_methods]


def execute(study: ModernStudy, progress: bool = False):
    """Run the grid and the collapse bisections: ``(runs, collapse, layers)`` tables, in grid order.

    One task per (model, seed), on ``study.workers`` processes (each single-threaded);
    results are collected in the grid's order, so the tables do not depend on the workers.
    """
    from tqdm.auto import tqdm

    tasks = [(study, model, seed, progress) for model in study.models
             for seed in range(study.seeds)]
    bar = tqdm(total=len(tasks), desc="modern topology study (models x seeds)", disable=not progress)
    results = []
    if study.workers <= 1 or len(tasks) == 1:
        for task in tasks:
            results.append(_model_task(task))
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        # a fresh process per task (Python >= 3.11): a worker that held ViT-B/16's graph (4.5 GB) would
        # otherwise keep it for the next model
        fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
        with ProcessPoolExecutor(min(study.workers, len(tasks)), mp_context=ctx, **fresh) as pool:
            order = sorted(range(len(tasks)), key=lambda i: -_SIZES.get(tasks[i][1], 0))  # largest first
            futures = {i: pool.submit(_model_task, tasks[i]) for i in order}
            for i in range(len(tasks)):  # collected in the grid's order
                results.append(futures[i].result())
                bar.update(1)
    bar.close()
    runs, coll, layers, errors = ([x for res in results for x in res[i]] for i in range(4))
    runs = pd.DataFrame(runs)
    runs.attrs["errors"] = errors
    return runs, pd.DataFrame(coll), pd.DataFrame(layers)


def block_widths(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per run and block type: layers, dense and active units, width fraction, narrowest layer.

    ``width`` is active / dense units summed over the block type's layers; ``min_width``
    the narrowest of those layers (active / dense); ``narrow`` and ``empty`` count its
    layers below :data:`NARROW` and at 0.
    """
    out = []
    types = {m: part["type"].to_numpy() for m, part in layers.groupby("model", sort=False)}
    order = list(dict.fromkeys(layers["type"]))
    for r in runs.itertuples():
        t = types[r.model]
        units = np.asarray(r.layer_units, float)
        active = np.asarray(r.layer_widths, float)
        frac = active / units
        for bt in [b for b in order if b in set(t)]:
            sel = t == bt
            out.append({"model": r.model, "method": r.method, "target_density": r.target_density, "seed": r.seed,
                        "type": bt, "layers": int(sel.sum()), "units": int(units[sel].sum()),
                        "active": int(active[sel].sum()), "width": active[sel].sum() / units[sel].sum(),
                        "min_width": float(frac[sel].min()), "narrow": int((frac[sel] < NARROW).sum()),
                        "empty": int((frac[sel] == 0).sum())})
    return pd.DataFrame(out)


TIMINGS = ("seconds", "measure_seconds")


def run_modern(study: ModernStudy = ModernStudy(), out_dir="docs/reproduction", progress=False,
               command: str | None = None) -> pd.DataFrame:
    """Run the study; write the tables, ``modern.md`` and the figures into ``out_dir``.

    Files: ``modern_results.csv`` (one row per mask: metrics and per-layer widths),
    ``modern_blocks.csv`` (:func:`block_widths`), ``modern_collapse.csv`` (collapse margins),
    ``modern_layers.csv`` (each model's layers and block types), all byte-identical across
    runs; ``modern_timings.csv`` (wall-clock seconds of every run and bisection);
    ``modern.md`` and PNG figures.
    """
    from .. import plots
    from .modern_report import figures, report

    t0 = time.perf_counter()
    runs, coll, layers = execute(study, progress)
    seconds = time.perf_counter() - t0
    os.makedirs(out_dir, exist_ok=True)
    empty = [c for c in runs if runs[c].isna().all()]
    to_csv(runs.drop(columns=empty), os.path.join(out_dir, f"{study.prefix}_results.csv"), timings=False)
    blocks = block_widths(runs, layers)
    blocks.to_csv(os.path.join(out_dir, f"{study.prefix}_blocks.csv"), index=False)
    layers.to_csv(os.path.join(out_dir, f"{study.prefix}_layers.csv"), index=False)
    if len(coll):
        coll.drop(columns=["seconds"]).to_csv(os.path.join(out_dir, f"{study.prefix}_collapse.csv"), index=False)
    timing = runs[list(KEYS) + list(TIMINGS)].assign(what="mask")
    if len(coll):
        timing = pd.concat([timing, coll[["model", "method", "seed", "seconds"]].assign(what="collapse")])
    timing.to_csv(os.path.join(out_dir, f"{study.prefix}_timings.csv"), index=False)
    figs = figures(runs, blocks, coll, study.prefix)
    for stem, fig in figs.items():
        plots.save(fig, os.path.join(out_dir, stem), ("png",))
    with open(os.path.join(out_dir, f"{study.prefix}.md"), "w") as f:
        f.write(report(runs, blocks, coll, layers, study, seconds, command, list(figs)))
    return runs


__all__ = ["ModernStudy", "QUICK_MODERN", "redraw_zero_layers",
            "MODELS", "run_modern", "execute", "layer_types", "block_widths"]
