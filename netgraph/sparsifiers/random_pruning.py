"""Random masks: uniform per layer, uniform over all weights, or Erdős–Rényi-Kernel."""

from __future__ import annotations

import numpy as np

from .base import Context, method


def allocate(sizes, densities, total: int) -> np.ndarray:
    """Integer per-layer counts near ``sizes * densities`` summing exactly to ``total``.

    Largest-remainder rounding; no layer gets more than its size.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    ideal = np.minimum(np.asarray(densities, dtype=np.float64), 1.0) * sizes
    counts = np.minimum(np.floor(ideal).astype(np.int64), sizes)
    left = int(total - counts.sum())
    rem = ideal - counts
    order = np.argsort(-rem, kind="stable")
    while left > 0:
        progressed = False
        for i in order:
            if left == 0:
                break
            if counts[i] < sizes[i]:
                counts[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


def _erk_raw(layer) -> float:
    """``sum(shape) / prod(shape)`` of one group block of the layer's weight tensor."""
    shape = (layer.rows_shape[0] // layer.groups, *layer.rows_shape[1:])
    return float(sum(shape) / np.prod(shape, dtype=np.float64))


def erk_densities(graph, target: int) -> np.ndarray:
    """Erdős–Rényi-Kernel per-layer densities (Evci et al. 2020), scaled to ``target``.

    ``density_l`` is proportional to ``sum(shape_l) / prod(shape_l)`` of the weight
    tensor; layers that would exceed 1 are made dense and the rest rescaled. A grouped
    conv counts as ``groups`` independent blocks of shape
    ``(C_out / groups, C_in / groups, *kernel)``: its real fan-in is ``n_in * k`` and
    fan-out ``(C_out / groups) * k`` per unit, so a depthwise conv is scored like a
    ``1 x 1`` channel block (nearly dense), not like a ``C_out``-wide layer.
    """
    sizes = np.array([l.numel for l in graph.layers], dtype=np.float64)
    raw = np.array([_erk_raw(l) for l in graph.layers])
    dense = np.zeros(len(sizes), dtype=bool)
    while True:
        budget = target - sizes[dense].sum()
        eps = budget / (raw[~dense] * sizes[~dense]).sum()
        d = np.where(dense, 1.0, eps * raw)
        over = (~dense) & (d > 1.0)
        if not over.any():
            return d
        dense |= over


def _scatter(ctx: Context, counts) -> list:
    rng = ctx.rng()
    masks = []
    for layer, c in zip(ctx.graph.layers, counts):
        m = np.zeros(layer.numel, dtype=bool)
        m[rng.choice(layer.numel, size=int(c), replace=False)] = True
        masks.append(m.reshape(layer.weight.shape))
    return masks


@method(
    "random",
    options={"distribution": "uniform"},
    choices={"distribution": ("uniform", "global", "erk")},
    description="Random mask: 'uniform' (same density in every layer), 'global' (uniform over all "
                "weights), 'erk' (Erdős–Rényi-Kernel layer densities).",
)
def random_masks(ctx: Context, distribution: str = "uniform") -> list:
    g = ctx.graph
    sizes = [l.numel for l in g.layers]
    if distribution == "global":
        rng = ctx.rng()
        chosen = rng.choice(g.num_weights, size=ctx.target, replace=False)
        flat = np.zeros(g.num_weights, dtype=bool)
        flat[chosen] = True
        return g.split_flat(flat)
    dens = np.full(len(sizes), ctx.density) if distribution == "uniform" else erk_densities(g, ctx.target)
    ctx.info["layer_densities"] = [float(x) for x in dens]
    return _scatter(ctx, allocate(sizes, dens, ctx.target))
