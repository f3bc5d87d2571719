"""The compiled engine of iterative SynFlow: :class:`._flowprune.LayerState` with its walk,
update and sample done by the numba kernels of :mod:`._synflow_kernels` and
:mod:`._synflow_updates`.

The numpy methods of :class:`~._flowprune.LayerState` stay as the reference: the same state,
the same records, the same masks bit for bit (``tests/netgraph/test_synflow_kernels.py``).
What changes is the cost: one compiled pass over a layer's tracked bundles per iteration (the
margin test, the walk of the candidates from their smallest kept element, the records of the
bracket) instead of a dozen whole-array numpy operations per window; the sorted ``|w|`` are
stored position-major (``S.T`` is C-contiguous, the kernels' layout); a layer of more than
:data:`PART` bundles is walked in ranges by the pool's threads; and the kernels write into
per-layer buffers kept between iterations (fresh ones each time cost half the walk in page
faults), dropped when they are more than four times what a walk needs.
"""

from __future__ import annotations

import numpy as np

from . import _synflow_kernels as K
from . import _synflow_updates as U
from ._flowprune import LayerState
from ._flowwalk import rhs as _rhs
from ._workers import map_sized

_NONE = np.zeros(0, np.int32)
_NO_ROWS = np.zeros((1, 0), np.float32)
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

    @staticmethod
    def _sorted(W: np.ndarray, out=None) -> np.ndarray:
        """The sorted ``|w|`` stored position-major (the kernels' ``S``), seen as ``(bundles, k)``."""
        return LayerState._sorted(W, np.empty(W.shape[::-1], np.float32).T, 1 << 14)  # blocks transpose in cache

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
        if self.S is None:
            mode = (K.LOW_2X if p == 2 else K.LOW_2XX) if wgrad else (K.LOW_X if p == 1 else K.LOW_SQRT)
            return (self._values_array, self.raw, self.m, rows, ids, compact, n_in, gout, grouped, bs, fs,
                    rhs, all_alive, mode, lo, hi, wgrad, p)
        mode = K.LOW_2XX if wgrad else K.LOW_X
        return (self.S.T, self.m, self.low, ids, rows, compact, n_in, gout, grouped, bs, fs, rhs, all_alive, mode,
                lo, hi, wgrad, p)

    def _walk_range(self, args: tuple, a: int, b: int, exact: bool = False) -> tuple:
        """The kernel's outputs for bundles ``a`` to ``b``, as views of the range's buffers (kept
        from one iteration to the next, so their pages are not faulted in again)."""
        bufs = self.__dict__.setdefault("_bufs", {})
        key = a // PART
        if self.S is None:
            buf = bufs.get(key) or (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
            act, ri, rs, na, nr = K.walk_single(*args, a, b, *buf)
            bufs[key] = (act, ri, rs) if _worth_keeping(act.size, na) else None
            return act[:na], ri[:nr], rs[:nr]
        buf = bufs.get(key) or (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.float32),
                                np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0))
        out = K.walk_multi(*args, exact, a, b, *buf)
        na, nr = out[8], out[9]
        bufs[key] = out[:8] if _worth_keeping(out[0].size, na) else None
        return tuple(x[:na] for x in out[:4]) + tuple(x[:nr] for x in out[4:8]) + out[10:]

    def _join(self, args: tuple, parts: list, exact: bool = False) -> dict:
        """The records of :meth:`LayerState.walk` from the walks of consecutive bundle ranges."""
        offs = np.cumsum([0] + [p[0].size for p in parts[:-1]])
        joined = self.__dict__.setdefault("_joined", {})

        def cat(i, off=None):  # into a buffer kept between iterations, like the kernels' ones
            if len(parts) == 1:  # (the first range's offset is 0)
                return parts[0][i]
            n = sum(p[i].size for p in parts)
            buf = joined.get(i)
            if buf is None or buf.size < n or not _worth_keeping(buf.size, n):
                buf = joined[i] = np.empty(2 * n, parts[0][i].dtype)
            out, s = buf[:n], 0
            for j, p in enumerate(parts):
                if off is None:
                    out[s:s + p[i].size] = p[i]
                else:
                    np.add(p[i], off[j], out=out[s:s + p[i].size])
                s += p[i].size
            return out

        ri = cat(1 if self.S is None else 4, offs)
        if self.S is None:
            act, rs = cat(0), cat(2)
            return {"act": act, "ri": ri, "rp": np.zeros(ri.size, np.int64), "rs": rs, "above": self.kept - act.size}
        if not exact and any(p[-1] for p in parts):  # a factor not finite: NaN scores possible, compared as
            return self._join(args, [self._walk_range(args, 0, self.m.size, True)], True)  # the plain walk did
        return {"act": cat(0), "n_hi": cat(1), "ri": ri, "rp": cat(5), "rs": cat(7), "rv": cat(6), "sum_lo": cat(2),
                "stop_val": cat(3), "above": self.kept - int(sum(int(p[8]) for p in parts))}

    def _ranges(self) -> list:
        n = self.m.size
        return [(a, min(n, a + PART)) for a in range(0, n, PART)] or [(0, 0)]

    def walk(self, c: tuple, lo: float, hi: float, form: str) -> dict:
        """The records of :meth:`LayerState.walk`, from one kernel call per layer (views of the
        layer's buffers: they hold until its next walk, which is all :func:`prune_step` needs)."""
        args = self._walk_args(c, lo, hi, form)
        return self._join(args, [self._walk_range(args, 0, self.m.size)])

    @staticmethod
    def walk_all(states, cs, lo, hi, form, pool) -> list:
        """Every layer's walk; a layer of more than :data:`PART` bundles in ranges, all in the pool."""
        args = [s._walk_args(c, lo, hi, form) for s, c in zip(states, cs)]
        jobs = [(s, a, r) for s, a in zip(states, args) for r in s._ranges()]
        outs = iter(map_sized(pool, lambda j: j[0]._walk_range(j[1], *j[2]), jobs, [b - a for _, _, (a, b) in jobs]))
        return [s._join(a, [next(outs) for _ in s._ranges()]) for s, a in zip(states, args)]

    def apply(self, w: dict, keep: np.ndarray) -> None:
        """The update of :meth:`LayerState.apply`, in one kernel call."""
        act = w["act"]
        if act.size == 0:
            return
        keep = np.ascontiguousarray(keep, np.bool_)
        if self.S is None:
            dead = U.apply_single(self.m, _NO_VALS if self.raw else self.agg, self.raw, act, w["ri"], keep)
            pruned = dead
        else:
            pruned, dead = U.apply_multi(self.m, self.low, self.agg, act, w["n_hi"], w["sum_lo"], w["stop_val"],
                                         w["ri"], w["rp"], w["rv"], keep, self.k, self.power)
        self.kept -= int(pruned)
        self.alive -= int(dead)
        self._maybe_compact()

    def _compact(self) -> None:
        """The compaction of :meth:`LayerState._compact` in one kernel pass, in place (the survivors
        move to the front of the vectors, which are then seen at their new size: no fresh pages
        to fault in, no copy; the memory is the first size's, as at the start), with the CSR row
        offsets; the first compaction makes the ids (one spare element), and a raw layer's
        aggregate from its weights (at the survivors' size; float32 ``|w|`` for SynFlow, exact)."""
        n = int(np.count_nonzero(self.m))
        compact, ids, n_in, gout, grouped = self._layout()
        new = ids if compact else np.empty(n + 1, np.int32 if self.n_b < 2**31 else np.int64)
        agg = np.empty(n + 1, self._survivor_dtype()) if self.raw else self.agg
        low = self.low if self.low is not None else _NO_LOW
        indptr = np.zeros(self.layer.n_dst + 1, np.int64)
        U.compact(self.m, self._values_array, self.raw, self.power, low, ids,
                  self._indptr if compact else _NO_PTR, compact, n_in, self.m, agg, low, new, indptr)
        self.m, self.agg, self.ids = self.m[:n], agg[:n], new[:n]
        self.low = self.low[:n] if self.low is not None else None
        self._indptr = indptr
        self.w = None

    def final_mask(self, chunk: int = 1 << 22) -> np.ndarray:
        """The mask of :meth:`LayerState.final_mask`; ``k > 1`` in one kernel pass (no chunks)."""
        if self.k == 1:
            return super().final_mask(chunk)
        m = np.zeros(self.n_b, dtype=self.m.dtype)
        m[slice(None) if self.ids is None else self.ids] = self.m
        out = np.empty((self.n_b, self.k), dtype=bool)
        U.final_multi(self.S.T, self.layer.weight.reshape(self.n_b, self.k), m, out)
        return out.reshape(self.layer.weight.shape)

    def sample(self, c: tuple, stride: int, form: str) -> np.ndarray:
        """The sample of :meth:`LayerState.sample`, in one kernel call."""
        bs, fs = np.ascontiguousarray(c[0], np.float64), np.ascontiguousarray(c[1], np.float64)
        compact, ids, n_in, gout, grouped = self._layout()
        return K.sample(_NO_ROWS if self.S is None else self.S.T, self._values_array, self.raw, self.m,
                        ids, compact, n_in, gout, grouped, bs, fs, int(stride), form == "w_grad", self.power)

