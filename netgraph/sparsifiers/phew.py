"""PHEW: sparse networks from biased random walks over the initial weights.

Patil & Dovrolis, "PHEW: Constructing Sparse Networks that Learn Fast and Generalize Well
without Training Data", ICML 2021.

Starting from an empty mask (or a sparser mask to grow), PHEW adds whole input-output
paths. Walks alternate: walk 0 goes forward from input unit 0, walk 1 backward from output
unit 0, walk 2 forward from input unit 1, and so on (seeds round-robin). At every unit a
forward walk picks one weight of the unit's fan-out (a backward walk: of its fan-in) with
probability proportional to ``bias(w)``, in two stages: first the edge bundle (the
``(out, in)`` kernel) with probability proportional to the bundle's total, then the element
(kernel tap) inside it. Walks never look at the mask, so they are independent given the
seed and are simulated in batches, all walkers of a batch moving group by group through
the DAG in topological order. Only the stopping rule couples them: walks are replayed in
order and the process stops after the first walk that brings the number of distinct kept
weights to the target, so the result overshoots the target by less than one walk's length
(no partial walk is kept: every kept weight lies on a complete input-output path).
Density 1 (a target of every weight) returns the dense mask without walking: the mask the
walks end on when every weight can be drawn (as for every method, density 1 is the dense
network). Short of the target, walks stop with an error after three batches in a row that
take no new weight (``max_walks=0``, automatic) or after ``max_walks`` walks (a hard cap).

Branches (residual networks): with ``branch="weighted"`` (default) a unit chooses among
all its out-edges (in-edges) by weight, an identity shortcut (or the edge of an index map:
concatenation, split, channel permutation) counting as one edge of weight 1. With ``branch="authors"`` it follows the rule of the reference code: identity shortcuts
are never taken, and at a unit feeding several parameterised layers (a projection shortcut
and the next block) each layer is taken with equal probability, then a weight by
magnitude inside it. (The reference code's forward walks additionally skip the conv just
before each downsampling block because they move in parameter order; that off-by-one is a
bug that puts weights off any input-output path and is not reproduced.)
"""

from __future__ import annotations

import math
import os
import threading
from numbers import Integral

import numpy as np

from .._validate import check_choice
from ..errors import InvalidInputError, MaskMismatchError
from ..graph import Layer, NetGraph
from ._bias import BIASES, element_weights, reciprocal, tap_draws
from ._blocktable import CHUNK
from ._compiled import load_kernels
from ._tables import live_groups, table
from ._workers import pool
from .base import Context, method

