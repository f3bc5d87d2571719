"""The compiled engine of iterative SynFlow: :class:`._flowprune.LayerState` with its walk,
update and sample done by the numba kernels of :mod:`._synflow_kernels`,
:mod:`._synflow_updates` and :mod:`._synflow_sample`.

The numpy methods of :class:`~._flowprune.LayerState` stay as the reference: the same state,
the same records, the same masks bit for bit (``tests/netgraph/test_synflow_kernels.py``).
What changes is the cost: one compiled pass over a layer's tracked bundles per iteration (the
margin test, the walk of the candidates from their smallest kept element, the records of the
bracket) instead of a dozen whole-array numpy operations per window; no sorted copy of the
weights (the reference's ``S``): the walks read the weights' bits in place (``keys``); a
layer of more than :data:`PART` bundles is walked in ranges by the pool's threads, each range's records left
where its kernel wrote them (the pruning step takes a layer's walk in parts: no joined copy);
and the kernels write into per-range buffers kept between iterations (fresh ones each time
cost half the walk in page faults), dropped when they are more than four times what a walk
needs, and after the last walk.
"""

from __future__ import annotations

import numpy as np

from . import _synflow_kernels as K
from ._synflow_sample import sample as _sample_kernel
from . import _synflow_updates as U
from ._flowprune import LayerState
from ._flowwalk import rhs as _rhs
from ._workers import index_dtype, map_sized, memory_of

_NONE = np.zeros(0, np.int32)
_NO_KEYS = np.zeros((0, 1), np.uint32)
_NO_KEY = np.zeros(0, np.uint32)
_NO_LOW = np.zeros(0, np.float32)
_NO_PTR = np.zeros(1, np.int64)
_NO_VALS = np.zeros(0)  # (a raw layer's aggregate is its weights, read only)
#: Bundles per task of a layer's walk: the largest layers use every worker of the pool.
PART = 1 << 19


def _worth_keeping(size: int, need: int) -> bool:
    """Whether a buffer of ``size`` is kept for the next iteration's walk, which needed ``need``:
    kept unless one large walk would pin it at several times what walks need."""
    return size <= 4 * need + (1 << 16)


