"""Compiled per-layer walks of iterative SynFlow (:mod:`._synflow_fast`): numba, one pass each
(the updates that follow are in :mod:`._synflow_updates`).

Each kernel does, bundle by bundle in one loop, what :class:`._flowprune.LayerState` does with
a dozen whole-array numpy operations: the margin test of the candidates, the walk of a
candidate's sorted ``|w|`` (:func:`._flowwalk.scan_bundles`; its first :data:`WINDOW` values
without a branch on their scores, as most walks end there) and the bracket's sample.
The arithmetic is the same, operation for operation, in the same order (float32 ``|w|`` cast
to float64, ``c = max(b[v] f[u], floor)``, the pruned values summed in ascending order from
0), so the results are those of the numpy engine bit for bit; ``tests/netgraph/
test_synflow_kernels.py`` checks it. Kernels release the GIL (``nogil``), so the layers of a
large net run in the engine's thread pool; ``cache=True`` compiles them once per install.

``S`` is the layer's sorted ``|w|`` position-major, ``(k, bundles)``: a walk reads the same
few positions of many bundles in ascending bundle order, streams of the memory the
prefetcher follows (twice as fast as bundle-major rows on vgg16's first linear layer).

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


@njit(cache=True, nogil=True)
def _prefix_plain(S, row, p0, c, lo, hi):
    """SynFlow's walk of one bundle (scores ``x c``, no NaN): the ends of the prefixes below
    ``lo`` and up to ``hi``, and the pruned values' sum (ascending, from 0)."""
    k = S.shape[0]
    p = p0
    acc = 0.0
    while p < k:
        x = np.float64(S[p, row])
        if not x * c < lo:
            break
        acc += x
        p += 1
    q = p
    while q < k:
        if not np.float64(S[q, row]) * c <= hi:
            break
        q += 1
    return (p, q), acc


#: Kept values of a bundle SynFlow's walk reads at once, without a branch on their scores.
WINDOW = 4


@njit(cache=True, nogil=True)
def _window(S, row, p0, first, c, lo, hi, na, ri, rp, rv, rs, nr):
    """SynFlow's walk (scores ``x c``, ``lo <= hi``) over the bundle's first :data:`WINDOW`
    kept values (``first = S[p0, row]``), without branches: the counts below ``lo`` and up to
    ``hi`` in the window, the pruned values' sum (ascending, from 0), and the window's records
    written from ``nr`` on (the caller keeps ``nh - nl`` of them; room for ``WINDOW`` needed)."""
    nl = 0
    nh = 0
    acc = 0.0
    for j in range(WINDOW):
        x32 = first if j == 0 else S[p0 + j, row]
        x = np.float64(x32)
        sc = x * c
        below, upto = sc < lo, sc <= hi
        acc = acc + x if below else acc
        nl += below
        nh += upto
        ri[nr], rp[nr], rv[nr], rs[nr] = na, p0 + j, x32, sc
        nr += upto & (not below)
    return nl, nh, acc


@njit(cache=True, nogil=True)
def _one_below(S, row, p0, c, lo, hi):
    """SynFlow's walk (scores ``x c``, ``lo <= hi``): whether the bundle's second kept value (if
    any) scores neither up to ``hi`` nor below ``lo``, so that only the first may be pruned or
    a record (then the walk needs no loop)."""
    if not lo <= hi:
        return False
    if p0 + 1 >= S.shape[0]:
        return True
    x1 = np.float64(S[p0 + 1, row]) * c
    return not x1 <= hi and not x1 < lo


