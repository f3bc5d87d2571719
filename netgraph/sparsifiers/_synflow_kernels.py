"""Compiled per-layer walks of iterative SynFlow (:mod:`._synflow_fast`): numba, one pass each
(the updates that follow are in :mod:`._synflow_updates`).

Each kernel does, bundle by bundle in one loop, what :class:`._flowprune.LayerState` does with
a dozen whole-array numpy operations: the margin test of the candidates, the walk of a
candidate's kept ``|w|`` in ascending order (:func:`._flowwalk.scan_bundles`) and the
bracket's sample. The arithmetic is the same, operation for operation, in the same order
(float32 ``|w|`` cast to float64, ``c = max(b[v] f[u], floor)``, the pruned values summed in
ascending order from 0), so the results are those of the numpy engine bit for bit;
``tests/netgraph/test_synflow_kernels.py`` checks it. Kernels release the GIL (``nogil``), so
the layers of a large net run in the engine's thread pool; ``cache=True`` compiles them once
per install.

No sorted copy of the weights: the reference's ``S`` (4 bytes a weight, 0.85x vgg16's weight
bytes) is what put SynFlow's peak above 3x. A bundle keeps its ``m`` largest ``|w|``, so its
kept values in ascending order are its smallest kept one (``low``) as often as ``m`` exceeds
the count of keys above it, then the larger keys in order; ``keys`` are the weights' bits
without the sign (``|w|`` as float32 bits order as unsigned integers: a view of float32
weights, no copy). A walk past a candidate's first value reads its row once, in a vectorised
pass with no branch on a key (bundles of more than 64: then a branch-free second pass;
:func:`_multi_part`; the rows of the next candidates prefetched, :mod:`._prefetch`).
SynFlow's peak on vgg16 falls from 4.1x to 2.9x the weight bytes.

Layouts: a layer's tracked bundles are either all of them (``compact=False``: bundle ``t``
is ``(v, j) = divmod(t, n_in)``, source ``u = j`` or ``(v // group_out) n_in + j`` when
``grouped``) or the survivors (``compact=True``: bundle ids ``ids[t]``, in id order, so the
rows are runs: row ``v`` holds ``indptr[v]`` to ``indptr[v + 1]``, which the walks use; the
source of survivor ``t`` in row ``v`` is that of bundle ``ids[t]``, ``ids[t] + off(v)``).
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit

from .._numba import watch_compiles
from ._prefetch import prefetch_row

watch_compiles()  # (the notice of a first compile: netgraph._numba)
if sys.byteorder != "little":  # (_hits reads eight byte flags as one word, byte j as its bit j)
    raise ImportError("the compiled SynFlow kernels need a little-endian machine")

FLOOR = 1e-35  # as _flowprune._FLOOR
#: ``lowmode`` of the margin test: its value from ``x = float64(low or aggregate)``.
LOW_X, LOW_SQRT, LOW_2XX, LOW_2X = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def _grow(a, n):
    """``a`` with room for index ``n`` (doubled when full)."""
    if n < a.size:
        return a
    b = np.empty(2 * a.size + 64, a.dtype)
    b[:a.size] = a
    return b


@njit(cache=True, nogil=True)
def _low(x, lowmode):
    if lowmode == 0:
        return x
    if lowmode == 1:
        return np.sqrt(x)
    if lowmode == 2:
        return 2.0 * (x * x)
    return 2.0 * x


@njit(cache=True, nogil=True)
def _value(x, raw, power):
    """A one-element bundle's aggregate (float64): stored, or read off its weight (``raw``):
    ``|w|`` or ``w^2``, exactly the stored value."""
    a = np.float64(x)
    if not raw:
        return a
    return abs(a) if power == 1 else a * a


@njit(cache=True, nogil=True)
def _score(x, c, wgrad):
    """``x c`` or ``2 x^2 c`` (float64 ``x``), as :func:`._flowwalk.score`."""
    if wgrad:
        return x * x * (2.0 * c)
    return x * c


@njit(cache=True, nogil=True)
def _factor(b, f):
    c = b * f
    return c if not c < FLOOR else FLOOR  # np.maximum: NaN stays NaN


BLOCK = 2048  # bundles whose margin test runs in one branch-free (vectorised) loop
#: A word of eight flags (bytes 0 or 1) times this holds them as the bits of its top byte
#: (byte ``j`` as bit ``j``: the partial products never carry).
_GATHER = np.uint64(0x0102040810204080)
#: A de Bruijn sequence: a power of two ``2^i`` times it, shifted right by 58, indexes ``i`` in
#: :data:`_BIT_AT` (the lowest set bit's position without a loop).
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_AT = np.zeros(64, np.int64)
_BIT_AT[[((1 << i) * int(_DE_BRUIJN)) % 2**64 >> 58 for i in range(64)]] = np.arange(64)


@njit(cache=True, nogil=True)
def _block_row(t0, n, v, indptr, compact, n_in, group_out, grouped):
    """The row of tracked bundle ``t0`` (compacted: from row ``v`` on, the rows' runs in
    ``indptr``), the row's sources' offset (bundle id ``t`` has source ``u = t + off``) and the
    end of the walk's range inside that row (compacted) or the range's end."""
    if compact:
        while indptr[v + 1] <= t0:
            v += 1
    else:
        v = t0 // n_in
    off = (v // group_out) * n_in - v * n_in if grouped else -v * n_in
    return v, off, (min(n, indptr[v + 1]) if compact else n)


@njit(cache=True, nogil=True)
def _flags(x, m, fs, r, lowmode, raw, power, hit):
    """``hit[i]``: live and ``low(x[i]) fs[i] <= r``, over aligned slices of one row (vectorised:
    no branch, no index arithmetic; SynFlow's ``low(x) = x`` or ``|w|`` has its own loop);
    ``raw``: ``x`` are the weights (:func:`_value`)."""
    if lowmode == LOW_X and not raw:
        for i in range(x.size):
            hit[i] = (m[i] > 0) & (np.float64(x[i]) * fs[i] <= r)
    elif lowmode == LOW_X and power == 1:
        for i in range(x.size):
            hit[i] = (m[i] > 0) & (abs(np.float64(x[i])) * fs[i] <= r)
    else:
        for i in range(x.size):
            hit[i] = (m[i] > 0) & (_low(_value(x[i], raw, power), lowmode) * fs[i] <= r)


@njit(cache=True, nogil=True)
def _flags_at(x, m, ids, off, fs, r, lowmode, hit):
    """:func:`_flags` of survivors, source ``ids[i] + off``."""
    if lowmode == LOW_X:
        for i in range(x.size):
            hit[i] = (m[i] > 0) & (np.float64(x[i]) * fs[np.uint64(ids[i] + off)] <= r)
    else:
        for i in range(x.size):
            hit[i] = (m[i] > 0) & (_low(np.float64(x[i]), lowmode) * fs[np.uint64(ids[i] + off)] <= r)


@njit(cache=True, nogil=True)
def _hits(t0, n, x, m, lowmode, raw, power, fs, rhs, compact, vc, ids, off, n_in, all_alive, idx, hit):
    """The live bundles of the block from ``t0`` passing the margin test ``low(x) f[u] <= rhs[v]``
    (every live one when ``all_alive``), written to ``idx``; returns ``(count, block end)``.
    A block ends at ``n`` and in one destination row (``rhs`` and the sources' offset ``off``
    fixed): compacted, the caller ends ``n`` with row ``vc``, the block's. The tests' flags
    are found first (:func:`_flags`, into ``hit``: ``BLOCK + 64`` bytes), then gathered 64 at a
    time into the bits of a word, whose set bits are the passing bundles, lowest first (no
    branch on a flag: one on a word of eight mispredicts when a few % pass, as SynFlow's do)."""
    v = vc if compact else t0 // n_in
    t1 = min(n, t0 + BLOCK) if compact else min(n, t0 + BLOCK, (v + 1) * n_in)
    c = 0
    if all_alive:
        for t in range(t0, t1):
            idx[c] = t
            c += m[t] > 0
        return c, t1
    if compact:
        _flags_at(x[t0:t1], m[t0:t1], ids[t0:t1], off, fs, rhs[v], lowmode, hit)
    else:
        _flags(x[t0:t1], m[t0:t1], fs[t0 + off:t1 + off], rhs[v], lowmode, raw, power, hit)
    nb = t1 - t0
    hit[nb:(nb + 63) // 64 * 64] = 0
    words = hit.view(np.uint64)
    for g in range(0, (nb + 63) // 64 * 8, 8):  # 64 flags as the bits of one word
        bits = np.uint64(0)
        for j in range(8):  # a word of eight flags (bytes 0 or 1) times _GATHER: their bits in its top byte
            bits |= ((words[g + j] * _GATHER) >> np.uint64(56)) << np.uint64(8 * j)
        while bits != np.uint64(0):  # the set bits, lowest first: one pass a passing bundle
            low = bits & (~bits + np.uint64(1))
            idx[c] = t0 + 8 * g + _BIT_AT[(low * _DE_BRUIJN) >> np.uint64(58)]
            c += 1
            bits ^= low
    return c, t1


#: Keys of ``|w|``: a float32 weight's bits without the sign (non-negative floats order as their
#: bits, as unsigned integers), and the key above every other.
_SIGN = np.uint32(0x7FFFFFFF)
_TOP = np.uint32(0xFFFFFFFF)
_NONE_ABOVE = np.int64(1) << 40  # (the count pass's smallest key: int64 lanes, as numba's counts)


#: Candidates ahead of the walk whose rows are prefetched (:mod:`._prefetch`).
AHEAD = 8


@njit(cache=True, nogil=True)
def _multi_part(t0, n, keys, m, low, lowk, ids, indptr, compact, n_in, group_out, grouped, bs, fs, rhs, all_alive,
                lowmode, lo, hi, wgrad, power, exact, act, n_hi, sum_lo, stop_val, na, ri, rp, rv, rs, nr, state):
    """Bundles ``t0, t0 + 1, ...`` of :func:`walk_multi` into the given buffers (filled from
    ``na`` and ``nr``) until they are full; returns the next bundle and the new counts (the
    caller grows the buffers and calls again: no array is reassigned in this loop).

    A candidate's walk goes from its smallest kept value up: its kept values ascending are its
    ``mt`` largest keys (``keys[row]``: the weights' bits), the smallest kept (``lowk[t]``) as
    often as ``mt`` exceeds the count of keys above it, then the larger keys in order. A walk
    past the first value reads the row once: the count above it, the keys up to ``thr`` (the
    key of the largest ``|w|`` the walk may reach, from ``max(lo, hi)``; as the bits of a word
    in the same pass, then read at the set bits, or for more than 64 keys in a branch-free
    second pass: a branch on each key mispredicts, 2.7x the time of vgg16's fc1 walks at the
    first iterations) sorted into ``buf``, and the smallest above ``thr`` (the stop);
    past that (a bound too low), once more for every key left. The prefix scoring below ``lo``
    is pruned (its values summed in ascending order from 0; ``nl >= 0`` once it ends), then the
    values up to ``hi`` are records, as the walk of the sorted values (:mod:`._flowwalk`).
    Written out here, not called: a call per candidate (even inlined) is slower."""
    idx, hit = np.empty(BLOCK, np.int64), np.empty(BLOCK + 64, np.uint8)
    k = keys.shape[1]
    kb = np.empty(1, np.uint32)  # a key, and its float32 (kf)
    kf = kb.view(np.float32)
    buf = np.empty(k, np.uint32)
    bound = max(lo, hi)  # (NaN: no bound)
    tot = 0
    vb = np.searchsorted(indptr, t0, side="right") - 1 if compact and t0 < n else 0
    while t0 < n:
        vb, off, te = _block_row(t0, n, vb, indptr, compact, n_in, group_out, grouped)
        nc, t1 = _hits(t0, te, low, m, lowmode, False, power, fs, rhs, compact, vb, ids, off, n_in, all_alive, idx,
                       hit)
        for i in range(min(nc, AHEAD)):
            prefetch_row(keys, np.int64(ids[idx[i]]) if compact else idx[i])
        for i in range(nc):
            if i + AHEAD < nc:  # the row a few candidates ahead, on its way while this one is walked
                prefetch_row(keys, np.int64(ids[idx[i + AHEAD]]) if compact else idx[i + AHEAD])
            t = idx[i]
            mt = np.int64(m[t])
            if na == act.size or nr + mt > ri.size:
                state[0] += tot
                return t, na, nr
            row = np.int64(ids[t]) if compact else t
            c = _factor(bs[vb], fs[row + off])
            if not np.isfinite(c):
                state[1] = 1
            xmax = (np.sqrt(bound / (2.0 * c)) if wgrad else bound / c) * 1.000001  # the walk's largest |w| (margin 1e-6)
            thr = _TOP
            if not exact and 0.0 <= xmax < 3e38:  # as a key (else none: every key above is read)
                kf[0] = np.float32(xmax)
                thr = kb[0]
            p0 = k - mt
            p, nl = p0, -1
            q0, nb, nxt, full = -1, 0, _TOP, False  # from position q0: buf[:nb], then nxt (q0 < 0: not read)
            after = lowk[t]
            kb[0] = after
            x32 = kf[0]
            acc = 0.0
            while True:
                x = np.float64(x32)
                s = _score(x, c, wgrad)
                nan = exact & (s != s)
                if nl < 0:
                    if (s < lo) | nan:
                        acc += x if power == 1 else x * x
                    else:
                        nl = p - p0
                if nl >= 0:
                    if not ((s <= hi) | nan):
                        break
                    ri[nr], rp[nr], rv[nr], rs[nr] = na, p, x32, s
                    nr += 1
                p += 1
                if p == k:
                    break
                j = p - q0
                if q0 < 0 or (j > nb and not full):  # read the row: the keys above `after` up to `top`
                    top = thr
                    if q0 >= 0:  # past the stop the bound gave: every key above those read
                        after, top, full = (buf[nb - 1] if nb else after), _TOP, True
                    cnt, big, bits, nb = 0, _NONE_ABOVE, np.uint64(0), 0
                    af, tp, word = np.int64(after), np.int64(top), np.int64(k <= 64)
                    for q in range(k):  # vectorised: the counts, the smallest key above top, and (k <= 64)
                        a = np.int64(keys[row, q]) & 0x7FFFFFFF  # the keys up to top as the bits of a word
                        g = np.int64(a > af)
                        h = g & np.int64(a > tp)
                        cnt += g
                        bits |= np.uint64((g - h) * word) << np.uint64(q & 63)
                        big = min(big, a if h else _NONE_ABOVE)
                    while bits != np.uint64(0):  # those keys: one step a set bit, lowest first
                        lb = bits & (~bits + np.uint64(1))
                        buf[nb] = keys[row, _BIT_AT[(lb * _DE_BRUIJN) >> np.uint64(58)]] & _SIGN
                        nb += 1
                        bits ^= lb
                    for q in range(k if k > 64 else 0):  # else a second pass (branch-free: no mispredictions)
                        a = keys[row, q] & _SIGN
                        buf[nb] = a
                        nb += (a > after) & (a <= top)
                    nxt = np.uint32(big) if big < _NONE_ABOVE else _TOP
                    if nb > 32:
                        buf[:nb].sort()
                    for q in range(1, nb if nb <= 32 else 0):  # insertion sort: a few keys (numba's: 1 us a call)
                        a = buf[q]
                        r = q - 1
                        while r >= 0 and buf[r] > a:
                            buf[r + 1] = buf[r]
                            r -= 1
                        buf[r + 1] = a
                    q0 = k - cnt  # (before it: copies of the smallest kept value)
                    j = p - q0
                if j >= 0:
                    kb[0] = buf[j] if j < nb else nxt
                    x32 = kf[0]
            act[na], n_hi[na], sum_lo[na] = t, p - p0, acc
            stop_val[na] = x32 if p < k else np.float32(np.nan)
            na += 1
            tot += p - p0
        t0 = t1
    state[0] += tot
    return n, na, nr


@njit(cache=True, nogil=True)
def walk_multi(keys, m, low, lowk, ids, indptr, compact, n_in, group_out, grouped, bs, fs, rhs, all_alive, lowmode,
               lo, hi, wgrad, power, exact, t_begin, t_end, act, n_hi, sum_lo, stop_val, ri, rp, rv, rs):
    """``k > 1``, bundles ``t_begin`` to ``t_end``: candidates (margin test ``low f[u] <= rhs[v]``,
    or every live bundle when ``all_alive``) and their walks (:func:`_multi_part`; ``keys``:
    the weights' bits, bundle by bundle; ``lowk``: ``low``'s), written into the buffers given
    (kept between iterations: no fresh pages to fault in; grown when full). Returns the buffers
    (``act, n_hi, sum_lo, stop_val`` per candidate, the records ``ri, rp, rv, rs``), the counts
    of candidates and records, ``sum(n_hi)`` and whether a candidate's factor is not finite
    (then the caller walks again with ``exact=True``, comparing as ``~(s > hi)``, ``~(s >= lo)``)."""
    k = keys.shape[1]
    state = np.zeros(2, np.int64)  # sum of n_hi, a factor not finite
    t, na, nr = t_begin, 0, 0
    while t < t_end:
        t, na, nr = _multi_part(t, t_end, keys, m, low, lowk, ids, indptr, compact, n_in, group_out, grouped, bs, fs,
                                rhs, all_alive, lowmode, lo, hi, wgrad, power, exact, act, n_hi, sum_lo, stop_val, na,
                                ri, rp, rv, rs, nr, state)
        if na == act.size:
            act, n_hi, sum_lo, stop_val = _grow(act, na), _grow(n_hi, na), _grow(sum_lo, na), _grow(stop_val, na)
        if nr + k > ri.size:
            ri, rp, rv, rs = _grow(ri, ri.size), _grow(rp, rp.size), _grow(rv, rv.size), _grow(rs, rs.size)
    return act, n_hi, sum_lo, stop_val, ri, rp, rv, rs, na, nr, state[0], state[1] > 0


@njit(cache=True, nogil=True)
def _single_part(t0, n, agg, raw, m, indptr, ids, compact, n_in, group_out, grouped, bs, fs, rhs, all_alive, lowmode, lo,
                 hi, wgrad, power, act, na, ri, rs, nr):
    """Bundles ``t0, ...`` of :func:`walk_single` into the buffers until they are full."""
    idx, hit = np.empty(BLOCK, np.int64), np.empty(BLOCK + 64, np.uint8)
    vb = np.searchsorted(indptr, t0, side="right") - 1 if compact and t0 < n else 0
    while t0 < n:
        vb, off, te = _block_row(t0, n, vb, indptr, compact, n_in, group_out, grouped)
        nc, t1 = _hits(t0, te, agg, m, lowmode, raw, power, fs, rhs, compact, vb, ids, off, n_in, all_alive, idx,
                       hit)
        for i in range(nc):
            t = idx[i]
            a = _value(agg[t], raw, power)
            c = _factor(bs[vb], fs[(np.int64(ids[t]) if compact else t) + off])
            if wgrad:
                s = (a if power == 2 else a * a) * (2.0 * c)
            else:
                s = (a if power == 1 else np.sqrt(a)) * c
            if na == act.size or nr == ri.size:
                return t, na, nr
            act[na], ri[nr], rs[nr] = t, na, s  # kept when a candidate, and a record (no branch on s)
            cand = not s > hi  # (NaN: a candidate, not a record, as the numpy walk)
            nr += cand & (s >= lo)
            na += cand
        t0 = t1
    return n, na, nr


@njit(cache=True, nogil=True)
def walk_single(agg, raw, m, indptr, ids, compact, n_in, group_out, grouped, bs, fs, rhs, all_alive, lowmode, lo, hi,
                wgrad, power, t_begin, t_end, act, ri, rs):
    """``k = 1``, bundles ``t_begin`` to ``t_end``: the live bundles passing the margin test
    whose exact score is not above ``hi`` (``act``), and the records ``ri`` (index into ``act``)
    of those scoring ``>= lo`` with their scores ``rs``; ``|w|`` is read off the aggregate
    (``|w|`` or ``w^2``), or off the weights themselves (``raw``: the full layout of an
    ungrouped layer). Buffers as :func:`walk_multi`; returns them and the two counts."""
    t, na, nr = t_begin, 0, 0
    while t < t_end:
        t, na, nr = _single_part(t, t_end, agg, raw, m, indptr, ids, compact, n_in, group_out, grouped, bs, fs, rhs,
                                 all_alive, lowmode, lo, hi, wgrad, power, act, na, ri, rs, nr)
        if na == act.size:
            act = _grow(act, na)
        if nr == ri.size:
            ri, rs = _grow(ri, nr), _grow(rs, nr)
    return act, ri, rs, na, nr
