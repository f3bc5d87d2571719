r"""NPB: node-path balancing, one optimisation per layer, solved exactly.

Pham et al. ("Towards data-agnostic pruning at initialization: what makes a good sparse
mask?", NeurIPS 2023) argue that a good sparse mask balances two things in every layer:
many **effective paths** and many **active nodes** (units with a kept edge). NPB picks the
layers' masks one after another, from the input, each as the solution of a small
optimisation. Our formulation (the paper's principle; the normalisation is ours, so
``alpha`` is comparable across layers of any size):

For layer ``l`` with kept count ``c`` (from uniform or ERK per-layer densities), bundles
``b = (u, v)`` of ``k`` elements, and ``p_u`` the number of paths from the inputs to
source unit ``u`` through the masks already chosen (relative to the largest, so
``p in [0, 1]``),

.. math::

    \max_{x, y, h}\;
      \frac{\alpha}{c} \sum_b p_{u(b)}\, x_b
      + \frac{1 - \alpha}{n_{src} + n_{dst}} \Big(\sum_u h_u + \sum_v h_v\Big)

    \text{s.t.}\; \sum_b x_b = c,\quad y_b \le x_b \le k\, y_b,\quad
      h_u \le \sum_{b \ni u} y_b,\quad h_v \le \sum_{b \ni v} y_b,

    x_b \in \{0, \dots, k\},\; y_b \in \{0, 1\},\; 0 \le h \le 1 .

``x_b`` is the number of kept elements of bundle ``b`` (a conv keeps its ``x_b`` largest
``|w|`` of the kernel, ties by position), ``y_b`` says whether the bundle is used, ``h``
whether a unit is active. The first term is the layer's share of effective paths, the
second its fraction of active units; ``alpha`` (default 0.5) weighs them. The count is
exact (an equality of the programme).

``solver="exact"`` (default) solves it combinatorially in a few sorts over the source
units (:mod:`.npb_exact`, where the reduction and the tie rule are); ``solver="milp"``
hands the programme above to ``scipy.optimize.milp`` (HiGHS) under a per-layer
``time_limit``, the independent cross-check (tested equal on random layers), practical up
to a few thousand bundles per layer; when the limit stops the search, the best solution
found is used (``ctx.info`` records the layers that stopped early).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from ..errors import InvalidInputError
from ..flows import flow_step
from ..graph import Layer
from . import npb_exact
from .base import Context, method
from .random_pruning import allocate, erk_densities


class _SourcePaths:
    """Relative number of paths from the inputs to each unit (max 1 per group), group by group.

    The same forward programme as :func:`~netgraph.flows.flows_from_aggregates` with
    ``weights="count"`` (layers not chosen yet count as empty), but a group's vector is kept
    once every layer into it and into the groups before it is chosen, so each layer's
    sources cost one pass over the groups not yet final rather than a pass over the graph.
    """

    def __init__(self, graph):
        self.graph = graph
        self.final = [(np.ones(graph.groups[0].size), 0.0)]

    def __call__(self, aggs: list, chosen: set, layer) -> np.ndarray:
        vals = list(self.final)
        fwd, fsc = [v for v, _ in vals], [c for _, c in vals]
        agg_of = dict(enumerate(aggs))
        done = True
        for h in range(len(self.final), layer.src + 1):
            done &= all(e.index in chosen for e in self.graph.edges_into(h) if isinstance(e, Layer))
            v, c = flow_step(self.graph, h, fwd, fsc, agg_of, 0)
            fwd.append(v)
            fsc.append(c)
            if done:
                self.final.append((v, c))
        f = fwd[layer.src]
        return f / f.max() if f.size and f.max() > 0 else np.zeros(layer.n_src)


def npb_layer(layer, count: int, p_src: np.ndarray, alpha: float, time_limit: float = 20.0,
              solver: str = "exact"):
    """Kept elements per bundle ``(n_dst, n_in)`` (integers summing to ``count``) and solver info.

    ``solver="exact"``: the combinatorial solution of :mod:`.npb_exact`; ``"milp"``: HiGHS
    under ``time_limit`` seconds.
    """
    nd, ni, k = layer.n_dst, layer.n_in, layer.k
    nb = nd * ni
    if count <= 0:
        return np.zeros((nd, ni), dtype=np.int64), {"status": "empty"}
    if solver == "exact":
        return npb_exact.solve(layer, count, p_src, alpha)
    src = layer.src_index().ravel()
    dst = np.repeat(np.arange(nd), ni)
    ns = layer.n_src
    # variables: x (nb), y (nb), hs (ns), hd (nd)
    n = 2 * nb + ns + nd
    c = np.zeros(n)
    c[:nb] = -alpha / count * p_src[src]
    c[2 * nb:] = -(1 - alpha) / (ns + nd)
    ib = np.arange(nb)
    rows = [sp.csr_matrix((np.ones(nb), (np.zeros(nb, int), ib)), shape=(1, n)),  # sum x = count
            sp.csr_matrix((np.r_[np.ones(nb), -k * np.ones(nb)], (np.r_[ib, ib], np.r_[ib, nb + ib])),
                          shape=(nb, n)),  # x - k y <= 0
            sp.csr_matrix((np.r_[np.ones(nb), -np.ones(nb)], (np.r_[ib, ib], np.r_[nb + ib, ib])),
                          shape=(nb, n)),  # y - x <= 0
            sp.csr_matrix((np.r_[np.ones(ns), -np.ones(nb)], (np.r_[np.arange(ns), src],
                                                              np.r_[2 * nb + np.arange(ns), nb + ib])),
                          shape=(ns, n)),  # hs_u - sum y <= 0
            sp.csr_matrix((np.r_[np.ones(nd), -np.ones(nb)], (np.r_[np.arange(nd), dst],
                                                              np.r_[2 * nb + ns + np.arange(nd), nb + ib])),
                          shape=(nd, n))]  # hd_v - sum y <= 0
    A = sp.vstack(rows).tocsr()
    lb = np.r_[count, np.full(A.shape[0] - 1, -np.inf)]
    ub = np.r_[count, np.zeros(A.shape[0] - 1)]
    integrality = np.r_[np.ones(2 * nb), np.zeros(ns + nd)]
    upper = np.r_[np.full(nb, k), np.ones(nb + ns + nd)]
    res = milp(c, constraints=LinearConstraint(A, lb, ub), integrality=integrality,
               bounds=Bounds(np.zeros(n), upper), options={"time_limit": float(time_limit), "disp": False})
    if res.x is None:
        raise InvalidInputError(
            f"NPB found no solution for layer {layer.name!r} in {time_limit:g} s ({res.message}); "
            "raise time_limit")
    x = np.clip(np.rint(res.x[:nb]), 0, k).astype(np.int64)
    _fix_total(x, count, k, p_src[src])
    info = {"status": int(res.status), "gap": float(getattr(res, "mip_gap", np.nan) or 0.0),
            "objective": float(-res.fun)}
    return x.reshape(nd, ni), info


def _fix_total(x: np.ndarray, count: int, k: int, pref: np.ndarray) -> None:
    """Make ``x.sum() == count`` after rounding (adds to / takes from the best / worst bundles)."""
    diff = count - int(x.sum())
    order = np.argsort(-pref, kind="stable")
    while diff:
        idx = order if diff > 0 else order[::-1]
        room = (k - x[idx]) if diff > 0 else x[idx]
        take = np.minimum(room, abs(diff))
        take = np.where(np.cumsum(take) <= abs(diff), take, 0)
        if not take.any():
            take[np.flatnonzero(room)[0]] = 1
        x[idx] += np.sign(diff) * take
        diff = count - int(x.sum())


def _elements(layer, x: np.ndarray) -> np.ndarray:
    """Mask keeping the ``x[v, j]`` largest ``|w|`` of each bundle (ties by position).

    Whole and empty bundles need no sort; only the partly kept ones are ranked.
    """
    mask = np.zeros(layer.weight.shape, dtype=bool)
    mask[x >= layer.k] = True
    part = np.flatnonzero((x > 0) & (x < layer.k))
    chunk = max(1, (1 << 22) // layer.k)
    w = layer.weight.reshape(-1, layer.k)
    flat = mask.reshape(-1, layer.k)
    for s in range(0, len(part), chunk):
        idx = part[s:s + chunk]
        order = np.argsort(-np.abs(w[idx]), axis=1, kind="stable")
        keep = np.arange(layer.k)[None, :] < x.reshape(-1)[idx, None]
        rows = np.zeros((len(idx), layer.k), dtype=bool)
        np.put_along_axis(rows, order, keep, axis=1)
        flat[idx] = rows
    return mask


@method(
    "npb",
    options={"alpha": 0.5, "distribution": "erk", "solver": "exact", "time_limit": 20.0},
    choices={"distribution": ("uniform", "erk"), "solver": ("exact", "milp")},
    description="NPB (Pham et al. 2023): per layer, from the input, the optimum of a programme balancing "
                "effective paths (weight alpha) and active units at the layer's density (exact "
                "combinatorial solver, or HiGHS with solver='milp').",
)
def npb_masks(ctx: Context, alpha: float = 0.5, distribution: str = "erk", solver: str = "exact",
              time_limit: float = 20.0) -> list:
    if not 0.0 <= float(alpha) <= 1.0:
        raise InvalidInputError(f"option alpha of method 'npb' must be in [0, 1], got {alpha!r}")
    if not float(time_limit) > 0:
        raise InvalidInputError(f"option time_limit of method 'npb' must be positive seconds, got {time_limit!r}")
    g = ctx.graph
    sizes = [l.numel for l in g.layers]
    dens = np.full(len(sizes), ctx.density) if distribution == "uniform" else erk_densities(g, ctx.target)
    counts = allocate(sizes, dens, ctx.target)
    aggs = [np.zeros(l.weight.shape[:2]) for l in g.layers]
    masks, infos, chosen, paths = [], [], set(), _SourcePaths(g)
    for layer, cnt in zip(g.layers, counts):
        p = paths(aggs, chosen, layer)
        x, info = npb_layer(layer, int(cnt), p, float(alpha), float(time_limit), solver)
        aggs[layer.index] = x.astype(np.float64)
        chosen.add(layer.index)
        masks.append(_elements(layer, x))
        infos.append(info)
    ctx.info["layer_densities"] = [float(c) / s for c, s in zip(counts, sizes)]
    ctx.info["stopped_early"] = [l.name for l, i in zip(g.layers, infos) if i.get("status") == 1]
    ctx.info["objectives"] = [i.get("objective") for i in infos]
    return masks
