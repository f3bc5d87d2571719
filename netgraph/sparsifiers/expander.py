"""Random expander masks (RReg / X-Net): a random bi-regular bipartite graph per layer.

X-Net (Prabhu, Varma and Namboodiri, ECCV 2018) and the random-regular (RReg) baseline of
Hoang et al. (ICLR 2023) replace each layer by a random sparse bipartite graph with equal
degrees: random regular bipartite graphs are near-Ramanujan expanders with high
probability. Here, per layer:

1. The layer's kept count ``c`` comes from uniform or ERK per-layer densities
   (largest-remainder rounding, so the total is exactly the target).
2. ``E = ceil(c / k)`` unit pairs ``(u, v)`` (bundles) are chosen by
   :func:`biregular_edges`: every destination unit gets ``floor(E / n_dst)`` or one more
   bundle, every source unit ``floor(E / n_src)`` or one more, and no pair twice. In a
   grouped conv the destination degrees are balanced over the whole layer and the
   source degrees inside each group's block differ by at most two.
3. Kernels are kept or dropped per unit pair: each chosen bundle keeps all its ``k``
   elements, except one randomly chosen bundle that keeps only ``c - (E - 1) k`` of them
   (its largest ``|w|``), so the count is exact.

The construction is a sequence of random permutations of the source units, cut into
consecutive chunks, one chunk per destination unit (taken in random order); where a
chunk straddles two permutations the next one is drawn uniformly among those whose
first entries avoid the chunk's earlier sources, so no pair repeats. It loops over permutations (at most the mean source degree of them),
never over weights.
"""

from __future__ import annotations

import numpy as np

from .base import Context, method
from .random_pruning import allocate, erk_densities


def biregular_edges(n_rows: int, n_cols: int, E: int, rng: np.random.Generator, row_block: int | None = None):
    """``E`` distinct cells ``(rows, cols)`` of an ``n_rows x n_cols`` grid with balanced degrees.

    Row degrees differ by at most one; column degrees by at most one. With ``row_block``
    the rows are taken block by block (rows ``[b * row_block, (b + 1) * row_block)``
    together), so the column degrees inside each block differ by at most two.

    Examples
    --------
    >>> import numpy as np
    >>> r, c = biregular_edges(4, 6, 12, np.random.default_rng(0))
    >>> np.bincount(r).tolist(), np.bincount(c, minlength=6).tolist()
    ([3, 3, 3, 3], [2, 2, 2, 2, 2, 2])
    """
    if not 0 <= E <= n_rows * n_cols:
        raise ValueError(f"{E} edges do not fit a {n_rows} x {n_cols} grid")
    if E == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    deg = np.full(n_rows, E // n_rows, dtype=np.int64)
    deg[rng.permutation(n_rows)[: E % n_rows]] += 1
    order = rng.permutation(n_rows)
    if row_block:
        order = order[np.argsort(order // row_block, kind="stable")]
    d = deg[order]
    ends = np.cumsum(d)
    starts = ends - d
    n_perm = -(-E // n_cols)
    stubs = np.empty(n_perm * n_cols, dtype=np.int64)
    for p in range(n_perm):
        b = p * n_cols
        i = int(np.searchsorted(ends, b, side="right"))
        if p and i < n_rows and starts[i] < b:  # chunk i straddles the boundary
            # uniform among the permutations whose first h entries avoid the chunk's earlier sources
            h = int(ends[i] - b)
            taken = np.zeros(n_cols, dtype=bool)
            taken[stubs[starts[i]:b]] = True
            free = rng.permutation(np.flatnonzero(~taken))
            rest = rng.permutation(np.concatenate([free[h:], np.flatnonzero(taken)]))
            stubs[b:b + n_cols] = np.concatenate([free[:h], rest])
        else:
            stubs[b:b + n_cols] = rng.permutation(n_cols)
    return np.repeat(order, d), stubs[:E]


def expander_layer_mask(layer, count: int, rng: np.random.Generator) -> np.ndarray:
    """Mask ``(n_dst, n_in, k)`` of one layer keeping exactly ``count`` elements on a
    random bi-regular bipartite graph of whole kernels (see the module docstring)."""
    k = layer.k
    m = np.zeros(layer.weight.shape, dtype=bool)
    if count <= 0:
        return m
    E = -(-count // k)
    # grouped: bundle (v, j) reads source (v // group_out) * n_in + j; rows handled block by block
    rows, cols = biregular_edges(layer.n_dst, layer.n_in, E, rng, row_block=layer.group_out if layer.groups > 1 else None)
    m[rows, cols, :] = True
    rest = count - (E - 1) * k
    if rest < k:
        pick = rng.integers(E)
        v, j = rows[pick], cols[pick]
        keep = np.argsort(-np.abs(layer.weight[v, j]), kind="stable")[:rest]
        m[v, j, :] = False
        m[v, j, keep] = True
    return m


@method(
    "expander",
    options={"distribution": "uniform"},
    choices={"distribution": ("uniform", "erk")},
    description="Random expander (RReg / X-Net): per layer a random bi-regular bipartite graph of whole "
                "kernels at the layer's density ('uniform' or 'erk' per-layer densities).",
)
def expander_masks(ctx: Context, distribution: str = "uniform") -> list:
    g = ctx.graph
    sizes = [l.numel for l in g.layers]
    dens = np.full(len(sizes), ctx.density) if distribution == "uniform" else erk_densities(g, ctx.target)
    counts = allocate(sizes, dens, ctx.target)
    ctx.info["layer_densities"] = [float(c) / s for c, s in zip(counts, sizes)]
    rng = ctx.rng()
    return [expander_layer_mask(layer, int(c), rng) for layer, c in zip(g.layers, counts)]
