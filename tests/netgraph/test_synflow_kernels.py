"""The compiled SynFlow engine (``_synflow_fast``, numba kernels) against the numpy reference
(``_flowprune.LayerState``): the same masks bit for bit on small nets (dense, grouped,
depthwise, residual, ties; ``k = 1``, ``k > 1`` and ``k > 64`` layers; compacted or not; layers split in
ranges), and the same walk records, updates and samples state by state, NaN factors included."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
import torch

import netgraph
from netgraph import flows as F
from netgraph.sparsifiers import _flowprune, _synflow_fast, _workers, synflow
from tests import grouped_models as GM
from tests import models as M


def _tied_mlp():
    model = M.mlp((10, 8, 6, 3))
    with torch.no_grad():
        for p in model.parameters():  # four magnitudes only: many ties inside and across bundles
            p.copy_(torch.round(p * 4) / 4 + 0.25 * (p == 0))
    return model, (10,)


def _tied_conv():
    model = M.randomize_bn(M.ConvNoPad())
    with torch.no_grad():
        for p in model.parameters():  # ties inside 3x3 bundles: the final mask's cut in parameter order
            q = torch.round(p * 16) / 16
            p.copy_(torch.where(q == 0, 1 / 16, q))
    return model, M.CONV_NOPAD_INPUT


def _wide_bundles():
    """Bundles of 64 elements (8x8 kernels; a flattened 8x8 map), the most a row's keys held as
    the bits of one word, and of 81 (9x9 kernels), read in a second pass."""
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 8), torch.nn.ReLU(), torch.nn.Conv2d(3, 4, 9), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 64, 5))
    return model, (2, 23, 23)


def _wide_ties():
    """Bundles of 63, 65 and 128 elements (7x9, 5x13, 8x16 kernels), the weights in eighths: ties."""
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, (7, 9)), torch.nn.ReLU(), torch.nn.Conv2d(3, 4, (5, 13)),
                                torch.nn.ReLU(), torch.nn.Conv2d(4, 2, (8, 16)), torch.nn.Flatten(),
                                torch.nn.Linear(2, 3))
    with torch.no_grad():
        for p in model.parameters():
            q = torch.round(p * 8) / 8
            p.copy_(torch.where(q == 0, 1 / 8, q))
    return model, (2, 18, 36)


NETS = {
    "mlp": lambda: (M.mlp((12, 9, 7, 4)), (12,)),
    "conv": lambda: (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
    "residual": lambda: (M.randomize_bn(M.Residual1x1()), M.RESIDUAL_INPUT),
    "grouped": lambda: (GM.GroupedNet(), GM.GROUPED_INPUT),
    "mobile": lambda: (GM.MobileNetish(), GM.MOBILE_INPUT),
    "ties": _tied_mlp,
    "conv ties": _tied_conv,
    "wide": _wide_bundles,
    "wide ties": _wide_ties,
}
METHODS = [("synflow", {}), ("synflow-l2", {}), ("synflow-l2", {"form": "w_grad"})]


def _graph(name):
    torch.manual_seed(0)
    model, shape = NETS[name]()
    return netgraph.from_torch(model, shape)


def _hashable(ms, g):
    return [np.asarray(ms[p]).tobytes() for p in g.param_names]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("method,opts", METHODS)
def test_compiled_engine_gives_the_reference_masks(name, method, opts, monkeypatch):
    """Default, compacted at once, and every layer walked in ranges of 3 bundles: the masks of
    the numpy engine, bit for bit."""
    g = _graph(name)
    monkeypatch.setattr(synflow, "layer_state", lambda: _flowprune.LayerState)
    want = netgraph.sparsify(g, method, 0.05, iterations=8, **opts)
    monkeypatch.undo()
    assert synflow.layer_state() is _synflow_fast.FastLayerState
    for compact, part in ((None, 1 << 19), (1.01, 3)):  # (None: the default compactions)
        if compact is not None:
            monkeypatch.setattr(_flowprune, "COMPACT_BELOW", compact)
            monkeypatch.setattr(_flowprune, "RAW_COMPACT_BELOW", compact)
        monkeypatch.setattr(_synflow_fast, "PART", part)
        got = netgraph.sparsify(g, method, 0.05, iterations=8, **opts)
        assert _hashable(got, g) == _hashable(want, g)
        assert got.num_kept == want.num_kept == round(0.05 * g.num_weights)


def _pair(layer, power, compact, monkeypatch, seed=0):
    """A reference state and a compiled one with the same dead bundles (some), maybe compacted."""
    rng = np.random.default_rng(seed)
    out = []
    for cls in (_flowprune.LayerState, _synflow_fast.FastLayerState):
        s = cls(layer, power)
        dead = np.random.default_rng(seed).random(s.m.size) < 0.3
        s.m[dead] = 0
        if s.agg is not None:  # (raw: the kept flags alone)
            s.agg[dead] = 0.0
        if s.low is not None:
            s.low[dead] = np.nan
        s.alive = int(np.count_nonzero(s.m))
        s.kept = int(s.m.astype(np.int64).sum())
        if compact:
            monkeypatch.setattr(_flowprune, "COMPACT_BELOW", 1.01)
            monkeypatch.setattr(_flowprune, "RAW_COMPACT_BELOW", 1.01)
            s._maybe_compact()
            monkeypatch.undo()
        out.append(s)
    return out, rng


def _equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("name", ["conv", "grouped", "mlp", "wide", "wide ties"])
@pytest.mark.parametrize("power,form", [(1, "abs_grad"), (2, "abs_grad"), (2, "w_grad")])
@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.filterwarnings("ignore:invalid value", "ignore:overflow")
def test_walk_update_and_sample_equal_the_reference(name, power, form, compact, monkeypatch):
    """Per layer: the compacted state, the walk's records (NaN, inf and zero factors too: the exact comparisons), the
    update of kept counts, aggregates and smallest kept values, and the bracket's sample."""
    g = _graph(name)
    fl = F.path_flows(g, "abs" if power == 1 else "square", None)
    for layer in g.layers:
        (ref, fast), rng = _pair(layer, power, compact, monkeypatch, seed=layer.index)
        for key in ("ids", "_indptr", "m", "agg", "low"):  # the compaction kernel's state, dtypes too
            a, r = getattr(fast, key), getattr(ref, key)
            assert _equal(a, r) and np.asarray(a).dtype == np.asarray(r).dtype, key
        b, f = ref.factor(fl)
        b, f = b.copy(), f.copy()
        if layer.index % 2:
            b[0], f[-1] = np.nan, np.inf
        b[-1] = 0.0
        c = (b, f)
        s = ref.sample(c, 1, form)
        assert _equal(np.sort(fast.sample(c, 1, form)), np.sort(s))
        finite = s[np.isfinite(s)]
        brackets = [tuple(np.quantile(finite, [0.2, 0.5])), (-np.inf, np.inf), (0.0, 0.0)]
        for lo, hi in brackets + brackets[:1]:  # a walk's records hold until the layer's next walk
            w_ref, w_fast = ref.walk(c, lo, hi, form), fast.walk(c, lo, hi, form)
            for key in ("act", "ri", "rp", "rs", "above", "n_hi", "sum_lo", "stop_val", "rv"):
                if key in w_ref:
                    assert _equal(w_fast[key], w_ref[key]), key
        keep = rng.random(w_ref["rs"].size) < 0.5
        monkeypatch.setattr(_flowprune, "RAW_COMPACT_BELOW", 0.5)  # a raw layer compacts inside the update
        ref.apply(w_ref, keep.copy())
        fast.apply(w_fast, keep.copy())
        monkeypatch.undo()
        for key in ("ids", "_indptr", "m", "agg", "low", "kept", "alive"):
            assert _equal(getattr(fast, key), getattr(ref, key)), key
        assert _equal(fast.final_mask(), ref.final_mask())


