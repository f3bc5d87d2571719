"""numpy's pairwise summation, compiled (numba, ``nogil``, cached once per install): the same
sums bit for bit, for kernels that must give numpy's floats (PHEW's tables,
:mod:`netgraph.sparsifiers._phew_kernels`) and for :func:`abs_sums`, the bundle sums
``sum |w|`` that :meth:`netgraph.Layer.sums` takes on large graphs.

numpy adds ``n`` contiguous elements (``numpy/_core/src/umath/loops_utils.h.src``,
``pairwise_sum``) in order from 0 when ``n < 8``; up to 128 in eight running sums
``r[j] += x[i + j]``, combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, the
remainder then added in order; more, as two halves (the first rounded down to a multiple of 8)
summed alike and added. Its reduction of a ``(rows, n_in, k)`` array over the last axis,
``dtype=float64``, adds each bundle so (``tests/netgraph/test_sum_kernels.py``; numpy 2.3 and
later; but a float32 bundle of more than 8,192 elements, which numpy casts and adds in pieces of
its buffer: :meth:`netgraph.Layer.sums` keeps numpy's sums there), at some 20 ns
a bundle in calls: :func:`abs_sums` takes a quarter of the time on vgg16's 3x3 convs and 40% on
its first linear layer (49-element bundles), and holds no GIL, where numpy's blocks on a
pool's thread contend for it with the pool's other work.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba import watch_compiles

watch_compiles()  # (the notice of a first compile: netgraph._numba)


@njit(cache=True, nogil=True)
def plan(n):
    """numpy's pairwise summation of ``n`` contiguous elements as a program: ``(starts, lengths,
    program)``, its leaves (at most 128 elements, summed by :func:`leaf`) and, in order, ``k >= 0``:
    push leaf ``k``'s sum, ``-1``: replace the last two sums by theirs (the first plus the second).
    numpy halves a range of more than 128 elements at a multiple of eight below its middle. (No
    recursion: a recursive numba function loaded from numba's cache crashed here.)"""
    cap = n // 8 + 2
    starts, lengths, program = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(2 * cap, np.int64)
    stack = np.empty((130, 3), np.int64)  # (start, length, halves pushed): at most 2 frames a level, 64 levels
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 0
    top, leaves, steps = 1, 0, 0
    while top > 0:
        top -= 1
        s, m, split = stack[top, 0], stack[top, 1], stack[top, 2]
        if m <= 128:
            starts[leaves], lengths[leaves] = s, m
            program[steps] = leaves
            leaves, steps = leaves + 1, steps + 1
        elif split:
            program[steps] = -1
            steps += 1
        else:
            m2 = m // 2
            m2 -= m2 % 8
            stack[top, 2] = 1
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = s + m2, m - m2, 0
            stack[top + 2, 0], stack[top + 2, 1], stack[top + 2, 2] = s, m2, 0
            top += 3
    return starts[:leaves], lengths[:leaves], program[:steps]


@njit(cache=True, nogil=True)
def leaf(a, n):
    """numpy's sum of ``a[:n]``, ``n <= 128``: in order under 8 elements, else eight accumulators."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i, m = 8, n - n % 8
    while i < m:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise(a, prog):
    """``numpy.sum`` of the contiguous float64 ``a`` (``prog``: its :func:`plan`): the same bits."""
    starts, lengths, program = prog
    sums = np.empty(64)
    top = 0
    for k in program:
        if k >= 0:
            sums[top] = leaf(a[starts[k]:], lengths[k])
            top += 1
        else:
            sums[top - 2] += sums[top - 1]
            top -= 1
    return sums[0]


@njit(cache=True, nogil=True)
def abs_sums(x, k, first, end, out):
    """``out[b] = sum |x[b k:(b + 1) k]|``, float64, added as numpy adds them (see the module), for
    bundles ``first`` to ``end`` of the flat weights ``x`` (float32 or float64)."""
    vals = np.empty(k)
    prog = plan(k)
    for b in range(first, end):
        a = b * k
        for i in range(k):
            vals[i] = abs(np.float64(x[a + i]))
        out[b] = leaf(vals, k) if k <= 128 else pairwise(vals, prog)
