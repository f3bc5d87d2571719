"""The compiled engine of iterative SynFlow: :class:`._flowprune.LayerState` with its walk,
update and sample done by the numba kernels of :mod:`._synflow_kernels`.

The numpy methods of :class:`~._flowprune.LayerState` stay as the reference: the same state,
the same records, the same masks bit for bit (``tests/netgraph/test_synflow_kernels.py``).
What changes is the cost: one compiled pass over a layer's tracked bundles per iteration (the
margin test, the walk of the candidates from their smallest kept element, the records of the
bracket) instead of a dozen whole-array numpy operations per window, and no temporaries the
size of the candidates besides the records themselves.
"""

from __future__ import annotations

import numpy as np

from . import _synflow_kernels as K
from ._flowprune import LayerState, _rhs

_NONE = np.zeros(0, np.int32)
_NO_ROWS = np.zeros((0, 1), np.float32)


class FastLayerState(LayerState):
    """A :class:`~._flowprune.LayerState` whose per-iteration work runs in compiled kernels."""

    def _layout(self) -> tuple:
        """``(compact, ids, vv, uu, n_in, group_out, grouped)`` of the kernels."""
        layer = self.layer
        if self.ids is None:
            return False, _NONE, _NONE, _NONE, layer.n_in, layer.group_out, layer.groups != 1
        return True, self.ids, self.v, self.u, layer.n_in, layer.group_out, layer.groups != 1

    def walk(self, c: tuple, lo: float, hi: float, form: str) -> dict:
        """The records of :meth:`LayerState.walk`, from one kernel call per layer."""
        bs, fs = np.ascontiguousarray(c[0], np.float64), np.ascontiguousarray(c[1], np.float64)
        wgrad, p = form == "w_grad", self.power
        all_alive = not hi < np.inf
        rhs = _rhs(hi, bs) if not all_alive else bs
        compact, ids, vv, uu, n_in, gout, grouped = self._layout()
        lo, hi = float(lo), float(hi)
        if self.S is None:
            mode = (K.LOW_2X if p == 2 else K.LOW_2XX) if wgrad else (K.LOW_X if p == 1 else K.LOW_SQRT)
            act, ri, rs = K.walk_single(self.agg, self.m, vv, uu, compact, n_in, gout, grouped, bs, fs, rhs,
                                        all_alive, mode, lo, hi, wgrad, p)
            return {"act": act, "ri": ri, "rp": np.zeros(ri.size, np.int64), "rs": rs, "above": self.kept - act.size}
        mode = K.LOW_2XX if wgrad else K.LOW_X
        args = (self.S, self.m, self.low, ids, vv, uu, compact, n_in, gout, grouped, bs, fs, rhs, all_alive, mode,
                lo, hi, wgrad, p)
        out = K.walk_multi(*args, False)
        if out[-1]:  # a factor is not finite: NaN scores possible, compare as the plain walk did
            out = K.walk_multi(*args, True)
        act, n_hi, sum_lo, stop_val, ri, rp, rv, rs, total, _ = out
        return {"act": act, "n_hi": n_hi, "ri": ri, "rp": rp, "rs": rs, "rv": rv, "sum_lo": sum_lo,
                "stop_val": stop_val, "above": self.kept - int(total)}

    def apply(self, w: dict, keep: np.ndarray) -> None:
        """The update of :meth:`LayerState.apply`, in one kernel call."""
        act = w["act"]
        if act.size == 0:
            return
        keep = np.ascontiguousarray(keep, np.bool_)
        if self.S is None:
            dead = K.apply_single(self.m, self.agg, act, w["ri"], keep)
            pruned = dead
        else:
            pruned, dead = K.apply_multi(self.m, self.low, self.agg, act, w["n_hi"], w["sum_lo"], w["stop_val"],
                                         w["ri"], w["rp"], w["rv"], keep, self.k, self.power)
        self.kept -= int(pruned)
        self.alive -= int(dead)
        self._maybe_compact()

    def sample(self, c: tuple, stride: int, form: str) -> np.ndarray:
        """The sample of :meth:`LayerState.sample`, in one kernel call."""
        bs, fs = np.ascontiguousarray(c[0], np.float64), np.ascontiguousarray(c[1], np.float64)
        compact, ids, vv, uu, n_in, gout, grouped = self._layout()
        return K.sample(_NO_ROWS if self.S is None else self.S, self.agg, self.m, ids, vv, uu, compact, n_in, gout,
                        grouped, bs, fs, int(stride), form == "w_grad", self.power)
