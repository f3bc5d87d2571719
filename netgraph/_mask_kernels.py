"""A compiled list of a mask's kept elements (numba): :func:`kept_indices`.

``numpy.flatnonzero`` of a boolean mask reads it twice (a count, then the indices) and tests
each byte. The metrics of a large mask start with these lists (:meth:`netgraph.masked.MaskedGraph.kept`:
vgg16's 138M-element masks, 0.08-0.1 s of the metric table), so a graph of
:data:`netgraph._numba.LOAD_FROM` weights or more takes this kernel: one pass over the mask
read as 64-bit words, a word without a kept element skipped (at 1% density, 92% of them),
the count known beforehand (the masked graph's ``kept_counts``). The same indices, in the
same (ascending) order: ``tests/netgraph/test_mask_kernels.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba import watch_compiles
from .errors import InvalidInputError

watch_compiles()  # (the notice of a first compile: netgraph._numba)


@njit(cache=True, nogil=True)
def _fill(words, tail, out):
    """Writes the indices of the nonzero bytes of ``words`` (eight a word) then ``tail`` into ``out``
    (room for seven more than their count: a word's eight bytes are written without a branch);
    returns the count, or ``out.size`` when there are more than ``out`` holds (never written past)."""
    n = 0
    for i in range(words.size):
        w = words[i]
        if w != 0:
            if n + 8 > out.size:
                return out.size
            base = i * 8
            for j in range(8):
                out[n] = base + j
                n += (w >> np.uint64(8 * j)) & np.uint64(0xFF) != 0
    base = words.size * 8
    for j in range(tail.size):
        if n >= out.size:
            return out.size
        out[n] = base + j
        n += tail[j] != 0
    return n


def kept_indices(mask: np.ndarray, count: int) -> np.ndarray:
    """``numpy.flatnonzero(mask)`` of a C-contiguous boolean ``mask`` holding ``count`` true elements
    (int64).

    >>> kept_indices(np.array([[0, 1, 0], [1, 1, 0]], bool), 3)
    array([1, 3, 4])
    """
    flat = mask.reshape(-1)
    n_words = flat.size // 8
    out = np.empty(count + 8, np.int64)
    n = _fill(flat[:n_words * 8].view(np.uint64), flat[n_words * 8:].view(np.uint8), out)
    if n != count:  # (a mask changed in place after the masked graph counted it)
        raise InvalidInputError(f"a layer mask holds {'more' if n > count else 'fewer'} kept elements than when its "
                                f"masked graph counted them ({count}): it was changed in place; make a new masked "
                                "graph (netgraph.masked.as_masked) after changing masks")
    return out[:n]
