"""Compiled per-layer updates of iterative SynFlow's state (:mod:`._synflow_fast`): numba, one
pass each, after a walk (:mod:`._synflow_kernels`) has found the candidates.

:func:`apply_multi` and :func:`apply_single` set the new kept counts, aggregates and smallest
kept values of the candidates from the threshold's choice; :func:`compact` keeps the surviving
bundles' vectors (in place, with the rows' offsets); :func:`final_multi` writes a layer's mask.
As the walks, they do what :class:`._flowprune.LayerState` does with whole-array numpy
operations, in the same order, so the states and masks are those of the numpy engine bit for
bit (``tests/netgraph/test_synflow_kernels.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def apply_multi(m, low, agg, act, n_hi, sum_lo, stop_val, ri, rp, rv, keep, k, power):
    """``k > 1``: new kept counts, aggregates and smallest kept values of the candidates, as
    :meth:`._flowprune.LayerState.apply`; returns ``(elements pruned, bundles emptied)``."""
    na = act.size
    first, dec, low_new = n_hi, sum_lo, stop_val  # the walk's buffers, updated in place
    for i in range(na):
        first[i] = k - np.int64(m[act[i]]) + n_hi[i]
    nr = ri.size
    for r in range(nr):  # records ascend inside a bundle: the first kept one is the new first
        i = ri[r]
        if keep[r]:
            if r == 0 or not keep[r - 1] or ri[r - 1] != i:
                first[i] = rp[r]
                low_new[i] = rv[r]
        else:
            x = np.float64(rv[r])
            dec[i] += x if power == 1 else x * x
    pruned = 0
    dead = 0
    for i in range(na):
        t = act[i]
        p0 = k - np.int64(m[t])
        mn = k - first[i]
        if first[i] > p0:
            agg[t] -= dec[i]
        if mn == 0:
            agg[t] = 0.0
            low[t] = np.nan
            dead += 1
        else:
            low[t] = low_new[i]
        pruned += first[i] - p0
        m[t] = mn
    return pruned, dead


@njit(cache=True, nogil=True)
def apply_single(m, agg, act, ri, keep):
    """``k = 1``: every candidate dies but the kept records; returns the bundles emptied. The
    kept ones are marked in ``act`` itself (``~t``, negative), the walk's buffer."""
    for r in range(ri.size):
        if keep[r]:
            act[ri[r]] = ~act[ri[r]]
    dead = 0
    for i in range(act.size):
        if act[i] >= 0:
            agg[act[i]] = 0.0
            m[act[i]] = 0
            dead += 1
    return dead


@njit(cache=True, nogil=True)
def compact(m, agg, low, ids, vv, uu, compact, n_in, group_out, grouped, m2, agg2, low2, ids2, v2, u2, indptr):
    """The surviving bundles (``m > 0``) of a layer's tracked ones, in order, into the new
    vectors: kept count, aggregate, smallest kept value (``low`` empty: ``k = 1``), bundle id
    and units, as :meth:`._flowprune.LayerState._compact`; and the survivors' row offsets
    (``indptr``, zeros on entry: the CSR matrix's). The loop writes every bundle at the count of
    survivors before it and moves on past a survivor only (no branch to mispredict): an output
    may be the input itself (the count never passes the bundle read), else it needs one spare
    element."""
    c = 0
    has_low = low.size > 0
    if compact:
        for t in range(m.size):
            m2[c], agg2[c], ids2[c], v2[c], u2[c] = m[t], agg[t], ids[t], vv[t], uu[t]
            if has_low:
                low2[c] = low[t]
            alive = m[t] > 0
            indptr[vv[t] + 1] += alive
            c += alive
        for v in range(indptr.size - 1):
            indptr[v + 1] += indptr[v]
        return c
    for v in range(m.size // n_in):  # rows, then sources: no division per bundle
        off = (v // group_out) * n_in if grouped else 0
        for j in range(n_in):
            t = v * n_in + j
            m2[c], agg2[c], ids2[c], v2[c], u2[c] = m[t], agg[t], t, v, off + j
            if has_low:
                low2[c] = low[t]
            c += m[t] > 0
        indptr[v + 1] = c
    return c


@njit(cache=True, nogil=True)
def final_multi(S, W, m, out):
    """``k > 1``: ``out[b]`` flags bundle ``b``'s ``m[b]`` largest ``|w|`` (``W`` its weights,
    ``S`` the sorted ``|w|`` position-major), ties at the cut in parameter order, as
    :meth:`._flowprune.LayerState.final_mask`."""
    k = S.shape[0]
    for b in range(W.shape[0]):
        mb = np.int64(m[b])
        if mb == 0:
            out[b, :] = False
            continue
        cut = S[k - mb, b]
        quota = mb
        for j in range(k):
            quota -= abs(W[b, j]) > cut
        for j in range(k):
            a = abs(W[b, j])
            tie = (a == cut) & (quota > 0)
            out[b, j] = (a > cut) | tie
            quota -= tie