BRANCHES = ("weighted", "authors")
class WalkGraph:
    """Transition tables of a graph for one bias and branch rule (build once, walk often).

    Linear layers of more than ``block_above`` bundles (default
    :data:`~netgraph.sparsifiers._blocktable.BLOCK_ABOVE`), alone or beside an identity
    shortcut, get block tables, a fraction of a byte a weight instead of 16, with the same draws.
    """

    def __init__(self, graph: NetGraph, bias: str = "magnitude", branch: str = "weighted",
                 block_above: int | None = None):
        if bias not in BIASES:
            raise InvalidInputError(f"unknown bias {bias!r}; accepted: {', '.join(BIASES)}")
        if branch not in BRANCHES:
            raise InvalidInputError(f"unknown branch rule {branch!r}; accepted: {', '.join(BRANCHES)}")
        self.graph = graph
        self.bias = bias
        self.kernels = load_kernels(graph.num_weights)  # (a large graph's tables and draws compiled; else None)
        bundle = _Bundles(graph.layers, bias, self.kernels is not None)
        to_out, from_in = live_groups(graph)
        authors = branch == "authors"
        G = len(graph.groups)
        self.fwd, self.bwd = [None] * G, [None] * G
        jobs = []  # (tables, group, its size, usable edges, forward)
        for g in range(G):
            n = graph.groups[g].size
            outs = [e for e in graph.edges_out_of(g) if to_out[e.dst]]
            ins = [e for e in graph.edges_into(g) if from_in[e.src]]
            if authors:
                outs = [e for e in outs if isinstance(e, Layer)] or outs
                ins = [e for e in ins if isinstance(e, Layer)] or ins
            if outs and g != G - 1:
                jobs.append((self.fwd, g, n, outs, True))
            if ins and g != 0:
                jobs.append((self.bwd, g, n, ins, False))

        def build(job):
            tables, g, n, edges, forward = job
            tables[g] = table(n, edges, bundle, forward, authors, bias, block_above, self.kernels)

        with pool(graph.num_weights) as ex:  # the groups' tables are independent: over the threads on a large graph
            list(ex.map(build, jobs))  # (numpy's sums and copies release the GIL; the same tables)
        self.offsets = np.concatenate([[0], np.cumsum([l.numel for l in graph.layers])]).astype(np.int64)
        # a chain (each group's one usable forward edge a layer into the next group): its layers, else None
        steps = [t.edges[0] if t is not None and len(t.edges) == 1 else None for t in self.fwd[:-1]]
        chain = all(isinstance(e, Layer) and e.dst == g + 1 for g, e in enumerate(steps))
        self._chain = steps if chain and G > 1 else None
        self._missed = False  # a batch's forward walks drew another count (a walker stopped early)

    def walk_batch(self, ids: np.ndarray, rng, kernel_conserved: bool = False, executor=None) -> tuple:
        """Walks ``ids``: the even ones forward from input unit ``(id // 2) % n_in``, then the odd ones
        backward from output unit ``(id // 2) % n_out``, drawing from ``rng`` in that order; their
        records ``(walk_id, element)`` as :meth:`walk`'s, the forward ones first.

        With an ``executor`` (a thread pool: a large graph) and a chain of layers (one layer from
        each group to the next), where the forward walks draw a count of numbers known before
        they run (one a group, one a kernel tap a layer of ``k > 1``), the backward walks run on
        the pool beside them, from a copy of the PCG64 generator advanced past that count. If the
        forward walks then leave ``rng`` elsewhere (a walker stopped on a zero weight), the
        backward walks are walked again after them, and the later batches walk in turn: the
        records and ``rng`` are those of the two walks in turn either way.
        """
        n_in, n_out = self.graph.groups[0].size, self.graph.groups[-1].size
        fwd, bwd = ids[ids % 2 == 0], ids[ids % 2 == 1]
        ahead = self._ahead(fwd.size, rng, kernel_conserved) if hasattr(executor, "submit") else None
        back = None if ahead is None else executor.submit(self.walk, "backward", (bwd // 2) % n_out, bwd, ahead[0],
                                                          kernel_conserved)
        w1, e1 = self.walk("forward", (fwd // 2) % n_in, fwd, rng, kernel_conserved)
        w2, e2 = back.result() if back is not None else (None, None)
        if back is not None and rng.bit_generator.state == ahead[1]:  # the forward walks drew the count foreseen
            rng.bit_generator.state = ahead[0].bit_generator.state
        else:
            self._missed = self._missed or back is not None  # (walkers stop early here: later batches in turn)
            w2, e2 = self.walk("backward", (bwd // 2) % n_out, bwd, rng, kernel_conserved)
        return np.concatenate([w1, w2]), np.concatenate([e1, e2])

    def _ahead(self, n: int, rng, kernel_conserved: bool):
        """``(generator, its state)``: a copy of ``rng`` advanced past the draws of ``n`` forward walks
        of a chain (:meth:`walk_batch`), or None: no chain, a batch that missed before, not PCG64, or
        a PCG64 holding half a draw (``advance`` drops it: the states would never match)."""
        if self._chain is None or self._missed or type(rng.bit_generator) is not np.random.PCG64 \
                or rng.bit_generator.state["has_uint32"]:
            return None
        per = len(self._chain) + (0 if kernel_conserved else sum(e.k > 1 for e in self._chain))
        bg = np.random.PCG64()
        bg.state = rng.bit_generator.state
        bg.advance(n * per)
        return np.random.Generator(bg), bg.state

    def _tap(self, layer: Layer, v, j, rng) -> np.ndarray:
        """Kernel tap inside bundles ``(v, j)`` (``j``: input index inside ``v``'s group),
        proportional to ``bias(w)`` (:func:`._bias.tap_draws`)."""
        if layer.k == 1:
            return np.zeros(v.size, dtype=np.int64)
        return tap_draws(layer, self.bias, v, j, rng.random(v.size), self.kernels)

    def walk(self, direction: str, starts: np.ndarray, walk_ids: np.ndarray, rng,
             kernel_conserved: bool = False):
        """Run one batch of walks; return ``(walk_id, global element id)`` records.

        Global element ids index the concatenation of all layers' weights in layer order
        (``offsets[layer.index] + flat index in the parameter``). A walk stepping onto a zero
        weight (an all-zero kernel with ``kernel_conserved``) is dropped with its records: on
        a model pruned before (pruned weights are zeros) the new mask stays inside the old.
        """
        G = len(self.graph.groups)
        forward = direction == "forward"
        grp = np.full(starts.size, 0 if forward else G - 1)
        unit = starts.astype(np.int64).copy()
        rec_w, rec_e, dead = [], [], []
        order = range(G - 1) if forward else range(G - 1, 0, -1)
        tables = self.fwd if forward else self.bwd
        for g in order:
            at = np.flatnonzero(grp == g)
            if at.size == 0:
                continue
            table = tables[g]
            if table is None:  # cannot happen for live groups; park the walkers
                grp[at] = -1
                continue
            ei, nxt = table.draw(unit[at], rng.random(at.size))
            for i, edge in enumerate(table.edges):
                sel = ei == i
                if not sel.any():
                    continue
                who = at[sel]
                if isinstance(edge, Layer):
                    nu = nxt[sel]
                    v, u = (nu, unit[who]) if forward else (unit[who], nu)
                    j = u % edge.n_in  # input index of u inside v's group
                    base = (v * edge.n_in + j) * edge.k
                    flat = edge.weight.reshape(-1)
                    if kernel_conserved and edge.k > 1:
                        el = (base[:, None] + np.arange(edge.k)).ravel()
                        live = flat[el] != 0  # the kernel's zeros stay pruned
                        stuck = ~live.reshape(-1, edge.k).any(axis=1)
                        el, ids = el[live], np.repeat(walk_ids[who], edge.k)[live]
                    else:
                        el = base + self._tap(edge, v, j, rng)
                        stuck, ids = flat[el] == 0, walk_ids[who]
                    rec_w.append(ids)
                    rec_e.append(self.offsets[edge.index] + el)
                    dead.append(walk_ids[who[stuck]])
                    grp[who[stuck]] = -1
                    who, nu = who[~stuck], nu[~stuck]
                    unit[who] = nu
                else:  # shortcut: no weight; an index map moves to the mapped unit
                    unit[who] = _shortcut_step(edge, unit[who], forward)
                grp[who] = edge.dst if forward else edge.src
                grp[who[unit[who] < 0]] = -1  # a unit off the index map: the walk ends
        if not rec_w:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        w, e = np.concatenate(rec_w), np.concatenate(rec_e)
        keep = ~np.isin(w, np.concatenate(dead)) if dead else slice(None)
        return w[keep], e[keep]


class _Bundles:
    """Layers' bundle totals, each computed when a table first asks for it (block tables never do),
    once (a layer's two tables may be built on two threads); ``compiled``: ``|w|`` sums by the
    compiled kernel (large graphs, where PHEW's kernels load numba: the same sums)."""

    def __init__(self, layers, bias: str, compiled: bool = False):
        self.layers, self.bias, self.compiled, self._done = layers, bias, compiled, {}
        self._locks = {i: threading.Lock() for i in range(len(layers))}

    def __getitem__(self, i: int) -> np.ndarray:
        with self._locks[i]:
            if i not in self._done:
                self._done[i] = _bundle_totals(self.layers[i], self.bias, self.compiled)
        return self._done[i]


def _shortcut_step(e, units: np.ndarray, forward: bool) -> np.ndarray:
    """The unit a walk reaches across shortcut ``e``."""
    if e.is_identity:
        return units
    lookup = np.full(e.n_src if forward else e.n_dst, -1, dtype=np.int64)
    if forward:
        lookup[e.src_units] = e.dst_units
    else:
        lookup[e.dst_units] = e.src_units
    return lookup[units]


def _bundle_totals(layer: Layer, bias: str, compiled: bool = False) -> np.ndarray:
    """Sum of ``bias(w)`` over each bundle, float64 ``(n_dst, n_in)``, without an array of
    ``bias(w)`` for the whole layer (the cached ``abs_sum``/``sq_sum`` where they apply;
    ``compiled``: see :meth:`netgraph.Layer.sums`)."""
    if bias == "uniform":
        return np.full(layer.weight.shape[:2], float(layer.k))
    if bias == "inverse":  # the paper's kernel stage: 1 / (L1 norm of the kernel)
        return reciprocal(_bundle_totals(layer, "magnitude", compiled))
    if bias in ("magnitude", "square"):  # the cached sums if there, else computed without caching them
        return layer.sums(1 if bias == "magnitude" else 2, compiled=compiled)
    out = np.empty(layer.weight.shape[:2])
    rows = max(1, CHUNK // max(1, layer.n_in * layer.k))
    for s in range(0, layer.n_dst, rows):  # chunks bound the temporaries
        out[s:s + rows] = element_weights(layer, bias, layer.weight[s:s + rows]).sum(axis=2, dtype=np.float64)
    return out


def phew_walks(graph: NetGraph, n_walks: int, direction: str = "forward", seed: int = 0,
               bias: str = "magnitude", branch: str = "weighted", start: int | None = None):
    """Sample PHEW walks without building a mask (for inspection and tests).

    Walk ``i`` starts at unit ``start`` of the input (output) group, or round-robin over
    its units when ``start`` is None.

    Returns
    -------
    list of (walk_id, layer_index, flat_index) arrays
        One record per weight a walk takes; ``flat_index`` indexes the layer's weight (the
        parameter, or its row range ``layer.rows``, flattened).

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> g = netgraph.from_torch(model, (3,))
    >>> w, layer, idx = phew_walks(g, 5, seed=0)
    >>> len(w)  # every walk takes one weight per layer
    10
    """
    check_choice("direction", direction, ("forward", "backward"))
    wg = WalkGraph(graph, bias, branch)
    n0 = graph.groups[0 if direction == "forward" else -1].size
    ids = np.arange(n_walks)
    starts = np.full(n_walks, start) if start is not None else ids % n0
    w, e = wg.walk(direction, starts, ids, np.random.default_rng(seed))
    layer = np.searchsorted(wg.offsets, e, side="right") - 1
    order = np.argsort(w, kind="stable")
    return w[order], layer[order], (e - wg.offsets[layer])[order]


def _first_takes(w: np.ndarray, e: np.ndarray, kept: np.ndarray, B: int):
    """The weights not yet ``kept`` that walk records ``(w, e)`` take, ascending, and the
    first walk (``0 <= w < B``) taking each.

    One sort of the composite keys ``e * 2**bits + w`` (no stable argsort by walk, then by
    element): the smallest key of each element carries its first walk.
    """
    fresh = ~kept[e]
    bits = max(1, int(B - 1).bit_length())
    keys = np.left_shift(e[fresh], bits)
    keys |= w[fresh]
    keys.sort()
    el = keys >> bits
    first = np.flatnonzero(np.r_[True, el[1:] != el[:-1]]) if el.size else el
    return el[first], keys[first] & ((1 << bits) - 1)


def _initial_state(ctx: Context, init_mask) -> np.ndarray:
    g = ctx.graph
    if init_mask is None:
        return np.zeros(g.num_weights, dtype=bool)
    if isinstance(init_mask, (str, bytes, os.PathLike)):  # a mask file of either format
        from ..export import load_masks

        init_mask = load_masks(init_mask)
    try:
        lms = g.layer_masks(init_mask)
    except MaskMismatchError as exc:
        raise MaskMismatchError(f"init_mask does not fit the graph: {exc}") from None
    return np.concatenate([m.ravel() for m in lms])


@method(
    "phew",
    options={"bias": "magnitude", "kernel_conserved": False, "branch": "weighted", "init_mask": None,
             "max_walks": 0},
    choices={"bias": BIASES, "branch": BRANCHES},
    description="PHEW (Patil & Dovrolis 2021): alternating forward/backward random walks biased by "
                "|w| ('magnitude'), or 'uniform', 'inverse' (the paper's: kernel by 1/L1 norm, tap by 1/|w|), "
                "'inverse_element' (1/|w| in both stages), 'square' (w^2); kernel_conserved "
                "keeps whole kernels; branch 'weighted' or 'authors'; init_mask grows a sparser mask.",
)
def phew_masks(ctx: Context, bias: str = "magnitude", kernel_conserved: bool = False, branch: str = "weighted",
               init_mask=None, max_walks: int = 0) -> list:
    g = ctx.graph
    if isinstance(max_walks, bool) or not isinstance(max_walks, Integral) or max_walks < 0:
        raise InvalidInputError(
            f"max_walks of method 'phew' must be 0 (automatic: stop when walks stall) or a positive number "
            f"of walks (a hard cap, walking on until it), got {max_walks!r}")
    kept = _initial_state(ctx, init_mask)
    # no read of a fresh array: reading its zero pages, then writing them, costs two faults a page
    count = 0 if init_mask is None else int(np.count_nonzero(kept))
    if count > ctx.target:
        raise InvalidInputError(
            f"init_mask keeps {count} weights, more than the target {ctx.target} "
            f"(density {ctx.density:g}); grow masks from sparse to dense"
        )
    if ctx.target == g.num_weights:  # density 1: the mask the walks end on once every weight is drawn
        ctx.info.update({"walks": 0, "forward_walks": 0, "backward_walks": 0, "kept": g.num_weights,
                         "overshoot": 0, "note": "density 1 keeps every weight (the dense mask, no walks)"})
        return g.split_flat(np.ones(g.num_weights, dtype=bool))
    wg = WalkGraph(g, bias, branch)
    rng = ctx.rng()
    walks_done = 0
    per_walk = float(len(g.layers))  # running estimate of new weights per walk
    cap = int(max_walks) or max(1_000_000, 50 * g.num_weights)
    stalled, idle = 0, 0  # batches in a row without a new weight, and their walks
    from tqdm.auto import tqdm

    # the pool: a chain's backward walks beside its forward ones (WalkGraph.walk_batch)
    with pool(g.num_weights) as ex, tqdm(total=ctx.target, initial=count, desc="phew", unit="w",
                                         disable=not ctx.progress, leave=False) as bar:
        while count < ctx.target:
            need = ctx.target - count
            B = int(min(1 << 17, max(256, math.ceil(1.2 * need / max(per_walk, 0.05)) + 64), cap - walks_done))
            w, e = wg.walk_batch(walks_done + np.arange(B), rng, kernel_conserved, ex)
            uniq, first_walk = _first_takes(w - walks_done, e, kept, B)
            cum = np.cumsum(np.bincount(first_walk, minlength=B))
            if cum[-1] >= need:
                last = int(np.searchsorted(cum, need))  # first walk reaching the target
                take = uniq[first_walk <= last]
                kept[take] = True
                count += take.size
                walks_done += last + 1
                bar.update(take.size)
                break
            kept[uniq] = True
            count += uniq.size
            walks_done += B
            bar.update(uniq.size)
            per_walk = max(uniq.size / B, 0.01)
            stalled, idle = (stalled + 1, idle + B) if uniq.size == 0 else (0, 0)
            # automatic: stop once the walks without a new weight (three batches at least) are as
            # many as all the walks before them; max_walks: a hard cap
            stuck = not max_walks and stalled >= 3 and 2 * idle >= walks_done
            if stuck or walks_done >= cap:
                raise InvalidInputError(_unreached(ctx, kept, count, walks_done, idle if stuck else 0, max_walks, cap))
    ctx.info.update({"walks": walks_done, "forward_walks": (walks_done + 1) // 2,
                     "backward_walks": walks_done // 2, "kept": count, "overshoot": count - ctx.target})
    return g.split_flat(kept)


def _unreached(ctx: Context, kept: np.ndarray, count: int, walks: int, idle: int, max_walks: int, cap: int) -> str:
    """Why the walks stopped short of the target: the last ``idle`` walks found no new weight
    (0: the cap of ``cap`` walks was reached)."""
    head = (f"PHEW cannot reach density {ctx.density:g}: after {walks} walks it keeps {count} of the "
            f"{ctx.target} weights wanted")
    if not idle:
        which = f"max_walks={max_walks}" if max_walks else f"the automatic cap of {cap} walks (max_walks=0)"
        return f"{head}, stopped by {which}; raise max_walks or lower the density"
    g = ctx.graph
    zeros = sum(int(np.count_nonzero((l.weight == 0) & ~m)) for l, m in zip(g.layers, g.split_flat(kept)))
    return (f"{head}, and the last {idle} walks took no new weight: the {kept.size - count} weights not taken "
            f"({zeros} of them exact zeros) have zero or tiny probability per walk (much smaller than the other "
            f"weights at their unit, or on units few walks reach); lower the density, use density 1 for the dense "
            f"mask, or set max_walks to walk on up to that many walks")