@pytest.mark.parametrize("name", ["grouped", "residual"])
def test_thread_pool_gives_the_same_masks(name, monkeypatch):
    """Layers and ranges walked by the caller and a helper of a two-thread pool, the flows' sweeps
    side by side, one BLAS thread: the masks of the serial run."""
    from concurrent.futures import ThreadPoolExecutor

    g = _graph(name)
    want = netgraph.sparsify(g, "synflow-l2", 0.05, iterations=8)
    monkeypatch.setattr(synflow, "_pool", lambda n: ThreadPoolExecutor(max_workers=2))
    monkeypatch.setattr(_synflow_fast, "PART", 5)
    monkeypatch.setattr(_workers, "SHARED_FROM", 0)  # (every map shared with the helper, however small)
    got = netgraph.sparsify(g, "synflow-l2", 0.05, iterations=8)
    assert _hashable(got, g) == _hashable(want, g)


def test_without_numba_the_numpy_engine_runs_with_a_warning(monkeypatch):
    """Where numba cannot be imported, SynFlow warns and runs the reference engine: the same mask."""
    import sys

    g = _graph("conv")
    want = netgraph.sparsify(g, "synflow", 0.05, iterations=8)
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    for mod in ("_synflow_fast", "_synflow_kernels", "_synflow_updates", "_synflow_sample"):  # as if never imported
        monkeypatch.delitem(sys.modules, f"netgraph.sparsifiers.{mod}", raising=False)
        monkeypatch.delattr(netgraph.sparsifiers, mod, raising=False)
    with pytest.warns(RuntimeWarning, match="numpy engine"):
        assert synflow.layer_state() is _flowprune.LayerState
    with pytest.warns(RuntimeWarning, match="numpy engine"):
        got = netgraph.sparsify(g, "synflow", 0.05, iterations=8)
    assert _hashable(got, g) == _hashable(want, g)


