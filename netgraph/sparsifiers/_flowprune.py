"""The engine of iterative SynFlow / SynFlow-L2 on the unit graph: work per bundle, not per weight.

Every element ``w`` of bundle ``(u, v)`` scores ``|w| * c(u, v)`` (SynFlow and SynFlow-L2's
``abs_grad`` form) or ``2 w^2 c(u, v)`` (``w_grad``), where ``c(u, v) = s_in F(u) s_out B(v)
/ R`` is shared by the whole bundle. Flows, factors and scores are float64 (the sorted
``|w|`` are float32, the weights' own precision): ranking in float32 would swap weights whose
scores differ by less than one part in 10^7, thousands per round on a 20M-weight net, and
iterative pruning compounds the swaps (93.6% agreement with the pixel level on a circular
vgg19 in float32, against the 99% asked). Inside a bundle the ranking never changes, so a
bundle always keeps its ``m`` largest ``|w|``. The state of a layer:

* ``k > 1``: the bundle's ``|w|`` sorted once (``S``, float32; the compiled engine reads the
  weights instead), the kept count ``m`` (1 byte while ``k < 256``), the float64 aggregate
  and the smallest kept value ``low`` per bundle;
* ``k = 1`` (linear layers, attention projections): the kept flag ``m`` (1 byte); the
  aggregate *is* ``|w|`` (``w^2`` for SynFlow-L2, whose square root is exact) while kept.
  An ungrouped layer reads it off the model's weights (``raw``: 1 byte a weight, the flows'
  products read the weights and flags in place, :mod:`._flowmatrix`) until its first
  compaction, which stores the survivors' ``|w|`` (float32, exact) or ``w^2`` (float64); a
  grouped layer stores its float64 aggregates.

One iteration, for a threshold bracket ``[lo, hi]`` estimated from a strided sample:

* ``k > 1``: a bundle whose smallest kept score ``low * c`` exceeds ``hi`` keeps everything,
  found with one comparison; ``c`` is never built for every bundle: the layer keeps its
  factors per unit (``c = b[v] f[u]``) and the comparison runs row block by row block as
  ``low f[u] <= hi / b[v]`` with a 1e-9 relative margin (a superset of the exact test). The
  others are *walked* from their smallest kept element up (:mod:`._flowwalk`: windows of a
  few elements per gather, in blocks of rows that stay in cache): per bundle the count of
  elements below ``lo`` (pruned, their values summed on the way) and at most ``hi``; the
  elements between are the candidates. Each element is passed at most once as pruned, so
  the walks cost O(weights) over the whole run;
* ``k = 1``: every kept bundle's exact score, block by block (cache-sized blocks of
  ``b[v] f[u]`` and the aggregate); those at most ``hi`` are the walk's result;
* the exact threshold is the partition of the candidates; ties are kept in position order
  (layer, rank inside the bundle, bundle);
* aggregates drop by the pruned values, added in ascending order from 0 (float64, the same
  sums as an element-by-element walk); ``low`` moves to the new smallest kept value.

Flows then cost O(bundles) per iteration: once half of a layer's bundles are dead (85% raw,
:data:`RAW_COMPACT_BELOW`) its vectors shrink to the survivors, with their ids and rows' offsets
(an ungrouped layer's aggregate: a CSR matrix over them). The engine is exact (the masks of
:func:`tests.reference.autograd_synflow_prune`); SynFlow runs its compiled twin, checked bit for bit.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ._flowmatrix import MaskedWeights, SurvivorMatrix
from ._flowwalk import power_of, ranges, rhs as _rhs, scan_bundles, score as _score
from ._workers import index_dtype, map_sized, memory_of

_FLOOR = 1e-35  # bundles with (almost) no flow keep a tiny positive factor: pruned first, by |w|
COMPACT_BELOW = 0.5  #: Compact a layer's bundle vectors when fewer than this fraction of the tracked bundles survive.
#: The same for a layer still read off its weights (raw): later, as its tests and products cost per bundle about
#: what a compacted one's cost per survivor at 20-40% alive; at 15% its 8 bytes a survivor (vgg16's fc2: 20 MB) fit.
RAW_COMPACT_BELOW = 0.15
#: One layer compacts at a time (layers pruned alike compact together): less peak memory.
_COMPACTING = threading.Lock()


class LayerState:
    """Kept counts of one layer's bundles under iterative flow pruning.

    Attributes
    ----------
    S : ndarray or None
        ``(bundles, k)`` float32, each bundle's ``|w|`` in ascending order (``None`` for
        ``k = 1``, whose single element is read off ``agg``). Bundle ``b`` keeps ``S[b, k - m:]``.
    ids : ndarray or None
        Bundles still tracked (``None``: all; int32 when it fits); the vectors below are over
        tracked bundles.
    m, low, agg
        Kept count (smallest unsigned type holding ``k``), smallest kept ``|w|`` (float32,
        NaN when dead; ``None`` for ``k = 1``) and aggregate (float64, sum of kept ``|w|``
        or ``w^2``; 0 when dead).
    window : int
        Elements per bundle the next walk reads at first (adapts to the last walk).
    """

    COMPILED_SUMS = False  #: ``agg``'s first sums by the compiled kernel (:meth:`netgraph.Layer.sums`)

    def __init__(self, layer, power: int):
        self.layer, self.power = layer, power
        k, n_b = layer.k, layer.num_bundles
        self.k, self.n_b = k, n_b
        W = layer.weight.reshape(n_b, k)
        if k > 1:
            self.S, self.low = self._multi_state(W)
        else:  # the aggregate is |w| (or w^2) itself while kept: no copy of |w|
            self.S = self.low = None
        # an ungrouped layer of one-element bundles reads its aggregate off the weights until it compacts (raw)
        self.w = np.ascontiguousarray(W.reshape(n_b)) if k == 1 and layer.groups == 1 else None
        self.agg = None if self.raw else layer.fresh_sums(power, self.COMPILED_SUMS).ravel()  # not cached: one copy
        self.m = np.full(n_b, k, dtype=np.min_scalar_type(k))
        self.kept = n_b * k  # sum of m
        self.alive = n_b  # bundles with m > 0
        self.ids = None
        self.window = min(k, 4)  # elements the walk reads per bundle at first (adapts)
        self._indptr = None  # the survivors' rows' offsets (once compacted)

    @property
    def raw(self) -> bool:
        """Whether the aggregate is read off the weights ``w`` (until the first compaction)."""
        return self.w is not None

    def _multi_state(self, W: np.ndarray) -> tuple:
        """``k > 1``: ``(S, low)``, the sorted ``|w|`` and the smallest of each bundle."""
        S = self._sorted(W)
        return S, S[:, 0].copy()

    @staticmethod
    def _sorted(W: np.ndarray, block: int = 1 << 20) -> np.ndarray:
        """``out[b]``: bundle ``b``'s ``|w|`` ascending, by row blocks (no full-size temporary)."""
        out = np.empty(W.shape, np.float32)
        rows = max(1, block // W.shape[1])
        for s in range(0, W.shape[0], rows):
            out[s:s + rows] = np.sort(np.abs(W[s:s + rows]), axis=1)
        return out

    # -- per-iteration inputs --------------------------------------------------------
    def aggregate(self):
        """The layer's bundle aggregate for the flows: dense, the weights read in place (raw), or
        the survivors read in place (:mod:`._flowmatrix`)."""
        layer = self.layer
        if self.raw:
            return MaskedWeights(self.w, self.m, self.power, layer.weight.shape[:2])
        if self.ids is None:
            return self.agg.reshape(layer.weight.shape[:2])
        if layer.groups == 1:
            return SurvivorMatrix(self._indptr, self.ids, self.agg, layer.n_in, layer.weight.shape[:2])
        out = np.zeros(self.n_b)
        out[self.ids] = self.agg
        return out.reshape(layer.weight.shape[:2])

    def factor(self, flows) -> tuple:
        """The layer's factors ``(b, f)``: bundle ``(u, v)`` has ``c = max(b[v] f[u], floor)``
        (:meth:`factor_at`); per unit, so an iteration never builds ``c`` for every bundle."""
        layer, p = self.layer, flows.power
        f, b = flows.forward[layer.src], flows.backward[layer.dst]
        if layer.in_scale is not None:
            f = f * layer.in_scale**p
        if layer.out_scale is not None:
            b = b * layer.out_scale**p
        scale = math.exp(flows.forward_scale[layer.src] + flows.backward_scale[layer.dst] - flows.log_R)
        return b * scale, f

    def _units(self, t: np.ndarray) -> tuple:
        """Destination and source units of tracked bundles ``t``."""
        return self.layer.bundle_units(t if self.ids is None else self.ids[t])

    def factor_at(self, c: tuple, t: np.ndarray) -> np.ndarray:
        """Relative gradient factor of tracked bundles ``t`` (float64, floored)."""
        v, u = self._units(t)
        out = c[0][v] * c[1][u]
        return np.maximum(out, _FLOOR, out=out)

    def values(self, t) -> np.ndarray:
        """``k = 1``: the aggregate of tracked bundles ``t``, float64 (``|w|`` or ``w^2`` while kept;
        raw: read off the weights, dead bundles too)."""
        if not self.raw:  # (a compacted raw layer's float32 |w| too)
            return self.agg[t].astype(np.float64, copy=False)
        return power_of(self.power, np.abs(self.w[t]))

    def _margin_low(self, t, form: str) -> np.ndarray:
        """``k = 1``: the margin test's value of tracked bundles ``t``: ``|w|`` (``2 w^2`` for
        ``w_grad``), float64, read off the aggregate."""
        if form != "w_grad":
            return self.absw(t)
        a = self.values(t)
        return 2.0 * (a if self.power == 2 else a * a)

    def absw(self, t: np.ndarray) -> np.ndarray:
        """``k = 1``: ``|w|`` of tracked bundles ``t`` (float64, exact), read off the aggregate."""
        a = self.values(t)
        return a if self.power == 1 else np.sqrt(a)  # sqrt of an exact float32 square is exact

    def lowest(self) -> np.ndarray:
        """Smallest kept ``|w|`` of every tracked bundle (NaN when dead)."""
        low = self.absw(slice(None)) if self.S is None else self.low.astype(np.float64)
        return np.where(self.m > 0, low, np.nan)

    def candidates(self, c: tuple, hi: float, form: str, chunk: int = 1 << 16) -> np.ndarray:
        """Tracked bundles whose smallest kept score may be ``<= hi``: a superset (relative
        margin 1e-9, far above the rounding of the two products) of the exact test, found
        row block by row block without a float64 vector over all bundles; dead ones never."""
        bs, fs = c
        if not hi < np.inf:
            return np.flatnonzero(self.m > 0)
        if self.S is None:  # k = 1: the aggregate is |w| (power 1) or w^2 (power 2)
            low = self._margin_low(slice(None), form)
        else:
            low = self.low if form != "w_grad" else 2.0 * np.square(self.low, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rhs = _rhs(hi, bs)
            if self.ids is not None:
                parts = []
                for s in range(0, self.m.size, chunk):
                    e = s + chunk
                    v, u = self._units(slice(s, e))
                    hit = low[s:e] * fs[u] <= rhs[v]
                    parts.append(np.flatnonzero(hit & (self.m[s:e] > 0) if self.S is None else hit) + s)
                return np.concatenate(parts) if parts else np.zeros(0, np.int64)
            layer = self.layer
            n_in = layer.n_in
            L, M = low.reshape(layer.n_dst, n_in), self.m.reshape(layer.n_dst, n_in)
            fg = layer.gather(fs)
            rows = max(1, chunk // n_in)
            parts = []
            for s in range(0, layer.n_dst, rows):
                hit = L[s:s + rows] * (fg if fg.shape[0] == 1 else fg[s:s + rows]) <= rhs[s:s + rows, None]
                if self.S is None:  # dead k = 1 bundles have aggregate 0
                    hit &= M[s:s + rows] > 0
                parts.append(np.flatnonzero(hit) + s * n_in)
        return np.concatenate(parts)

    def _single(self, c: tuple, hi: float, form: str, chunk: int = 1 << 16) -> tuple:
        """``k = 1``: the kept bundles scoring ``<= hi`` (NaN too) and their exact scores (the
        walk's float64 products), block by block: the candidates' margin test on every kept
        bundle, the exact score on those it lets through (from the aggregate, ``|w|`` or ``w^2``)."""
        bs, fs = c
        p = self.power
        rhs = _rhs(hi, bs)
        if not hi < np.inf:
            t = np.flatnonzero(self.m > 0)
        elif self.ids is None:
            n_in = self.layer.n_in
            fg = self.layer.gather(fs)
            M = self.m.reshape(-1, n_in)
            ts = []
            for s in range(0, self.layer.n_dst, max(1, chunk // n_in)):
                e = s + max(1, chunk // n_in)
                L = self._margin_low(slice(s * n_in, e * n_in), form).reshape(-1, n_in)
                with np.errstate(invalid="ignore", over="ignore"):
                    hit = L * (fg if fg.shape[0] == 1 else fg[s:e]) <= rhs[s:e, None]
                ts.append(np.flatnonzero(hit & (M[s:e] > 0)) + s * n_in)
            t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
        else:
            ts = []
            for s in range(0, self.m.size, chunk):
                e = s + chunk
                with np.errstate(invalid="ignore", over="ignore"):
                    v, u = self._units(slice(s, e))
                    hit = self._margin_low(slice(s, e), form) * fs[u] <= rhs[v]
                ts.append(np.flatnonzero(hit & (self.m[s:e] > 0)) + s)
            t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
        ct, at = self.factor_at(c, t), self.values(t)
        if form == "w_grad":
            sc = (at if p == 2 else at * at) * (2.0 * ct)
        else:
            sc = (at if p == 1 else np.sqrt(at)) * ct
        keep = ~(sc > hi)
        return t[keep], sc[keep]

    def bundle_ids(self, t: np.ndarray) -> np.ndarray:
        return t if self.ids is None else self.ids[t].astype(np.int64)

    def sample(self, c: tuple, stride: int, form: str) -> np.ndarray:
        """Scores of every kept element of every ``stride``-th tracked bundle."""
        t = np.arange(0, self.m.size, stride)
        t = t[self.m[t] > 0]
        if t.size == 0:
            return np.zeros(0)
        ct = self.factor_at(c, t)
        if self.S is None:
            return _score(self.absw(t), ct, form)
        rows = self.S[self.bundle_ids(t)]
        sc = _score(rows, ct[:, None], form)
        return sc[np.arange(self.k)[None, :] >= (self.k - self.m[t].astype(np.int64))[:, None]]

    # -- one pruning step ------------------------------------------------------------
    @staticmethod
    def walk_all(states, cs, lo, hi, form, pool) -> list:
        """Every layer's :meth:`walk` as ``(above, parts)`` (:func:`._flowstep.prune_step`), layers
        in the pool; here one part a layer (a subclass walks a large layer in ranges)."""
        walks = map_sized(pool, lambda sc: sc[0].walk(sc[1], lo, hi, form), zip(states, cs), [s.m.size for s in states])
        return [(w["above"], [w]) for w in walks]

    def walk(self, c: tuple, lo: float, hi: float, form: str) -> dict:
        """Classify the kept elements against the bracket ``[lo, hi]`` (see the module doc).

        Per bundle of ``act`` (a superset of those whose smallest kept score is ``<= hi``):
        ``n_lo`` kept elements score below ``lo`` (pruned), ``n_hi >= n_lo`` at most ``hi``;
        the ``n_hi - n_lo`` between are the candidates, recorded as ``ri`` (index into
        ``act``), ``rp`` (ascending position), ``rs`` (score). Scores rise along a bundle, so
        the counts are found window by window from the smallest kept element."""
        if self.S is None:
            act, sc = self._single(c, hi, form)
            ri = np.flatnonzero(sc >= lo)  # the others (NaN too) are pruned
            return {"act": act, "ri": ri, "rp": np.zeros(ri.size, np.int64), "rs": sc[ri],
                    "above": self.kept - act.size}
        act = self.candidates(c, hi, form)
        k = self.k
        pos0 = k - self.m[act].astype(np.int64)
        cc = self.factor_at(c, act)
        S, base = self.S.reshape(-1), self.bundle_ids(act) * k
        n_hi, n_lo, sum_lo, stop_val, self.window = scan_bundles(self.S, self.power, self.window, base + pos0,
                                                                 base + k, cc, lo, hi, form)
        ri, rp = ranges(pos0 + n_lo, pos0 + n_hi)
        rv = S[base[ri] + rp]
        return {"act": act, "pos0": pos0, "n_hi": n_hi, "ri": ri, "rp": rp, "rs": _score(rv, cc[ri], form),
                "rv": rv, "sum_lo": sum_lo, "stop_val": stop_val, "above": self.kept - int(n_hi.sum())}

    def apply(self, w: dict, keep: np.ndarray) -> None:
        """Set the new kept counts: ``keep`` flags the candidates (walk records) that stay; a
        bundle keeps a suffix of its records (ascending scores, ties kept from the top)."""
        self.apply_parts([w], [keep])

    def apply_parts(self, parts: list, keeps: list) -> None:
        """:meth:`apply` of a walk in parts (the bundle ranges' records), then compact."""
        for w, keep in zip(parts, keeps):
            self._update(w, keep)
        self._maybe_compact()

    def _update(self, w: dict, keep: np.ndarray) -> None:
        """The new kept counts, aggregates and smallest kept values of :meth:`apply`."""
        act, ri, rp = w["act"], w["ri"], w["rp"]
        if act.size == 0:
            return
        if self.S is None:  # k = 1: every bundle of act dies but the kept records
            dead = np.ones(act.size, bool)
            dead[ri[keep]] = False
            d = act[dead]
            if not self.raw:  # (raw: the weights, read only; the kept flags say what is kept)
                self.agg[d] = 0.0
            self.m[d] = 0
            self.kept -= d.size
            self.alive -= d.size
            return
        k, pos0 = self.k, w["pos0"]
        first = pos0 + w["n_hi"]  # the first kept position: above hi, or a kept candidate
        lead = keep.copy()  # the first kept record of its bundle (records ascend inside a bundle)
        lead[1:] &= ~keep[:-1] | (ri[1:] != ri[:-1])
        first[ri[lead]] = rp[lead]
        m_new = k - first
        changed = first > pos0
        dec = w["sum_lo"]
        gone = ~keep
        np.add.at(dec, ri[gone], power_of(self.power, w["rv"][gone]))  # in order: continues the ascending sums
        self.agg[act[changed]] -= dec[changed]
        self.agg[act[m_new == 0]] = 0.0
        low = w["stop_val"]
        low[ri[lead]] = w["rv"][lead]
        low[m_new == 0] = np.nan
        self.low[act] = low
        self.kept -= int((first - pos0).sum())
        self.alive -= int(np.count_nonzero(m_new == 0))  # act bundles were alive
        self.m[act] = m_new

    def _maybe_compact(self) -> None:
        if self.alive >= (RAW_COMPACT_BELOW if self.raw else COMPACT_BELOW) * self.m.size:
            return
        with _COMPACTING:
            self._compact()

    def _survivor_dtype(self):
        """A raw layer's aggregate once compacted: the ``|w|`` of float32 weights is a float32
        exactly (4 bytes a survivor); ``w^2``, or float64 weights, need float64."""
        return np.float32 if self.power == 1 and self.w.dtype == np.float32 else np.float64

    def _compact(self) -> None:
        """Keep the surviving bundles' vectors only, with their ids and the rows' offsets."""
        alive, layer = np.flatnonzero(self.m > 0), self.layer
        ids = self.bundle_ids(alive).astype(index_dtype(self.n_b))  # small: no big copies
        agg = self.values(alive).astype(self._survivor_dtype(), copy=False) if self.raw else self.agg[alive]
        self.m, self.agg, self.low = self.m[alive], agg, None if self.low is None else self.low[alive]
        self.w = None
        del alive
        self.ids, self._indptr = ids, np.zeros(layer.n_dst + 1, np.int64)
        np.cumsum(np.bincount(ids // layer.n_in, minlength=layer.n_dst), out=self._indptr[1:])

    # -- the result ------------------------------------------------------------------
    def end_walks(self) -> None:
        """Drop the walks' buffers (a subclass keeps them between iterations)."""
        self.__dict__.pop("_bufs", None)

    def held_bytes(self) -> int:
        """Bytes :meth:`release` frees (a view counts its base's; kept flags that become the mask not)."""
        keys = ("S", "low", "agg", "ids", "_indptr") + (("m",) if self.mask_bytes() else ())
        arrays = [getattr(self, key, None) for key in keys]
        return sum(memory_of(a).nbytes for a in arrays if isinstance(a, np.ndarray))

    def mask_bytes(self) -> int:
        """Bytes :meth:`final_mask` allocates (none when the kept flags are the mask)."""
        return 0 if self.k == 1 and self.ids is None and self.m.dtype == np.uint8 else self.layer.weight.size

    def release(self) -> None:
        """Drop the state's arrays (after :meth:`final_mask`: the masks replace the states one by one)."""
        for key in ("S", "low", "agg", "m", "ids", "w", "_indptr", "keys", "_bufs"):
            self.__dict__.pop(key, None)

    def final_mask(self, chunk: int = 1 << 22) -> np.ndarray:
        """Keep the ``m`` largest ``|w|`` of each bundle; ties in parameter order."""
        layer, k = self.layer, self.k
        if not self.mask_bytes():  # the flags (0 or 1) themselves, no copy: the last use of the state
            return self.m.view(np.bool_).reshape(layer.weight.shape)
        if k == 1:  # a bool a bundle (no int32 copy of the flags: 4 GB on a 1B-weight MLP)
            out = np.zeros(self.n_b, dtype=bool)
            out[slice(None) if self.ids is None else self.ids] = self.m > 0
            return out.reshape(layer.weight.shape)
        m = np.zeros(self.n_b, dtype=np.int32)
        m[slice(None) if self.ids is None else self.ids] = self.m
        W = layer.weight.reshape(self.n_b, k)
        out = np.empty((self.n_b, k), dtype=bool)
        rows = max(1, chunk // k)
        for s in range(0, self.n_b, rows):  # chunks bound the temporaries
            mm = m[s:s + rows]
            A = np.abs(W[s:s + rows])
            cut = self.S[np.arange(s, s + mm.size), np.minimum(k - mm, k - 1)]
            above = A > cut[:, None]
            ties = A == cut[:, None]
            quota = mm - above.sum(axis=1)
            mask = above | (ties & (np.cumsum(ties, axis=1, dtype=np.int32) <= quota[:, None]))
            mask[mm == 0] = False
            out[s:s + rows] = mask
        return out.reshape(layer.weight.shape)
