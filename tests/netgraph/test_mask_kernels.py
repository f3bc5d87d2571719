"""The compiled kept-index lists (netgraph._mask_kernels) equal numpy.flatnonzero."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from netgraph._mask_kernels import kept_indices
from netgraph.errors import InvalidInputError
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


def test_a_wrong_count_is_one_clear_error_and_never_a_write_past_the_buffer():
    # a count below the truth (a mask changed in place after it was counted) must not write past
    # the kernel's buffer: in a subprocess, where heap corruption would abort the process
    code = ("import numpy as np\n"
            "from netgraph._mask_kernels import kept_indices\n"
            "from netgraph.errors import InvalidInputError\n"
            "for size in (4000, 4003, 9):\n"
            "    for _ in range(50):\n"
            "        try:\n"
            "            kept_indices(np.ones(size, bool), 1)\n"
            "        except InvalidInputError:\n"
            "            pass\n"
            "        x = [np.empty(100) for _ in range(1000)]\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", (res.returncode, res.stderr[-500:])
    with pytest.raises(InvalidInputError, match="fewer kept elements"):
        kept_indices(np.ones(10, bool), 11)
    with pytest.raises(InvalidInputError, match="changed in place"):
        kept_indices(np.ones(10, bool), 9)


def test_a_mask_changed_after_its_masked_graph_counted_it(monkeypatch):
    import torch

    import netgraph
    from netgraph import masked

    monkeypatch.setattr(masked, "LOAD_FROM", 0)
    g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)),
                            (64,))
    masks = [np.random.default_rng(0).random(l.weight.shape) < 0.05 for l in g.layers]
    mg = masked.as_masked(g, masks)
    assert [k.size for k in mg.kept()] == mg.kept_counts()
    mg = masked.as_masked(g, masks)
    mg.kept_counts()
    masks[0][0, :] = True
    with pytest.raises(InvalidInputError, match="changed in place"):
        mg.kept()
