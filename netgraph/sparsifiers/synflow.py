"""Iterative SynFlow and SynFlow-L2 with scores from the graph flows (no autograd).

Every element ``w`` of bundle ``(u, v)`` has score ``|w| * c(u, v)`` (SynFlow, and
SynFlow-L2's default form) or ``2 w^2 c(u, v)`` (SynFlow-L2's ``w_grad`` form), where
``c(u, v) = s_in F(u) s_out B(v)`` is the same for the whole bundle (flows and factors are
float64 and relative to R; the ranking itself runs in float32, like the reference SynFlow
code, so weights whose scores differ by less than one part in 10^7 may swap). So inside a bundle the
ranking never changes: the kept elements of a bundle are always the ``m`` largest ``|w|``
of it, and a mask is a vector of prefix lengths ``m``. Per iteration this gives

* the bundle aggregates (sum of kept ``|w|`` or ``w^2``) by a lookup in precomputed
  prefix sums, O(bundles);
* the flows, O(bundles);
* one exact global top-k over the surviving elements (:mod:`._select`), where
  bundles that lost every element are dropped from the arrays as pruning proceeds.

Schedule: after iteration ``t`` of ``T`` the kept count is ``round(N * density ** (t / T))``
(exponential), so the last iteration keeps exactly ``round(density * N)``. Ties are broken
by position: layer order, then rank inside the bundle (larger ``|w|`` first, equal ``|w|``
in parameter order), then bundle.
Bundles that carry no flow score (almost) zero and go first, smaller ``|w|`` first.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InvalidInputError
from ..flows import flows_from_aggregates
from .base import Context, method

_FLOOR = 1e-35  # bundles with (almost) no flow keep a tiny positive factor: pruned first, by |w|


class _LayerState:
    """Surviving bundles of one layer, their |w|-sorted elements and prefix lengths.

    ``S`` has shape ``(k, bundles)``: column ``b`` holds the elements of bundle ``b``
    sorted by decreasing ``|w|``; bundle ``b`` keeps its first ``m`` elements. The
    transposed layout makes per-bundle counts reductions over the outer axis (fast in
    numpy). The per-bundle vectors (``m``, ``top`` = largest ``|w|``, ``low`` = smallest
    kept ``|w|``) cover every bundle until half of them are dead; after that they are
    compacted to the surviving bundles ``rows``.
    """

    def __init__(self, layer, power: int):
        k = layer.k
        n_b = layer.num_bundles  # n_dst * n_in: a grouped conv has only its blocks
        A = np.abs(layer.weight.reshape(n_b, k)).astype(np.float32, copy=False)
        self.layer = layer
        self.k = k
        self.n_b = n_b
        self.S = np.ascontiguousarray(np.sort(A, axis=1)[:, ::-1].T) if k > 1 else A.reshape(1, n_b).copy()
        # prefix sums of |w| (or w^2) along each bundle's sorted elements: (k + 1, bundles)
        self.cum = np.zeros((k + 1, n_b))
        for j in range(k):  # row by row: contiguous adds (np.cumsum over axis 0 is strided)
            x = self.S[j].astype(np.float64)
            np.add(self.cum[j], x if power == 1 else x * x, out=self.cum[j + 1])
        self.agg = self.cum[k].copy()
        self.rows = None  # all bundles
        self.m = np.full(n_b, k, dtype=np.int32)
        self.top = self.S[0].copy()
        self.low = self.S[k - 1].copy()

    def ids(self, cols):
        return cols if self.rows is None else self.rows[cols]

    def aggregate(self) -> np.ndarray:
        return self.agg.reshape(self.layer.weight.shape[:2])

    def update(self, m_new: np.ndarray) -> None:
        changed = np.flatnonzero(m_new < self.m)
        if changed.size:
            lo = m_new[changed]
            ids = self.ids(changed)
            self.agg[ids] = self.cum[lo, ids]
            low = self.S[np.maximum(lo - 1, 0), ids]
            low[lo == 0] = -1.0  # dead bundles: never "fully kept", never straddling
            self.low[changed] = low
            self.top[changed[lo == 0]] = -1.0
        self.m = m_new
        if np.count_nonzero(m_new) < 0.5 * m_new.size:  # compact the per-bundle vectors
            alive = np.flatnonzero(m_new)
            self.rows = self.ids(alive)
            self.m, self.top, self.low = self.m[alive], self.top[alive], self.low[alive]

    def factor(self, flows) -> np.ndarray:
        """Relative gradient factor of every tracked bundle, float32, floored."""
        layer = self.layer
        f = flows.forward[layer.src]
        b = flows.backward[layer.dst]
        p = flows.power
        if layer.in_scale is not None:
            f = f * layer.in_scale**p
        if layer.out_scale is not None:
            b = b * layer.out_scale**p
        scale = math.exp(flows.forward_scale[layer.src] + flows.backward_scale[layer.dst] - flows.log_R)
        if self.rows is None:
            c = ((b * scale)[:, None] * layer.gather(f)).ravel()
        else:
            v, j = np.divmod(self.rows, layer.n_in)
            c = b[v] * f[(v // layer.group_out) * layer.n_in + j] * scale
        return np.maximum(c, _FLOOR).astype(np.float32)

    def final_mask(self) -> np.ndarray:
        """Keep the ``m`` largest ``|w|`` of each bundle; ties in parameter order."""
        m = np.zeros(self.n_b, dtype=np.int32)
        if self.rows is None:
            m[:] = self.m
        else:
            m[self.rows] = self.m
        A = np.abs(self.layer.weight.reshape(self.n_b, self.k))
        cut = self.S[np.maximum(m - 1, 0), np.arange(self.n_b)]
        above = A > cut[:, None]
        ties = A == cut[:, None]
        quota = m - above.sum(axis=1)
        mask = above | (ties & (np.cumsum(ties, axis=1) <= quota[:, None]))
        mask[m == 0] = False
        return mask.reshape(self.layer.weight.shape)


def _scores(s: _LayerState, c: np.ndarray, cols, form: str) -> np.ndarray:
    """Element scores of the bundles ``cols``, shape (k, len(cols)); pruned entries -1."""
    S = np.take(s.S, s.ids(cols), axis=1)
    cc = c[cols]
    sc = S * S * (2.0 * cc)[None, :] if form == "w_grad" else S * cc[None, :]
    pruned = np.arange(s.k, dtype=np.int32)[:, None] >= s.m[cols][None, :]
    sc[pruned] = -1.0
    return sc


def _row_bounds(s: _LayerState, c: np.ndarray, form: str):
    top, low = s.top, s.low
    if form == "w_grad":
        return low * low * (2.0 * c), top * top * (2.0 * c)
    return low * c, top * c


def _prune_step(states, cs, keep_count: int, form: str, pool, sample_rows: int = 1 << 15) -> list:
    """New per-bundle kept counts keeping exactly ``keep_count`` elements overall.

    A strided sample of bundles brackets the threshold; bundles whose whole score range
    lies above (below) the bracket are kept (dropped) without looking at their
    elements, and only the bundles that straddle it are expanded. If the bracket misses
    the threshold, the pass is redone with an unbounded bracket (exact, just slower).
    Per-layer work runs on ``pool`` (numpy releases the GIL in these loops).
    """
    rows_total = sum(s.m.size for s in states)
    stride = max(1, rows_total // sample_rows)

    def sample_of(sc_):
        s, c = sc_
        sc = _scores(s, c, np.arange(0, s.m.size, stride), form)
        return sc[sc >= 0]

    sample = np.sort(np.concatenate(list(pool.map(sample_of, zip(states, cs)))))[::-1]
    valid = sum(int(s.m.sum()) for s in states)
    n = sample.size
    q = keep_count / valid * n
    margin = 6.0 * math.sqrt(max(q * (1 - q / max(n, 1)), 1.0)) + 16
    sampled = (sample[int(q + margin)] if q + margin < n - 1 else -np.inf,
               sample[int(q - margin)] if q - margin >= 1 else np.inf)

    for lo, hi in (sampled, (-np.inf, np.inf)):  # the sampled bracket, then (if it missed) everything
        def classify(sc_, lo=lo, hi=hi):
            s, c = sc_
            row_lo, row_hi = _row_bounds(s, c, form)
            full = row_lo > hi
            straddle = np.flatnonzero(np.logical_and(row_hi >= lo, ~full))
            sc = _scores(s, c, straddle, form)
            above = int(np.dot(full, s.m)) + int(np.count_nonzero(sc > hi))
            return full, straddle, sc, above, sc[(sc <= hi) & (sc >= lo)]

        parts = list(pool.map(classify, zip(states, cs)))
        need = keep_count - sum(p[3] for p in parts)
        cand = np.concatenate([p[4] for p in parts])
        if 1 <= need <= cand.size:
            tau = np.partition(cand, cand.size - need)[cand.size - need]
            break
    else:  # pragma: no cover - the unbounded bracket always holds the threshold
        raise RuntimeError("threshold selection failed")

    def count(args):
        s, (full, straddle, sc, _, _) = args
        m_new = np.where(full, s.m, 0).astype(np.int32, copy=False)
        m_new[straddle] = (sc > tau).sum(axis=0, dtype=np.int32)
        return m_new

    counts = list(pool.map(count, zip(states, parts)))
    need = keep_count - sum(int(m.sum()) for m in counts)
    for (_, straddle, sc, _, _), m_new in zip(parts, counts):  # ties, in position order
        if need <= 0:
            break
        ties = np.flatnonzero(sc.ravel() == tau)[:need]
        np.add.at(m_new, straddle[ties % sc.shape[1]], 1)
        need -= ties.size
    return counts


class _Serial:
    """Executor stand-in for small graphs, where threads cost more than they save.

    Large graphs use one thread per core, or ``NETGRAPH_NUM_THREADS`` threads when that
    environment variable is set (sweep workers set it to 1).
    """

    map = staticmethod(map)

    def shutdown(self):
        pass


def _pool(num_weights: int):
    workers = min(4, int(os.environ.get("NETGRAPH_NUM_THREADS", 0)) or os.cpu_count() or 1)
    if num_weights < 2_000_000 or workers < 2:
        return _Serial()
    return ThreadPoolExecutor(max_workers=workers)


def iterative_flow_pruning(ctx: Context, power: int, form: str, iterations: int, fractions=None) -> list:
    """Shared loop of SynFlow (``power=1``) and SynFlow-L2 (``power=2``).

    ``fractions`` (optional, length ``iterations``) are the kept fractions after each
    iteration, replacing the exponential schedule ``density ** (t / iterations)``.
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise InvalidInputError(f"iterations must be a positive integer, got {iterations!r}")
    graph = ctx.graph
    N = graph.num_weights
    pool = _pool(N)
    states = list(pool.map(lambda layer: _LayerState(layer, power), graph.layers))
    from tqdm.auto import tqdm

    steps = tqdm(range(1, iterations + 1), desc=f"synflow{'-l2' if power == 2 else ''}",
                 disable=not ctx.progress, leave=False)
    for t in steps:
        frac = ctx.density ** (t / iterations) if fractions is None else fractions[t - 1]
        keep_count = max(ctx.target, int(round(N * frac)))
        if t == iterations:
            keep_count = ctx.target
        flows = flows_from_aggregates(graph, [s.aggregate() for s in states], power)
        if not math.isfinite(flows.log_R):
            raise InvalidInputError("no input-output path carries flow (all weights on some layer are zero)")
        cs = list(pool.map(lambda s: s.factor(flows), states))
        counts = _prune_step(states, cs, keep_count, form, pool)
        list(pool.map(lambda a: a[0].update(a[1]), zip(states, counts)))
    ctx.info["iterations"] = iterations
    masks = list(pool.map(lambda s: s.final_mask(), states))
    pool.shutdown()
    return masks


@method(
    "synflow",
    options={"iterations": 100},
    description="Iterative SynFlow (Tanaka et al. 2020): scores |w| dR/d|w| from graph flows, "
                "exponential schedule, global threshold.",
)
def synflow_masks(ctx: Context, iterations: int = 100) -> list:
    return iterative_flow_pruning(ctx, power=1, form="abs_grad", iterations=iterations)


@method(
    "synflow-l2",
    options={"iterations": 100, "form": "abs_grad"},
    choices={"form": ("abs_grad", "w_grad")},
    description="Iterative SynFlow-L2 (Gebhart et al. 2021): flows of squared weights; score "
                "|w| dR2/d(w^2) ('abs_grad', the PHEW authors' form) or w dR2/dw ('w_grad').",
)
def synflow_l2_masks(ctx: Context, iterations: int = 100, form: str = "abs_grad") -> list:
    return iterative_flow_pruning(ctx, power=2, form=form, iterations=iterations)
