"""The compiled kept-index lists (netgraph._mask_kernels) equal numpy.flatnonzero."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from netgraph._mask_kernels import kept_indices
from netgraph.masked import kept_indices as masked_kept_indices


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 200), density=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_equals_flatnonzero(size, density, seed):
    # every length modulo 8 (the tail after the last full word), empty and full masks
    mask = np.random.default_rng(seed).random(size) < density
    want = np.flatnonzero(mask)
    got = kept_indices(mask, int(mask.sum()))
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_shapes_and_the_masked_graph_switch():
    mask = np.random.default_rng(0).random((64, 3, 3, 3)) < 0.1
    want = np.flatnonzero(mask)
    assert np.array_equal(kept_indices(mask, int(mask.sum())), want)
    assert np.array_equal(masked_kept_indices(mask, int(mask.sum()), compiled=True), want)
    # a mask the kernel cannot read in place (not C-contiguous, not boolean): numpy's answer
    assert np.array_equal(masked_kept_indices(mask.transpose(1, 0, 2, 3), int(mask.sum()), compiled=True),
                          np.flatnonzero(mask.transpose(1, 0, 2, 3)))
    assert np.array_equal(masked_kept_indices(mask.astype(np.uint8), int(mask.sum()), compiled=True), want)


def test_a_wrong_count_is_caught():
    with pytest.raises(AssertionError):
        kept_indices(np.ones(10, bool), 9)
