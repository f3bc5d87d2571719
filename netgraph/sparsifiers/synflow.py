"""Iterative SynFlow and SynFlow-L2: on the unit graph (default) or pixel by pixel (autograd).

``level="unit"`` (default) scores every weight from the graph flows, with work per edge
bundle instead of per weight (:mod:`._flowprune`): on vgg19 (CIFAR) 100 iterations take a
fraction of the time of 100 autograd passes. ``level="pixel"`` runs the original algorithm
by autograd on the real model (:mod:`._pixel`), for users who need its exact semantics at
zero-padded image borders (``docs/data-model.md`` measures the difference: large at 32 px,
small at 224 px). Both give the same masks where both are exact (no padding, or circular
padding), up to float32 ranking of near-equal scores.

Schedule: after iteration ``t`` of ``T`` the kept count is ``round(N * density ** (t / T))``
(exponential), so the last iteration keeps exactly ``round(density * N)``. Ties are broken
by position: layer order, then rank inside the bundle (larger ``|w|`` first, equal ``|w|``
in parameter order), then bundle.
Bundles that carry no flow score (almost) zero and go first, smaller ``|w|`` first.
"""

from __future__ import annotations

import contextlib
import math
import warnings

from .._validate import check_choice, check_positive_int
from ..errors import InvalidInputError
from ..flows import flows_from_aggregates
from ..reach import shortest_path_weights
from ._flowstep import prune_step
from ._workers import map_sized, pool as _pool, return_freed_memory
from .base import Context, method

LEVELS = ("unit", "pixel")


def layer_state() -> type:
    """The per-layer state class of the unit level: the compiled engine
    (:class:`._synflow_fast.FastLayerState`; numba imported on first use). Tests swap in the
    numpy reference :class:`._flowprune.LayerState`, whose masks are the same bit for bit; it
    also runs, with a warning, where numba cannot be imported."""
    try:
        from ._synflow_fast import FastLayerState
    except ImportError as exc:  # numba missing or unusable here: the same masks, several times slower
        warnings.warn(f"SynFlow runs its numpy engine (the same masks, several times slower): {exc}",
                      RuntimeWarning, stacklevel=4)
        from ._flowprune import LayerState

        return LayerState
    return FastLayerState


def iterative_flow_pruning(ctx: Context, power: int, form: str, iterations: int, level: str = "unit",
                           fractions=None) -> list:
    """Shared loop of SynFlow (``power=1``) and SynFlow-L2 (``power=2``); per-layer masks.

    ``fractions`` (optional, length ``iterations``, unit level) are the kept fractions after
    each iteration, replacing the exponential schedule ``density ** (t / iterations)``.

    Raises
    ------
    InvalidInputError
        If the requested number of weights is below the number of weights on the shortest
        input-output path: no mask of that size keeps a path, so SynFlow (which prunes by
        flow) refuses and states the smallest feasible density.
    """
    iterations = check_positive_int("iterations", iterations)
    check_choice("level", level, LEVELS)
    graph = ctx.graph
    shortest = shortest_path_weights(graph)
    if ctx.target < shortest:
        raise InvalidInputError(
            f"density {ctx.density:g} keeps {ctx.target} weights, fewer than the {shortest} weights of the shortest "
            f"input-output path: no such mask carries flow; the smallest density SynFlow accepts here is "
            f"{shortest / graph.num_weights:.3g}")
    if fractions is not None and level != "unit":
        raise InvalidInputError("a custom schedule (fractions) needs level='unit'")
    ctx.info["iterations"] = iterations
    ctx.info["level"] = level
    if level == "pixel":
        from ._pixel import pixel_flow_pruning

        masks = pixel_flow_pruning(ctx.model, graph.input_shape, graph.param_names, ctx.density, ctx.target,
                                   power, form, iterations, ctx.progress)
        return graph.layer_masks(masks)
    from .._blas import one_blas_thread  # (scipy.linalg, threadpoolctl: not at import)

    pool = _pool(graph.num_weights)
    # BLAS threads would compete with the pool's (the flows' two sweeps side by side, the
    # layers' walks); a matrix-vector product splits over its outputs: one thread, same values
    blas = one_blas_thread() if hasattr(pool, "submit") else contextlib.nullcontext()
    try:
        with blas:
            return _iterate(ctx, power, form, iterations, fractions, pool)
    finally:
        pool.shutdown()