@settings(max_examples=40, deadline=None)
@given(n_dst=st.integers(1, 9), n_in=st.integers(1, 40), keep=st.floats(0.0, 1.0), power=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_flow_products_read_in_place_equal_scipy(n_dst, n_in, keep, power, seed):
    """The aggregates SynFlow's flows multiply by, read in place (a raw layer's weights and kept
    flags; a compacted layer's survivors, seen through spare room): their products, compiled and
    numpy, are scipy CSR's over the kept bundles bit for bit (the same sums in the same order),
    but the raw layer's compiled ``A @ x``, whose sums are reassociated: equal to rounding."""
    import scipy.sparse as sp

    from netgraph.sparsifiers import _flowmatrix
    from netgraph.sparsifiers._flowmatrix import MaskedWeights, SurvivorMatrix

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(n_dst * n_in) * 10.0 ** rng.integers(-20, 20, n_dst * n_in)).astype(np.float32)
    m = (rng.random(w.size) < keep).astype(np.uint8)
    ids = np.flatnonzero(m)
    agg = np.abs(w[ids], dtype=np.float64) if power == 1 else np.square(w[ids], dtype=np.float64)
    spare = lambda a, x: np.concatenate([a, [x]]).astype(a.dtype)[:a.size]  # noqa: E731 (a view of a larger buffer)
    ids32, agg = spare(ids.astype(np.int32), 0), spare(agg, 7.0)
    indptr = np.zeros(n_dst + 1, np.int64)
    np.cumsum(np.bincount(ids // n_in, minlength=n_dst), out=indptr[1:])
    ref = sp.csr_matrix((agg.copy(), ids % n_in, indptr), shape=(n_dst, n_in))
    x, y = rng.lognormal(size=n_in), rng.lognormal(size=n_dst)
    for kernels in (_flowmatrix._kernels(), None):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_flowmatrix, "_kernels", lambda: kernels)
            raw, survivors = MaskedWeights(w, m, power, (n_dst, n_in)), SurvivorMatrix(indptr, ids32, agg, n_in,
                                                                                          (n_dst, n_in))
            assert np.array_equal(survivors @ x, ref @ x) and np.array_equal(survivors.T @ y, ref.T @ y)
            assert np.array_equal(raw.T @ y, ref.T @ y)
            if kernels is None:
                assert np.array_equal(raw @ x, ref @ x)
            else:
                np.testing.assert_allclose(raw @ x, ref @ x, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype,power,want", [(torch.float32, 1, np.float32), (torch.float32, 2, np.float64),
                                              (torch.float64, 1, np.float64)])
