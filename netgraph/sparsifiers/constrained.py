"""SynFlow with a custom pruning schedule, PHEW with per-layer densities.

* ``synflow-schedule``: iterative SynFlow (``power=1``) or SynFlow-L2 (``power=2``) whose
  kept fraction after iteration ``t`` of ``T`` follows ``schedule``:
  ``"exponential"`` (SynFlow's ``d ** (t / T)``), ``"linear"`` (``1 - (1 - d) t / T``),
  ``"cosine"`` (``d + (1 - d)(1 + cos(pi t / T)) / 2``), or an explicit comma-separated
  list of finite, strictly decreasing densities in ``(d, 1]`` (``"0.5,0.2"``): the target
  ``d`` is appended as the last step (a list may also end on it, ``"0.5,0.2,0.1"``), so
  ``T`` is the list's length + 1, or its length if it ends on the target. It reuses the one SynFlow loop
  (:func:`netgraph.sparsifiers.synflow.iterative_flow_pruning`, option ``fractions``).
* ``phew-layerwise``: PHEW walks under per-layer budgets (``layer_densities``: ``"erk"``,
  ``"uniform"`` or a comma-separated list, one density per layer). Phase 1 takes whole
  walks, in PHEW's alternating order, as long as every new weight of the walk fits its
  layer's remaining budget (walks that would add to a full layer are skipped). Phase 2,
  once walks stall (three batches in a row taking fewer than 5% of their walks), fills
  each layer's remaining budget with weights whose source unit is reached from an input and whose destination reaches an output through the kept mask
  (so they lie on input-output paths), drawn with probability proportional to ``|w|``
  (then, if a layer has no such weight left, from the rest of the layer: these may be off
  any path, and ``details["off_path_fill"]`` counts them). Per-layer counts are exact.
  Tight budgets make walks stall early (a small first layer fills after a few walks): on
  resnet20 at 5% the walks place 16% (``"uniform"``) / 49% (``"erk"``) of the weights and
  the on-path fill the rest; no weight came from the off-path fill in either case.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import check_positive_int
from ..errors import InvalidInputError
from ..flows import path_flows
from .base import Context, method
from .phew import WalkGraph
from .random_pruning import allocate, erk_densities
from .synflow import iterative_flow_pruning

SCHEDULES = ("exponential", "linear", "cosine")


def schedule_fractions(schedule, density: float, iterations: int) -> list:
    """Kept fraction after each iteration for a named schedule or a list of densities.

    An explicit list (a comma-separated string or a sequence of numbers) holds finite
    densities in ``(density, 1]``, strictly decreasing; the target ``density`` is appended as
    the last step (a list may also end on the target itself). Anything else raises
    :class:`~netgraph.errors.InvalidInputError` naming the bad entry.

    >>> [round(f, 3) for f in schedule_fractions("linear", 0.1, 3)]
    [0.7, 0.4, 0.1]
    >>> schedule_fractions("0.5, 0.2", 0.1, 100)
    [0.5, 0.2, 0.1]
    >>> schedule_fractions("0.5,0.2,0.1", 0.1, 100)
    [0.5, 0.2, 0.1]
    >>> schedule_fractions("0.5,0.05", 0.1, 100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    netgraph.errors.InvalidInputError: schedule entry 0.05 is outside (0.1, 1]: ...
    """
    if isinstance(schedule, str) and schedule.strip() in SCHEDULES:
        t = np.arange(1, iterations + 1) / iterations
        f = {"exponential": density ** t, "linear": 1 - (1 - density) * t,
             "cosine": density + (1 - density) * (1 + np.cos(np.pi * t)) / 2}[schedule.strip()]
        f[-1] = density  # end exactly on the target
        return [float(x) for x in f]
    return _explicit_schedule(schedule, density)


def _explicit_schedule(schedule, density: float) -> list:
    """A list of densities checked (finite, in ``(density, 1]``, strictly decreasing), target appended."""
    usage = (f"schedule must be one of {', '.join(SCHEDULES)} or densities decreasing from at most 1 "
             f"to above the target {density:g}, comma-separated like '0.5,0.2'")
    try:
        vals = [float(x) for x in (schedule.split(",") if isinstance(schedule, str) else schedule)]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{usage}, got {schedule!r}") from None
    if not vals:
        raise InvalidInputError(f"{usage}, got an empty list")
    if vals[-1] == density:  # a list may end on the target itself
        vals.pop()
    for v in vals:
        if not math.isfinite(v):
            raise InvalidInputError(f"schedule entry {v} is not a finite number; {usage}, got {schedule!r}")
        if not density < v <= 1:
            raise InvalidInputError(
                f"schedule entry {v:g} is outside ({density:g}, 1]: every density of a schedule lies above "
                f"the target {density:g} and at most 1, got {schedule!r}")
    for a, b in zip(vals, vals[1:]):
        if not a > b:
            raise InvalidInputError(
                f"schedule densities must strictly decrease, but {a:g} is followed by {b:g} in {schedule!r}")
    return vals + [density]


@method(
    "synflow-schedule",
    options={"schedule": "linear", "iterations": 100, "power": 1, "form": "abs_grad"},
    choices={"power": (1, 2), "form": ("abs_grad", "w_grad")},
    description="Iterative SynFlow (power 1) or SynFlow-L2 (power 2) with a custom schedule: 'exponential', "
                "'linear', 'cosine' or decreasing densities '0.5,0.2,...'.",
)
def synflow_schedule_masks(ctx: Context, schedule="linear", iterations: int = 100, power: int = 1,
                           form: str = "abs_grad") -> list:
    iterations = check_positive_int("iterations", iterations)
    fr = schedule_fractions(schedule, ctx.density, iterations)
    ctx.info["schedule"] = fr
    return iterative_flow_pruning(ctx, power=int(power), form=form, iterations=len(fr), fractions=fr)


def layer_targets(graph, spec, target: int, density: float) -> np.ndarray:
    """Per-layer kept counts for ``"erk"``, ``"uniform"`` or a comma-separated density list."""
    sizes = [l.numel for l in graph.layers]
    if spec == "uniform":
        return allocate(sizes, np.full(len(sizes), density), target)
    if spec == "erk":
        return allocate(sizes, erk_densities(graph, target), target)
    try:
        dens = [float(x) for x in (spec.split(",") if isinstance(spec, str) else spec)]
    except (TypeError, ValueError):
        dens = []
    if len(dens) != len(sizes) or any(not 0 < d <= 1 for d in dens):
        raise InvalidInputError(
            f"layer_densities must be 'erk', 'uniform' or {len(sizes)} densities in (0, 1] (one per layer), got {spec!r}")
    return np.array([max(1, int(round(d * s))) for d, s in zip(dens, sizes)], dtype=np.int64)


def _walk_phase(ctx, g, budgets, offsets, bias, rng):
    """Whole PHEW walks while they fit the per-layer budgets; returns the flat kept mask."""
    wg = WalkGraph(g, bias, "weighted")
    kept = np.zeros(g.num_weights, dtype=bool)
    used = np.zeros(len(g.layers), dtype=np.int64)
    done, stalled, B = 0, 0, 512
    while stalled < 3 and (used < budgets).any():
        w, e = wg.walk_batch(done + np.arange(B), rng)
        w = w - done
        fresh = ~kept[e]
        w, e = w[fresh], e[fresh]
        pair = np.unique(w * g.num_weights + e)  # each walk's fresh elements, once per walk
        w, e = pair // g.num_weights, pair % g.num_weights
        lay = np.searchsorted(offsets, e, side="right") - 1
        per = np.zeros((B, len(g.layers)), dtype=np.int64)
        np.add.at(per, (w, lay), 1)
        full = used >= budgets
        ok = ~(per[:, full] > 0).any(axis=1)  # skip walks adding to a full layer
        # conservative: an element shared by two accepted walks of the batch is counted twice
        cum = np.cumsum(np.where(ok[:, None], per, 0), axis=0) + used
        fits = (cum <= budgets).all(axis=1) & ok
        stop = np.flatnonzero(~fits & ok)
        accept = fits & (np.arange(B) < (stop[0] if stop.size else B))
        take = np.unique(e[accept[w]])  # every fresh element of every accepted walk: whole paths
        kept[take] = True
        used += np.bincount(np.searchsorted(offsets, take, side="right") - 1, minlength=len(g.layers))
        done += B
        # walks are worth it while they fill budgets; once most are skipped (or add nothing: dropped
        # at a zero weight, or only weights already kept), the fill is faster
        stalled = stalled + 1 if int((accept & per.any(axis=1)).sum()) < 0.05 * B else 0
        B = int(min(1 << 15, max(512, 2 * B if stalled == 0 else B)))
    return kept, done


def _fill_phase(g, kept_layers, budgets, rng):
    """Fill each layer's remaining budget with on-path weights, probability proportional to |w|."""
    fl = path_flows(g, "count", kept_layers)
    off_path = 0
    for layer, m, b in zip(g.layers, kept_layers, budgets):
        need = int(b - m.sum())
        if need <= 0:
            continue
        live = (fl.backward[layer.dst] > 0)[:, None] & (layer.gather(fl.forward[layer.src]) > 0)
        for on_path in (True, False):  # on-path candidates first, then any
            if need <= 0:
                break
            idx = np.flatnonzero((live[:, :, None] & ~m) if on_path else ~m)
            if not idx.size:
                continue
            off_path += 0 if on_path else min(need, idx.size)
            p = np.abs(layer.weight.ravel()[idx]).astype(np.float64) + 1e-300
            pick = rng.choice(idx, size=min(need, idx.size), replace=False, p=p / p.sum())
            m.ravel()[pick] = True
            need -= pick.size
    return kept_layers, off_path


@method(
    "phew-layerwise",
    options={"layer_densities": "erk", "bias": "magnitude"},
    choices={"bias": ("magnitude", "uniform")},
    description="PHEW walks under per-layer budgets ('erk', 'uniform' or one density per layer, comma-separated); "
                "walks that do not fit are skipped, then on-path weights fill each layer exactly.",
)
def phew_layerwise_masks(ctx: Context, layer_densities="erk", bias: str = "magnitude") -> list:
    g = ctx.graph
    budgets = layer_targets(g, layer_densities, ctx.target, ctx.density)
    offsets = np.concatenate([[0], np.cumsum([l.numel for l in g.layers])])
    rng = ctx.rng()
    kept, walks = _walk_phase(ctx, g, budgets, offsets, bias, rng)
    layers = [m.copy() for m in g.split_flat(kept)]
    walked = int(kept.sum())
    layers, off_path = _fill_phase(g, layers, budgets, rng)
    ctx.info.update({"walks": walks, "walked_weights": walked, "filled_weights": int(budgets.sum()) - walked,
                     "off_path_fill": off_path,
                     "layer_targets": [int(b) for b in budgets]})
    if int(budgets.sum()) != ctx.target:
        ctx.info["note"] = f"per-layer densities keep {int(budgets.sum())} weights, not the global target {ctx.target}"
    return layers