def _iterate(ctx: Context, power: int, form: str, iterations: int, fractions, pool) -> list:
    """The unit-level iterations of :func:`iterative_flow_pruning`; per-layer masks."""
    graph, N = ctx.graph, ctx.graph.num_weights
    state = layer_state()
    sizes = [layer.weight.size for layer in graph.layers]
    states = map_sized(pool, lambda layer: state(layer, power), graph.layers, sizes)
    from tqdm.auto import tqdm

    steps = tqdm(range(1, iterations + 1), desc=f"synflow{'-l2' if power == 2 else ''}",
                 disable=not ctx.progress, leave=False)
    for t in steps:
        frac = ctx.density ** (t / iterations) if fractions is None else fractions[t - 1]
        keep_count = max(ctx.target, int(round(N * frac)))
        if t == iterations:
            keep_count = ctx.target
        frac_prev = 1.0 if t == 1 else sum(s.kept for s in states) / N
        flows = flows_from_aggregates(graph, [s.aggregate() for s in states], power,
                                      pool=pool if hasattr(pool, "submit") else None)
        if not math.isfinite(flows.log_R):
            if t > 1:  # the last step's mask cut every path: pruned too far at once
                raise InvalidInputError(
                    f"iteration {t - 1} of {iterations} left no input-output path (it kept {frac_prev:.3g} of the weights "
                    f"in one step: layer collapse); prune more gradually: more iterations, or a schedule of smaller steps")
            raise InvalidInputError(_no_flow(graph))
        cs = map_sized(pool, lambda s: s.factor(flows), states, [0] * len(states))
        prune_step(states, cs, keep_count, form, pool)
        return_freed_memory()  # (buffers dropped, layers compacted: their old pages)
    return _final_masks(states)


def _final_masks(states) -> list:
    """Every layer's mask, one layer at a time, each state released at once (:meth:`._flowprune.
    LayerState.release`), the walks' buffers first: the layers whose states hold more than their
    masks need go first (vgg16's linear layers: the peak is the masks and a state, not all states)."""
    for s in states:
        s.end_walks()
    return_freed_memory()
    out = [None] * len(states)
    for i in sorted(range(len(states)), key=lambda i: states[i].mask_bytes() - states[i].held_bytes()):
        out[i] = states[i].final_mask()
        states[i].release()
    return out


def _no_flow(graph) -> str:
    """Why no path carries flow at the start: the layers whose weights are all zero, named."""
    zero = [layer.param for layer in graph.layers if not layer.weight.any()]
    if zero:
        return (f"no input-output path carries flow: every weight of {', '.join(map(repr, zero[:3]))}"
                f"{f' and {len(zero) - 3} more' if len(zero) > 3 else ''} is zero (torchvision initialises some "
                "classifier heads to zero, e.g. ViT's heads.head); draw them anew before pruning, e.g. "
                "nn.init.kaiming_uniform_(layer.weight, a=5 ** 0.5)")
    return ("no input-output path carries flow (weights near 1e30 or more, whose relative factors fall under the "
            "engine's floor 1e-35)")


@method(
    "synflow",
    options={"iterations": 100, "level": "unit"},
    choices={"level": LEVELS},
    description="Iterative SynFlow (Tanaka et al. 2020): scores |w| dR/d|w|, exponential schedule, global "
                "threshold; level 'unit' (graph flows, fast) or 'pixel' (autograd on the model, zero padding seen).",
)
def synflow_masks(ctx: Context, iterations: int = 100, level: str = "unit") -> list:
    return iterative_flow_pruning(ctx, power=1, form="abs_grad", iterations=iterations, level=level)


@method(
    "synflow-l2",
    options={"iterations": 100, "form": "abs_grad", "level": "unit"},
    choices={"form": ("abs_grad", "w_grad"), "level": LEVELS},
    description="Iterative SynFlow-L2 (Gebhart et al. 2021): flows of squared weights; score "
                "|w| dR2/d(w^2) ('abs_grad', the PHEW authors' form) or w dR2/dw ('w_grad'); level 'unit' or 'pixel'.",
)
def synflow_l2_masks(ctx: Context, iterations: int = 100, form: str = "abs_grad", level: str = "unit") -> list:
    return iterative_flow_pruning(ctx, power=2, form=form, iterations=iterations, level=level)