def test_a_compacted_linear_layer_keeps_its_aggregate_exactly(dtype, power, want, monkeypatch):
    """A linear layer reads |w| off the weights until it compacts, then stores it: as float32
    only where that is exact (SynFlow's |w| of float32 weights), and both engines alike."""
    torch.manual_seed(0)
    g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Linear(6, 5)).to(dtype), (6,))
    (ref, fast), _ = _pair(g.layers[0], power, True, monkeypatch)
    w = g.layers[0].weight.reshape(-1).astype(np.float64)
    exact = np.abs(w) if power == 1 else w * w
    for s in (ref, fast):
        assert s.agg.dtype == want and np.array_equal(s.agg.astype(np.float64), exact[s.ids])


@settings(max_examples=40, deadline=None)
@given(n_dst=st.integers(1, 6), n_in=st.integers(1, 3000), keep=st.floats(0.0, 1.0), quantile=st.floats(0.0, 1.0),
       compact=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_margin_test_finds_every_passing_bundle_in_order(n_dst, n_in, keep, quantile, compact, seed):
    """The margin test's passing bundles, block by block (rows longer than a block, blocks of 64
    flags and their remainders, none or every one passing): those of a numpy test, in order."""
    from netgraph.sparsifiers import _synflow_kernels as K

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n_dst * n_in).astype(np.float32)
    m = (rng.random(w.size) < keep).astype(np.uint8)
    fs, bs = rng.lognormal(size=n_in), rng.lognormal(size=n_dst)
    v, u = np.divmod(np.arange(w.size), n_in)
    score = np.abs(w.astype(np.float64)) * fs[u] * bs[v]
    rhs = np.quantile(score, quantile) / bs
    want = np.flatnonzero((m > 0) & (np.abs(w.astype(np.float64)) * fs[u] <= rhs[v]))
    ids, indptr, x = np.zeros(0, np.int32), np.zeros(1, np.int64), w
    if compact:  # the survivors: their ids, rows' offsets and |w|
        alive = np.flatnonzero(m)
        ids, x, m = alive.astype(np.int32), np.abs(w[alive]), m[alive]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(alive // n_in, minlength=n_dst))])
        want = np.searchsorted(alive, want)
    idx, hit = np.empty(K.BLOCK, np.int64), np.empty(K.BLOCK + 64, np.uint8)
    got, t0, row = [], 0, 0
    while t0 < m.size:
        row, off, end = K._block_row(t0, m.size, row, indptr, compact, n_in, n_dst, False)
        c, t0 = K._hits(t0, end, x, m, K.LOW_X, not compact, 1, fs, rhs, compact, row, ids, off, n_in, False, idx,
                        hit)
        got.append(idx[:c].copy())
    assert np.array_equal(np.concatenate(got) if got else np.zeros(0, np.int64), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smallest_kept_value_at_the_start_is_the_references(dtype):
    """A bundle's smallest ``|w|`` (one pass over the weights' bits) is the reference's first
    sorted value: -0.0 as 0, inf, ties, NaN last (NaN only when every element is)."""
    import types

    nan, inf = np.nan, np.inf
    W = np.array([[3.0, -0.0, 2.0], [nan, 5.0, -4.0], [nan, -nan, nan], [-inf, inf, 7.0], [-2.0, 2.0, 2.0],
                  [1e-45, -1e-40, 3e38]], dtype=dtype)
    _, low = _synflow_fast.FastLayerState._multi_state(types.SimpleNamespace(), W)
    ref = _flowprune.LayerState._sorted(W)[:, 0]
    assert low.dtype == ref.dtype == np.float32
    assert np.array_equal(low, ref, equal_nan=True) and not np.signbit(low).any()
