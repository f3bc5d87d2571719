"""The bracket's sample of iterative SynFlow (:func:`._flowstep._sample`), compiled: the scores of
every kept element of every ``stride``-th tracked bundle of a layer, as the numpy engine's
:meth:`._flowprune.LayerState.sample`.

The sampled bundles lie far apart (one in hundreds), so each would be a wait on the memory: the
loop asks for what the bundles a few strides ahead read (:mod:`._prefetch`) while it scores
this one (vgg19's sample 30% shorter in a profile).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._prefetch import prefetch_row
from ._synflow_kernels import _SIGN, AHEAD, _factor, _score, _value


@njit(cache=True, nogil=True)
def sample(keys, low, lowk, agg, raw, m, ids, compact, n_in, group_out, grouped, bs, fs, stride, wgrad, power):
    """Scores of every kept element of every ``stride``-th tracked bundle (``keys`` empty: ``k = 1``,
    ``|w|`` off the aggregate), as :meth:`._flowprune.LayerState.sample` (a bundle's in another
    order: the keys above its smallest kept one in row order, then that one's copies)."""
    n = m.size
    k = keys.shape[1] if keys.size else 1
    out = np.empty(((n + stride - 1) // stride) * k, np.float64)
    kb = np.empty(1, np.uint32)
    kf = kb.view(np.float32)
    no = 0
    m2, ids2, low2, agg2 = m.reshape((n, 1)), ids.reshape((ids.size, 1)), low.reshape((-1, 1)), agg.reshape((-1, 1))
    for t in range(0, n, stride):  # (what a few bundles ahead read, on its way: the loop waits on the memory else)
        ta = t + AHEAD * stride
        if ta < n:
            ra = np.int64(ids[ta]) if compact else ta
            prefetch_row(m2, ta)
            if keys.size:
                prefetch_row(low2, ta)
            else:
                prefetch_row(agg2, ta)
            if compact and ta + AHEAD * stride < n:
                prefetch_row(ids2, ta + AHEAD * stride)
            if keys.size:
                prefetch_row(keys, ra)
        mt = np.int64(m[t])
        if mt == 0:
            continue
        row = np.int64(ids[t]) if compact else t
        v, j = row // n_in, row % n_in
        c = _factor(bs[v], fs[(v // group_out) * n_in + j if grouped else j])
        if keys.size == 0:
            a = _value(agg[t], raw, power)
            out[no] = _score(a if power == 1 else np.sqrt(a), c, wgrad)
            no += 1
            continue
        lk, above = lowk[t], 0
        for q in range(k):
            kb[0] = keys[row, q] & _SIGN
            if kb[0] > lk:
                out[no] = _score(np.float64(kf[0]), c, wgrad)
                no += 1
                above += 1
        s = _score(np.float64(low[t]), c, wgrad)
        for _ in range(mt - above):
            out[no] = s
            no += 1
    return out[:no]
