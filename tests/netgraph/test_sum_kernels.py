"""The compiled bundle sums (:mod:`netgraph._sum_kernels`) are numpy's, bit for bit: the same
additions in numpy's pairwise order, for every bundle size and both float widths."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import netgraph

K = pytest.importorskip("netgraph._sum_kernels")


def _weights(rng, shape, dtype, spread=60):
    """Signed values over ``2^-spread`` to ``2^spread``: sums whose order shows in their last bits."""
    e = rng.integers(-spread, spread, size=shape)
    return ((rng.random(shape) - 0.5) * np.exp2(e)).astype(dtype)


def _numpy_sums(w):
    return np.abs(w).sum(axis=2, dtype=np.float64)


_KS = list(range(1, 42)) + [49, 64, 120, 127, 128, 129, 136, 200, 256, 257, 1000, 3136, 8191, 8192, 9216, 20000]


@pytest.mark.parametrize("k,dtype", [(k, d) for k in _KS for d in (np.float32, np.float64)
                                     if d == np.float64 or k <= 8192])
def test_abs_sums_are_numpys_sums(k, dtype):
    """Under 8 elements in order, up to 128 in eight running sums, more in halves split at a
    multiple of 8 (the recursion's program): numpy's floats exactly; float32 up to numpy's buffer
    (longer, numpy casts and adds in pieces: the layers keep numpy's sums there, tested below)."""
    rng = np.random.default_rng(k)
    w = _weights(rng, (7, max(1, 600 // k), k), dtype)
    out = np.full(w.shape[:2], np.nan)
    K.abs_sums(w.reshape(-1), k, 0, out.size, out.reshape(-1))
    assert np.array_equal(out, _numpy_sums(w))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 300), rows=st.integers(1, 9), n_in=st.integers(1, 9), seed=st.integers(0, 2**32 - 1),
       spread=st.integers(1, 120), wide=st.booleans())
def test_abs_sums_property(k, rows, n_in, seed, spread, wide):
    """Any shape, any spread of magnitudes (float32: up to 2^+-120), a range of bundles: numpy's sums
    there, nothing written outside it."""
    rng = np.random.default_rng(seed)
    w = _weights(rng, (rows, n_in, k), np.float64 if wide else np.float32, spread)
    n = rows * n_in
    first, end = sorted(rng.integers(0, n + 1, 2))
    out = np.full(n, -1.0)
    K.abs_sums(w.reshape(-1), k, first, end, out)
    want = _numpy_sums(w).reshape(-1)
    assert np.array_equal(out[first:end], want[first:end])
    assert (out[:first] == -1).all() and (out[end:] == -1).all()


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_sums_compiled_equal_numpys(dtype, threads, monkeypatch):
    """:meth:`netgraph.Layer.sums` with ``compiled=True``: the numpy sums bit for bit (over the
    threads too), the cache left alone; ``w^2`` sums and weights the kernel cannot read in place
    stay numpy's."""
    from netgraph import layer as layer_module

    monkeypatch.setattr(layer_module, "PARALLEL_SUMS_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 37, 3), torch.nn.ReLU(), torch.nn.Conv2d(37, 11, 5),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(11 * 4 * 4, 23)).to(dtype)
    g = netgraph.from_torch(model, (3, 10, 10))
    for layer in g.layers:
        w = layer.weight
        got = layer.sums(1, compiled=True)
        assert "abs_sum" not in layer.__dict__
        assert np.array_equal(got, _numpy_sums(w)) and np.array_equal(layer.fresh_sums(1, True), got)
        assert np.array_equal(layer.sums(2, compiled=True), layer.sums(2))
    layer = g.layers[1]
    layer.weight = np.asfortranarray(layer.weight)  # not read in place: numpy's sums
    assert layer_module._abs_sums_kernel(layer.weight) is None
    assert np.array_equal(layer.sums(1, compiled=True), _numpy_sums(layer.weight))
    monkeypatch.setattr(layer_module, "NUMPY_ONE_PAIRWISE", False)  # a numpy that adds in another order
    assert layer_module._abs_sums_kernel(g.layers[0].weight) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bundles_longer_than_numpys_buffer(dtype):
    """A linear layer after a flatten of 9,216 positions: float32 bundles keep numpy's own sums
    (numpy adds a cast sum in pieces of its buffer), float64 ones take the kernel; numpy's bits."""
    from netgraph import layer as layer_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 96 * 96, 4)).to(dtype)
    layer = netgraph.from_torch(model, (1, 96, 96)).layers[1]
    assert layer.k == 9216
    assert (layer_module._abs_sums_kernel(layer.weight) is None) == (dtype == torch.float32)
    assert np.array_equal(layer.sums(1, compiled=True), _numpy_sums(layer.weight))


def test_cumsum_down_is_the_row_by_row_sums():
    """PHEW's forward dense table: the compiled running sums down the columns are the numpy
    build's row adds."""
    P = pytest.importorskip("netgraph.sparsifiers._phew_kernels")
    rng = np.random.default_rng(1)
    a = _weights(rng, (53, 17), np.float64)
    want = np.empty_like(a)
    want[0] = a[0]
    for i in range(1, a.shape[0]):
        np.add(want[i - 1], a[i], out=want[i])
    got = np.empty_like(a)
    P.cumsum_down(a, got)
    assert np.array_equal(got, want)
