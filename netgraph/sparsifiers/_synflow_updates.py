"""Compiled per-layer updates of iterative SynFlow's state (:mod:`._synflow_fast`): numba, one
pass each, most after a walk (:mod:`._synflow_kernels`) has found the candidates.

:func:`smallest_keys` gives a multi-element layer's smallest ``|w|`` per bundle when its state
is built; :func:`apply_multi` and :func:`apply_single` set the new kept counts, aggregates and smallest
kept values of the candidates from the threshold's choice; :func:`compact` keeps the surviving
bundles' vectors (in place, with the rows' offsets); :func:`rows_matvec` and :func:`rows_rmatvec`
are the flows' products over a compacted layer; :func:`final_multi` writes a layer's mask.
As the walks, they do what :class:`._flowprune.LayerState` does with whole-array numpy
operations, in the same order, so the states and masks are those of the numpy engine bit for
bit (``tests/netgraph/test_synflow_kernels.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._synflow_kernels import _SIGN, _TOP, _value


@njit(cache=True, nogil=True)
def smallest_keys(keys, out):
    """``out[b]``: the smallest ``keys[b] & _SIGN`` (``keys``: the bits of float32 weights; the
    sign dropped: ``|w|``); as a float32, the bundle's smallest ``|w|``, NaN only when all are
    (NaN last, as in a sort: the reference's ``S[:, 0]``). One vectorised pass (numpy's row
    minimum took 12 ns a weight of vgg19)."""
    for b in range(keys.shape[0]):
        low = _TOP
        for q in range(keys.shape[1]):
            low = min(low, keys[b, q] & _SIGN)
        out[b] = low


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
def apply_single(m, agg, raw, act, ri, keep):
    """``k = 1``: every candidate dies but the kept records; returns the bundles emptied. The
    kept ones are marked in ``act`` itself (``~t``, negative), the walk's buffer. ``raw``: the
    aggregate is the weights, never written (``agg`` unused; the kept flags say what is kept)."""
    for r in range(ri.size):
        if keep[r]:
            act[ri[r]] = ~act[ri[r]]
    dead = 0
    for i in range(act.size):
        if act[i] >= 0:
            if not raw:
                agg[act[i]] = 0.0
            m[act[i]] = 0
            dead += 1
    return dead


@njit(cache=True, nogil=True)
def compact(m, agg, raw, power, low, ids, rows, compact, n_in, m2, agg2, low2, ids2, indptr):
    """The surviving bundles (``m > 0``) of a layer's tracked ones, in order, into the new
    vectors: kept count, aggregate, smallest kept value (``low`` empty: ``k = 1``) and bundle
    id, as :meth:`._flowprune.LayerState._compact` (``raw``: ``agg`` are the weights, whose
    ``|w|`` or ``w^2`` the new aggregate holds); and the survivors' row offsets (``indptr``,
    the CSR matrix's; ``rows``: the tracked bundles' when ``compact``). The loop writes every
    bundle at the count of survivors before it and moves on past a survivor only (no branch to
    mispredict): an output may be the input itself (the count never passes the bundle read),
    else it needs one spare element."""
    c = 0
    has_low = low.size > 0
    for v in range(indptr.size - 1):
        if compact:
            for t in range(rows[v], rows[v + 1]):
                m2[c], agg2[c], ids2[c] = m[t], agg[t], ids[t]
                if has_low:
                    low2[c] = low[t]
                c += m[t] > 0
        else:
            for t in range(v * n_in, (v + 1) * n_in):
                m2[c], agg2[c], ids2[c] = m[t], _value(agg[t], raw, power), t
                if has_low:
                    low2[c] = low[t]
                c += m[t] > 0
        indptr[v + 1] = c
    return c


@njit(cache=True, nogil=True)
def rows_matvec(indptr, ids, agg, n_in, x, out):
    """``out[v] = sum agg[t] x[ids[t] - v n_in]`` over row ``v``'s survivors, in order from 0:
    scipy's CSR product (``csr_matvec``), the same sums bit for bit, without its CSR copy."""
    for v in range(indptr.size - 1):  # (unsigned indices: no wraparound test, as fast as scipy)
        s = 0.0
        base = np.uint64(v * n_in)
        for t in range(np.uint64(indptr[v]), np.uint64(indptr[v + 1])):
            s += agg[t] * x[np.uint64(ids[t]) - base]
        out[v] = s
    return out


@njit(cache=True, nogil=True)
def rows_rmatvec(indptr, ids, agg, n_in, y, out):
    """The transpose: ``out[j] += agg[t] y[v]`` in storage order, as scipy's ``csc_matvec`` of
    the CSR matrix's transpose."""
    out[:] = 0.0
    for v in range(indptr.size - 1):
        yv = y[v]
        base = np.uint64(v * n_in)
        for t in range(np.uint64(indptr[v]), np.uint64(indptr[v + 1])):
            out[np.uint64(ids[t]) - base] += agg[t] * yv
    return out


@njit(cache=True, nogil=True)
def final_multi(W, m, low, ids, compact, out):
    """``k > 1``: ``out[b]`` flags bundle ``b``'s ``m`` largest ``|w|`` (``W`` its weights, ``low``
    the smallest kept, over the tracked bundles, ids ``ids`` when ``compact``), ties at the cut
    in parameter order, as :meth:`._flowprune.LayerState.final_mask`; ``out`` starts all False."""
    k = W.shape[1]
    for t in range(m.size):
        mb = np.int64(m[t])
        if mb == 0:
            continue
        b = np.int64(ids[t]) if compact else t
        cut = low[t]
        quota = mb
        for j in range(k):
            quota -= abs(W[b, j]) > cut
        for j in range(k):
            a = abs(W[b, j])
            tie = (a == cut) & (quota > 0)
            out[b, j] = (a > cut) | tie
            quota -= tie


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def masked_matvec(w, m, power, n_in, x, out):
    """``out[v] = sum_j a(w[v, j]) x[j]`` over the kept bundles of an ungrouped one-element layer
    read in place (``a``: ``|w|`` or ``w^2``; a dead bundle adds an exact 0). The one kernel
    whose sums the compiler may reassociate (``fastmath={"reassoc"}``, nothing else): it
    vectorises them, about BLAS's order and speed, from float32 weights and byte flags; the
    order is fixed for a machine, so the same inputs give the same bits."""
    for v in range(out.size):
        r, q = w[v * n_in:(v + 1) * n_in], m[v * n_in:(v + 1) * n_in]
        s = 0.0
        if power == 1:
            for j in range(n_in):
                s += abs(np.float64(r[j])) * np.float64(q[j]) * x[j]
        else:
            for j in range(n_in):
                a = np.float64(r[j])
                s += a * a * np.float64(q[j]) * x[j]
        out[v] = s
    return out


@njit(cache=True, nogil=True)
def masked_rmatvec(w, m, power, n_in, y, out):
    """The transpose of :func:`masked_matvec`: ``out[j] += a(w[v, j]) y[v]``, rows in order (the
    sums of :func:`rows_rmatvec` over the survivors, bit for bit; vectorised over ``j``)."""
    out[:] = 0.0
    for v in range(w.size // n_in):
        yv = y[v]
        r, q = w[v * n_in:(v + 1) * n_in], m[v * n_in:(v + 1) * n_in]  # (row views: no index arithmetic)
        if power == 1:
            for j in range(n_in):
                out[j] += abs(np.float64(r[j])) * np.float64(q[j]) * yv
        else:
            for j in range(n_in):
                a = np.float64(r[j])
                out[j] += a * a * np.float64(q[j]) * yv
    return out
