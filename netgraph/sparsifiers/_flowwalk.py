"""The walk of iterative flow pruning along the sorted bundles of one layer (:mod:`._flowprune`).

A bundle's kept elements are the top of its ascending ``|w|`` row, and their scores rise
along the row, so the elements scoring below a bound are a prefix from the smallest kept
one. :func:`scan_bundles` finds that prefix for many bundles at once, by windows of a few
elements read in one gather (``window`` adapts to what bundles needed the last time;
bundles that pass a whole window go on with one twice as wide), in blocks of rows that keep
the temporaries in cache, counting with one popcount per row. It costs what the plain
element-by-element walk costs in elements read, with a handful of whole-array operations
per window instead of a dozen per element step.
"""

from __future__ import annotations

import numpy as np


def power_of(power: int, v: np.ndarray) -> np.ndarray:
    """``|w|`` (``power=1``) or ``w^2`` (``power=2``) of float32 ``|w|``, exactly, in float64."""
    v = v.astype(np.float64)
    return v if power == 1 else v * v


def rhs(hi: float, bs: np.ndarray) -> np.ndarray:
    """Per destination unit, the bound ``hi / b`` of the margin test ``low f <= hi / b`` (relative
    margin 1e-9). ``b = 0``: the bundles' scores are floored to ``|w| * floor``, which may be
    ``<= hi`` even at ``hi = 0`` (zero weights): ``inf`` lets the walk decide (``0 / 0`` would
    be NaN and drop them)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rhs = hi * (1.0 + 1e-9) / bs
    rhs[bs == 0] = np.inf
    return rhs


def ranges(a: np.ndarray, b: np.ndarray) -> tuple:
    """Flatten the ranges ``[a[i], b[i])``: ``(i, position)`` per element, ranges in order."""
    n = b - a
    i = np.repeat(np.arange(a.size), n)
    return i, np.arange(i.size) - np.repeat(np.cumsum(n) - n - a, n)


def count_rows(b: np.ndarray) -> np.ndarray:
    """True values per row of a C-contiguous bool matrix (one popcount for 1, 2, 4, 8 columns)."""
    w = b.shape[1]
    if w in (1, 2, 4, 8) and b.flags.c_contiguous and hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(b.view(f"u{w}")).ravel()
    return np.count_nonzero(b, axis=1)


def score(v: np.ndarray, c: np.ndarray, form: str) -> np.ndarray:
    """Scores of elements ``|w| = v`` with factors ``c``: ``v c`` or ``2 v^2 c`` (``w_grad``), float64."""
    if form == "w_grad":
        v = v.astype(np.float64)  # a float32 square would round
        return v * v * (2.0 * c)
    return v * c


def scan_bundles(S, power: int, window: int, fs, end, cc, lo, hi, form, block: int = 1 << 14) -> tuple:
    """From flat positions ``fs`` of ``S`` on (row ends ``end``), window by window: the
    counts ``n_hi`` (score <= hi; NaN too) and ``n_lo`` (< lo; NaN too), the pruned
    values' sum added in ascending order, and the first value above ``hi`` (NaN: none).
    Blocks of rows keep the temporaries in cache."""
    k, S, n = S.shape[1], S.reshape(-1), fs.size
    n_hi, n_lo, sum_lo = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
    stop_val = np.full(n, np.nan, np.float32)
    exact = not np.isfinite(cc).all()  # NaN scores possible: compare as the plain walk did
    todo, w = [slice(s, min(n, s + block)) for s in range(0, n, block)], window
    while todo:
        nxt = []
        for r in todo:  # a slice of rows (first window) or an array of rows
            first = isinstance(r, slice)
            st, e = (fs[r], end[r]) if first else (fs[r] + n_hi[r], end[r])
            room = e - st
            idx = st[:, None] + np.arange(w)
            clip = room.min() < w
            if clip:
                valid = np.arange(w) < room[:, None]
                idx = np.minimum(idx, (e - 1)[:, None])
            V = S[idx]
            sc = score(V, cc[r, None], form)
            g, p = (~(sc > hi), ~(sc >= lo)) if exact else (sc <= hi, sc < lo)
            if clip:
                g &= valid
                p &= valid
            le, pl = count_rows(g), count_rows(p)
            n_hi[r] += le
            if pl.any():  # the sums continue in ascending order; a value not pruned adds 0.0
                n_lo[r] += pl
                vv, acc = power_of(power, V) * p, sum_lo[r]
                for j in range(w):
                    acc += vv[:, j]
                sum_lo[r] = acc
            stop = np.flatnonzero(le < np.minimum(room, w))
            more = np.flatnonzero((le == w) & (room > w))
            stop_val[stop + r.start if first else r[stop]] = V[stop, le[stop]]
            nxt.append(more + r.start if first else r[more])
        rows = np.concatenate(nxt)
        todo, w = [rows[s:s + block] for s in range(0, rows.size, block)], min(k, 2 * w)
    if n:  # next time, a first window that most bundles stop in
        window = int(min(k, 8, 2 ** np.ceil(np.log2(n_hi.mean() + 1))))
    return n_hi, n_lo, sum_lo, stop_val, window
