"""PHEW's compiled kernels (numba, without the GIL): the builders of its block tables
(:class:`._blocktable.BlockTable`), one pass over a layer's weights each, and its walkers'
draws (:func:`search_runs`, :func:`taps`), one loop over a batch of walkers each.

The numpy code they replace stays where numba cannot be imported; both give the same bits
(``tests/netgraph/test_phew_block.py``, ``test_phew_fast.py``). The builders compute what the
numpy build of :class:`~._blocktable.BlockTable` computes, in the same order: each element's
float64 value as :func:`~._bias.element_values` gives it, running sums added one element
at a time (a cumsum's order), and the totals beside a shortcut as ``numpy.sum`` adds a
contiguous row (:func:`_pairwise`, numpy's pairwise summation). The numpy build made several
float64 temporaries a chunk and held the GIL between them: two threads building two layers'
tables took longer than one (ViT-B/16: 1.1-1.3 s on two threads, 1.0 s on one).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._sum_kernels import leaf as _leaf
from .._sum_kernels import pairwise as _pairwise
from .._sum_kernels import plan as _plan
from ._prefetch import prefetch_row

#: Walkers whose binary searches :func:`search_runs` runs side by side (their reads overlap).
LANES = 16
#: Walkers ahead of :func:`taps`' draw whose kernels are prefetched.
AHEAD = 8
#: The walk biases' codes in the kernels (:data:`~._bias.BIASES`).
BIAS_CODES = {"magnitude": 0, "uniform": 1, "inverse": 2, "inverse_element": 3, "square": 4}


@njit(cache=True, nogil=True)
def _values(w, bias, one, out):
    """``out[i]``: the float64 total of the one-element bundle ``w[i]``, as
    :func:`~._bias.element_values` gives it (``one``: 1 in the weights' dtype, whose
    ``1 / |w|`` ``inverse_element`` takes); one loop per bias, so that each vectorises."""
    n = w.size
    if bias == 0:
        for i in range(n):
            out[i] = abs(np.float64(w[i]))
    elif bias == 1:
        out[:n] = 1.0
    elif bias == 2:
        for i in range(n):
            a = abs(np.float64(w[i]))
            out[i] = 1.0 / a if a > 0 else 0.0
    elif bias == 3:
        for i in range(n):
            a = abs(w[i])
            out[i] = np.float64(one / a) if a > 0 else 0.0
    else:
        for i in range(n):
            x = np.float64(w[i])
            out[i] = x * x


@njit(cache=True, nogil=True)
def _row_values(W, bias, one, i, out):
    """``out``: row ``i`` of the values, a row of 1.0 past the last (a shortcut's column)."""
    if i < W.shape[0]:
        _values(W[i], bias, one, out)
    else:
        out[:] = 1.0


@njit(cache=True, nogil=True)
def column_totals(W, bias, one, tot):
    """Forward beside a shortcut: ``tot[u]``, ``numpy.sum`` of column ``u``'s values followed by
    1.0 (the shortcut), for every column at once: :func:`_pairwise`'s additions in its order, on
    row vectors (contiguous reads of the weights)."""
    cols = W.shape[1]
    starts, lengths, program = _plan(W.shape[0] + 1)
    sums = np.empty((64, cols))
    vals = np.empty(cols)
    top = 0
    for k in program:
        if k < 0:
            sums[top - 2] += sums[top - 1]
            top -= 1
            continue
        s, n, out = starts[k], lengths[k], sums[top]
        top += 1
        if n < 8:
            out[:] = 0.0
            for i in range(s, s + n):
                _row_values(W, bias, one, i, vals)
                out += vals
            continue
        acc = np.empty((8, cols))
        for q in range(8):
            _row_values(W, bias, one, s + q, acc[q])
        i, m = 8, n - n % 8
        while i < m:
            for q in range(8):
                _row_values(W, bias, one, s + i + q, vals)
                acc[q] += vals
            i += 8
        for c in range(cols):
            out[c] = ((acc[0, c] + acc[1, c]) + (acc[2, c] + acc[3, c])) + \
                     ((acc[4, c] + acc[5, c]) + (acc[6, c] + acc[7, c]))
        while i < n:
            _row_values(W, bias, one, s + i, vals)
            out += vals
            i += 1
    tot[:] = sums[0]


@njit(cache=True, nogil=True)
def running_down(W, bias, one, block, ends):
    """Forward: ``ends[b, u]``, the running sum of column ``u``'s values down the rows at the last
    row of block ``b`` (the last block ends at the last row), as the numpy build's row-vector adds."""
    n, cols = W.shape
    run = np.zeros(cols)
    vals = np.empty(cols)
    for i in range(n):
        _values(W[i], bias, one, vals)
        for c in range(cols):
            run[c] += vals[c]
        if i % block == block - 1:
            ends[i // block, :] = run
    ends[ends.shape[0] - 1, :] = run


@njit(cache=True, nogil=True)
def running_along(W, bias, one, block, ends, tot):
    """Backward: ``ends[u, b]``, row ``u``'s cumulative sum at the last element of block ``b``; with
    ``tot`` not empty (beside a shortcut), ``tot[u]``: ``numpy.sum`` of the row's values and 1.0.
    Eight rows at a time: one row's running sum is a chain of adds each waiting on the last, the
    eight rows' chains are independent (eight sums in registers, side by side)."""
    rows, n = W.shape
    nb = ends.shape[1]
    totals = tot.size > 0
    buf = np.zeros((8, n + 1))
    at = np.empty(8)
    plan = _plan(n + 1)
    for u0 in range(0, rows, 8):
        h = min(8, rows - u0)
        for r in range(h):  # (rows past h: unused)
            _values(W[u0 + r], bias, one, buf[r])
            if totals:
                buf[r, n] = 1.0
                tot[u0 + r] = _pairwise(buf[r], plan)
        s0, s1, s2, s3 = buf[0, 0], buf[1, 0], buf[2, 0], buf[3, 0]  # (a cumsum starts at its first element)
        s4, s5, s6, s7 = buf[4, 0], buf[5, 0], buf[6, 0], buf[7, 0]
        for b in range(nb):
            for j in range(max(1, b * block), min((b + 1) * block, n)):
                s0 += buf[0, j]
                s1 += buf[1, j]
                s2 += buf[2, j]
                s3 += buf[3, j]
                s4 += buf[4, j]
                s5 += buf[5, j]
                s6 += buf[6, j]
                s7 += buf[7, j]
            at[0], at[1], at[2], at[3], at[4], at[5], at[6], at[7] = s0, s1, s2, s3, s4, s5, s6, s7
            for r in range(h):
                ends[u0 + r, b] = at[r]


@njit(cache=True, nogil=True)
def cumsum_down(a, out):
    """``out``: the running sums of ``a``'s columns down its rows, as the numpy build's row adds
    (:class:`~._tables._DenseTable`, forward)."""
    out[0] = a[0]
    for i in range(1, a.shape[0]):
        for c in range(a.shape[1]):
            out[i, c] = out[i - 1, c] + a[i, c]


@njit(cache=True, nogil=True)
def search_runs(flat, pos, step, n, target, out):
    """:func:`~._blocktable.search_sorted_runs`: ``out[e]``, how many of the ``n`` nondecreasing
    ``flat[pos[e] + i * step]`` are ``<= target[e]``, by the same branchless binary search (the
    same reads: the same count, NaN included), :data:`LANES` walkers a level at a time."""
    p = np.empty(LANES, np.int64)
    for e0 in range(0, pos.size, LANES):
        h = min(LANES, pos.size - e0)
        for q in range(h):
            p[q] = pos[e0 + q]
        size = n
        while size > 1:
            half = size >> 1
            jump = half * step
            for q in range(h):
                p[q] += jump * (flat[p[q] + jump] <= target[e0 + q])
            size -= half
        for q in range(h):
            out[e0 + q] = (p[q] - pos[e0 + q]) // step + (flat[p[q]] <= target[e0 + q])


@njit(cache=True, nogil=True)
def taps(weight, rows, bias, one, r, out):
    """PHEW's tap stage (:func:`~._bias.tap_draws`; never ``uniform``, drawn without the
    weights): ``out[i]``, the first tap of kernel ``weight[rows[i]]`` whose float64 running sum
    of ``bias(w)`` (in the weights' dtype, as :func:`~._bias.element_weights`) exceeds ``r[i]``
    times the kernel's total, at most the last; an all-zero kernel draws ``int(r[i] * k)``. The
    running sums are added in tap order, as the numpy draw adds them."""
    if bias == 1:
        raise ValueError("uniform taps are drawn without the weights")
    k = weight.shape[1]
    acc = np.empty(k)
    for i in range(rows.size):
        if i + AHEAD < rows.size:
            prefetch_row(weight, rows[i + AHEAD])
        w = weight[rows[i]]
        run = 0.0
        for c in range(k):
            a = abs(w[c])
            if bias == 4:
                x = w[c] * w[c]
            elif bias == 0:
                x = a
            else:  # the inverse biases' tap stage: 1 / |w| in the weights' dtype, 0 at 0
                x = one / a if a > 0 else one - one
            run = np.float64(x) if c == 0 else run + np.float64(x)
            acc[c] = run
        target = r[i] * run
        t = 0
        for c in range(k):
            t += acc[c] <= target
        if run <= 0:
            t = np.int64(r[i] * k)
        out[i] = min(t, k - 1)