@njit(cache=True, nogil=True)
def _multi_part(t0, n, S, m, low, ids, indptr, compact, n_in, group_out, grouped, bs, fs, rhs, all_alive, lowmode,
                lo, hi, wgrad, power, exact, act, n_hi, sum_lo, stop_val, na, ri, rp, rv, rs, nr, state):
    """Bundles ``t0, t0 + 1, ...`` of :func:`walk_multi` into the given buffers (filled from
    ``na`` and ``nr``) until they are full; returns the next bundle and the new counts (the
    caller grows the buffers and calls again: no array is reassigned in this loop)."""
    k = S.shape[0]
    idx, hit = np.empty(BLOCK, np.int64), np.empty(BLOCK + 64, np.uint8)
    tot = 0
    plain = not exact and not wgrad and power == 1  # SynFlow: the walk without flags
    vb = np.searchsorted(indptr, t0, side="right") - 1 if compact and t0 < n else 0
    while t0 < n:
        vb, off, te = _block_row(t0, n, vb, indptr, compact, n_in, group_out, grouped)
        nc, t1 = _hits(t0, te, low, m, lowmode, False, power, fs, rhs, compact, vb, ids, off, n_in, all_alive, idx,
                       hit)
        for i in range(nc):
            t = idx[i]
            mt = np.int64(m[t])
            if na == act.size or nr + mt > ri.size:
                state[0] += tot
                return t, na, nr
            row = np.int64(ids[t]) if compact else t
            c = _factor(bs[vb], fs[row + off])
            if not np.isfinite(c):
                state[1] = 1
            p0 = k - mt
            # scores ascend: a prefix below lo (pruned; NaN too when exact), then up to hi
            if plain and lo <= hi and mt >= WINDOW:  # most candidates: no branch on a score
                nl, nh, acc = _window(S, row, p0, low[t], c, lo, hi, na, ri, rp, rv, rs, nr)
                if nh < WINDOW:  # the walk ended inside the window
                    act[na], n_hi[na], sum_lo[na] = t, nh, acc
                    stop_val[na] = (S[p0 + nh, row] if p0 + nh < k else np.float32(np.nan)) if nh else low[t]
                    nr += nh - nl
                    na += 1
                    tot += nh
                    continue
            if plain and _one_below(S, row, p0, c, lo, hi):  # (fewer than WINDOW kept)
                x0 = np.float64(low[t])  # S[p0, row]
                nl, nh = np.int64(x0 * c < lo), np.int64(x0 * c <= hi)
                act[na], n_hi[na], sum_lo[na] = t, nh, x0 if nl else 0.0  # (0.0 + x0 is x0)
                stop_val[na] = (S[p0 + 1, row] if p0 + 1 < k else np.float32(np.nan)) if nh else low[t]
                ri[nr], rp[nr], rv[nr], rs[nr] = na, p0, low[t], x0 * c  # kept when it is a record
                nr += nh - nl
                na += 1
                tot += nh
                continue
            if plain:
                ends, acc = _prefix_plain(S, row, p0, c, lo, hi)
                nl, p = ends[0] - p0, ends[1]
            else:
                p = p0
                acc = 0.0
                while p < k:
                    x = np.float64(S[p, row])
                    s = _score(x, c, wgrad)
                    if not ((s < lo) | (exact & (s != s))):
                        break
                    acc += x if power == 1 else x * x
                    p += 1
                nl = p - p0
                while p < k:
                    s = _score(np.float64(S[p, row]), c, wgrad)
                    if not ((s <= hi) | (exact & (s != s))):
                        break
                    p += 1
            nh = p - p0
            act[na], n_hi[na], sum_lo[na] = t, nh, acc
            stop_val[na] = S[p, row] if p < k else np.float32(np.nan)
            for p in range(p0 + nl, p0 + nh):
                x32 = S[p, row]
                ri[nr], rp[nr], rv[nr], rs[nr] = na, p, x32, _score(np.float64(x32), c, wgrad)
                nr += 1
            na += 1
            tot += nh
        t0 = t1
    state[0] += tot
    return n, na, nr


@njit(cache=True, nogil=True)
def walk_multi(S, m, low, ids, indptr, compact, n_in, group_out, grouped, bs, fs, rhs, all_alive, lowmode,
               lo, hi, wgrad, power, exact, t_begin, t_end, act, n_hi, sum_lo, stop_val, ri, rp, rv, rs):
    """``k > 1``, bundles ``t_begin`` to ``t_end``: candidates (margin test ``low f[u] <= rhs[v]``,
    or every live bundle when ``all_alive``) and their walks, written into the buffers given
    (kept between iterations: no fresh pages to fault in; grown when full). Returns the buffers
    (``act, n_hi, sum_lo, stop_val`` per candidate, the records ``ri, rp, rv, rs``), the counts
    of candidates and records, ``sum(n_hi)`` and whether a candidate's factor is not finite
    (then the caller walks again with ``exact=True``, comparing as ``~(s > hi)``, ``~(s >= lo)``)."""
    k = S.shape[0]
    state = np.zeros(2, np.int64)  # sum of n_hi, a factor not finite
    t, na, nr = t_begin, 0, 0
    while t < t_end:
        t, na, nr = _multi_part(t, t_end, S, m, low, ids, indptr, compact, n_in, group_out, grouped, bs, fs, rhs,
                                all_alive, lowmode, lo, hi, wgrad, power, exact, act, n_hi, sum_lo, stop_val, na, ri,
                                rp, rv, rs, nr, state)
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


@njit(cache=True, nogil=True)
def sample(S, agg, raw, m, ids, compact, n_in, group_out, grouped, bs, fs, stride, wgrad, power):
    """Scores of every kept element of every ``stride``-th tracked bundle (``S`` empty: ``k = 1``,
    ``|w|`` off the aggregate), as :meth:`._flowprune.LayerState.sample`."""
    n = m.size
    k = S.shape[0] if S.size else 1
    out = np.empty(((n + stride - 1) // stride) * k, np.float64)
    no = 0
    for t in range(0, n, stride):
        mt = np.int64(m[t])
        if mt == 0:
            continue
        row = np.int64(ids[t]) if compact else t
        v, j = row // n_in, row % n_in
        c = _factor(bs[v], fs[(v // group_out) * n_in + j if grouped else j])
        if S.size == 0:
            a = _value(agg[t], raw, power)
            out[no] = _score(a if power == 1 else np.sqrt(a), c, wgrad)
            no += 1
            continue
        for p in range(k - mt, k):
            out[no] = _score(np.float64(S[p, row]), c, wgrad)
            no += 1
    return out[:no]