class FastLayerState(LayerState):
    """A :class:`~._flowprune.LayerState` whose per-iteration work runs in compiled kernels."""

    COMPILED_SUMS = True

    def _multi_state(self, W: np.ndarray, block: int = 1 << 20) -> tuple:
        """``k > 1``: no sorted copy (``S`` is None); the walks read the weights' bits (``keys``, a
        view of float32 weights, else of their float32 ``|w|``: the reference's sorted values),
        and ``low`` starts as each bundle's smallest ``|w|``."""
        rows = max(1, block // W.shape[1])
        if W.dtype != np.float32:  # (by row blocks: no full-size float64 temporary)
            out = np.empty(W.shape, np.float32)
            for s in range(0, W.shape[0], rows):
                out[s:s + rows] = np.abs(W[s:s + rows])
            W = out
        self.keys = np.ascontiguousarray(W).view(np.uint32)
        low = np.empty(W.shape[0], np.uint32)
        U.smallest_keys(self.keys, low)  # (the smallest key's float: the smallest |w|)
        return None, low.view(np.float32)

    @property
    def _values_array(self) -> np.ndarray:
        """What the kernels read a bundle's aggregate from: the weights (raw) or the aggregates."""
        return self.w if self.raw else self.agg

    def _layout(self) -> tuple:
        """``(compact, ids, n_in, group_out, grouped)`` of the kernels."""
        layer = self.layer
        return self.ids is not None, _NONE if self.ids is None else self.ids, layer.n_in, layer.group_out, \
            layer.groups != 1

    def _walk_args(self, c: tuple, lo: float, hi: float, form: str) -> tuple:
        """The arguments of the layer's walk kernel, but the bundle range (and ``exact``)."""
        bs, fs = np.ascontiguousarray(c[0], np.float64), np.ascontiguousarray(c[1], np.float64)
        wgrad, p = form == "w_grad", self.power
        all_alive = not hi < np.inf
        rhs = _rhs(hi, bs) if not all_alive else bs
        compact, ids, n_in, gout, grouped = self._layout()
        rows = self._indptr if compact else _NO_PTR  # the walks read the survivors' rows as runs
        lo, hi = float(lo), float(hi)
        if self.k == 1:
            mode = (K.LOW_2X if p == 2 else K.LOW_2XX) if wgrad else (K.LOW_X if p == 1 else K.LOW_SQRT)
            return (self._values_array, self.raw, self.m, rows, ids, compact, n_in, gout, grouped, bs, fs,
                    rhs, all_alive, mode, lo, hi, wgrad, p)
        mode = K.LOW_2XX if wgrad else K.LOW_X
        return (self.keys, self.m, self.low, self.low.view(np.uint32), ids, rows, compact, n_in, gout, grouped, bs,
                fs, rhs, all_alive, mode, lo, hi, wgrad, p)

    def _walk_range(self, args: tuple, a: int, b: int, exact: bool = False) -> tuple:
        """The kernel's outputs for bundles ``a`` to ``b``, as views of the range's buffers (kept
        from one iteration to the next, so their pages are not faulted in again; int32 indices
        while the layer fits: vgg16's fc1 buffers, 0.2x its weights at their largest, are a
        tenth of SynFlow's memory)."""
        bufs = self.__dict__.setdefault("_bufs", {})
        key, ix = a // PART, index_dtype(self.n_b)
        if self.k == 1:
            buf = bufs.get(key) or (np.empty(0, ix), np.empty(0, ix), np.empty(0))
            act, ri, rs, na, nr = K.walk_single(*args, a, b, *buf)
            bufs[key] = (act, ri, rs) if _worth_keeping(act.size, na) else None
            return act[:na], ri[:nr], rs[:nr]
        buf = bufs.get(key) or (np.empty(0, ix), np.empty(0, np.int32), np.empty(0), np.empty(0, np.float32),
                                np.empty(0, ix), np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0))
        out = K.walk_multi(*args, exact, a, b, *buf)
        na, nr = out[8], out[9]
        bufs[key] = out[:8] if _worth_keeping(out[0].size, na) else None
        return tuple(x[:na] for x in out[:4]) + tuple(x[:nr] for x in out[4:8]) + out[10:]

    def _part(self, out: tuple) -> dict:
        """The records of one bundle range's walk (:meth:`_walk_range`), as :meth:`LayerState.walk`'s
        but indexed from the range's own candidates; ``at_most_hi``: its kept elements scoring ``<= hi``."""
        if self.k == 1:
            act, ri, rs = out
            rp = np.broadcast_to(np.int32(0), ri.shape)  # (every rank 0: no memory)
            return {"act": act, "ri": ri, "rp": rp, "rs": rs, "at_most_hi": act.size}
        return {"act": out[0], "n_hi": out[1], "sum_lo": out[2], "stop_val": out[3], "ri": out[4], "rp": out[5],
                "rv": out[6], "rs": out[7], "at_most_hi": int(out[8])}

    def _parts(self, args: tuple, outs: list) -> tuple:
        """``(above, parts)`` of :func:`._flowstep.prune_step` from the walks of consecutive ranges
        (a factor not finite in one: the layer walked again in one exact range, whose NaN scores
        compare as the plain walk's)."""
        if self.k > 1 and any(o[-1] for o in outs):
            outs = [self._walk_range(args, 0, self.m.size, True)]
        parts = [self._part(o) for o in outs]
        return self.kept - sum(p["at_most_hi"] for p in parts), parts

    def _ranges(self) -> list:
        n = self.m.size
        return [(a, min(n, a + PART)) for a in range(0, n, PART)] or [(0, 0)]

    def walk(self, c: tuple, lo: float, hi: float, form: str) -> dict:
        """The records of :meth:`LayerState.walk`: the layer's ranges walked and joined."""
        args = self._walk_args(c, lo, hi, form)
        above, parts = self._parts(args, [self._walk_range(args, a, b) for a, b in self._ranges()])
        offs = np.cumsum([0] + [p["act"].size for p in parts[:-1]])
        return {"above": above, **{key: np.concatenate([p[key] + off if key == "ri" else p[key]
                                                        for p, off in zip(parts, offs)])
                                   for key in parts[0] if key != "at_most_hi"}}

    @staticmethod
    def walk_all(states, cs, lo, hi, form, pool) -> list:
        """Every layer's walk as ``(above, parts)``: a layer of more than :data:`PART` bundles in
        ranges, all in the pool, its records left in the ranges' buffers (no joined copy)."""
        args = [s._walk_args(c, lo, hi, form) for s, c in zip(states, cs)]
        jobs = [(s, a, r) for s, a in zip(states, args) for r in s._ranges()]
        outs = iter(map_sized(pool, lambda j: j[0]._walk_range(j[1], *j[2]), jobs, [b - a for _, _, (a, b) in jobs]))
        return [s._parts(a, [next(outs) for _ in s._ranges()]) for s, a in zip(states, args)]

    def _update(self, w: dict, keep: np.ndarray) -> None:
        """The update of :meth:`LayerState._update`, in one kernel call."""
        act = w["act"]
        if act.size == 0:
            return
        keep = np.ascontiguousarray(keep, np.bool_)
        if self.k == 1:
            dead = U.apply_single(self.m, _NO_VALS if self.raw else self.agg, self.raw, act, w["ri"], keep)
            pruned = dead
        else:
            pruned, dead = U.apply_multi(self.m, self.low, self.agg, act, w["n_hi"], w["sum_lo"], w["stop_val"],
                                         w["ri"], w["rp"], w["rv"], keep, self.k, self.power)
        self.kept -= int(pruned)
        self.alive -= int(dead)

    def _compact(self) -> None:
        """The compaction of :meth:`LayerState._compact` in one kernel pass, in place (the survivors
        move to the front of the vectors, which are then seen at their new size: no fresh pages
        to fault in, no copy), with the CSR row offsets; once they fill half their memory or less,
        they are copied at their size (the first memory freed: SynFlow's peak); the first
        compaction makes the ids (one spare element), and a raw layer's aggregate from its
        weights (at the survivors' size; float32 ``|w|`` for SynFlow, exact)."""
        n = int(np.count_nonzero(self.m))
        compact, ids, n_in, gout, grouped = self._layout()
        new = ids if compact else np.empty(n + 1, index_dtype(self.n_b))
        agg = np.empty(n + 1, self._survivor_dtype()) if self.raw else self.agg
        low = self.low if self.low is not None else _NO_LOW
        indptr = np.zeros(self.layer.n_dst + 1, np.int64)
        U.compact(self.m, self._values_array, self.raw, self.power, low, ids,
                  self._indptr if compact else _NO_PTR, compact, n_in, self.m, agg, low, new, indptr)
        self.m, self.agg, self.ids = self.m[:n], agg[:n], new[:n]
        self.low = self.low[:n] if self.low is not None else None
        self._indptr = indptr
        self.w = None
        if 2 * n <= memory_of(self.m).size:  # at half the memory or less: right-sized copies, the first freed
            for key in ("m", "agg", "ids", "low"):
                if getattr(self, key) is not None:
                    setattr(self, key, getattr(self, key).copy())

    def final_mask(self, chunk: int = 1 << 22) -> np.ndarray:
        """The mask of :meth:`LayerState.final_mask`; ``k > 1`` in one kernel pass (no chunks)."""
        self.end_walks()
        if self.k == 1:
            return super().final_mask(chunk)
        out = np.zeros((self.n_b, self.k), dtype=bool)
        compact, ids, *_ = self._layout()
        U.final_multi(self.layer.weight.reshape(self.n_b, self.k), self.m, self.low, ids, compact, out)
        return out.reshape(self.layer.weight.shape)

    def sample(self, c: tuple, stride: int, form: str) -> np.ndarray:
        """The sample of :meth:`LayerState.sample`, in one kernel call."""
        bs, fs = np.ascontiguousarray(c[0], np.float64), np.ascontiguousarray(c[1], np.float64)
        compact, ids, n_in, gout, grouped = self._layout()
        multi = self.k > 1
        return _sample_kernel(self.keys if multi else _NO_KEYS, self.low if multi else _NO_LOW,
                              self.low.view(np.uint32) if multi else _NO_KEY, self._values_array, self.raw, self.m,
                              ids, compact, n_in, gout, grouped, bs, fs, int(stride), form == "w_grad", self.power)

