"""The fast paths of issue 13 against the straightforward computations they replace, on small
nets: per-bundle maxima and kept bundles of a masked graph, the candidate bundles of SynFlow's
walk. Exact equality (or the stated superset), never a wall-clock assertion."""

import numpy as np
import pytest
import torch

import netgraph
from netgraph import flows as F
from netgraph.masked import as_masked
from netgraph.sparsifiers import _flowprune, _flowwalk
from tests import grouped_models as GM
from tests import models as M

NETS = {
    "mlp": lambda: (M.mlp((12, 9, 7, 4)), (12,)),
    "conv": lambda: (M.randomize_bn(M.ConvNoPad()), M.CONV_NOPAD_INPUT),
    "grouped": lambda: (GM.GroupedNet(), GM.GROUPED_INPUT),
}


def _graph_and_masks(name, density, seed=0):
    torch.manual_seed(seed)
    model, shape = NETS[name]()
    g = netgraph.from_torch(model, shape)
    if density is None:
        return g, None
    gen = torch.Generator().manual_seed(seed)
    return g, {l.param: torch.rand(l.param_shape, generator=gen) < density for l in g.layers}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("density", [None, 0.6, 0.05, 0.0])
def test_bundle_max_and_kept_bundles_equal_the_plain_forms(name, density):
    """Sparse layers (kept indices) and dense ones (row blocks) give the plain values."""
    g, masks = _graph_and_masks(name, density)
    mg = as_masked(g, masks)
    for layer, m, cnt in zip(g.layers, mg.masks_or_dense(), mg.aggregates("count")):
        mx = mg.bundle_max(layer)
        plain = np.where(m, np.abs(layer.weight.astype(np.float64)), 0.0).max(axis=2)
        assert np.array_equal(mx, plain)
        v, u, nz = mg.kept_bundles(layer)
        pv, pu, _ = layer.nonzero_bundles(cnt)
        assert np.array_equal(v, pv) and np.array_equal(u, pu)
        assert np.array_equal(nz, np.flatnonzero(cnt))


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("form,power", [("abs_grad", 1), ("w_grad", 2)])
def test_walk_candidates_hold_every_bundle_of_the_exact_test(name, form, power, monkeypatch):
    """``candidates`` is a superset of the bundles whose smallest kept score is <= hi (the
    float64 test on every bundle), holds no dead bundle, and adds at most the margin's few."""
    g, masks = _graph_and_masks(name, None)
    fl = F.path_flows(g, "abs" if power == 1 else "square", None)
    rng = np.random.default_rng(0)
    for layer in g.layers:
        for compact in (False, True):
            s = _flowprune.LayerState(layer, power)
            dead = rng.random(s.m.size) < 0.3  # some dead bundles
            s.m[dead] = 0
            if s.agg is not None:  # (raw: the kept flags alone)
                s.agg[dead] = 0.0
            if s.low is not None:
                s.low[dead] = np.nan
            s.alive = int(np.count_nonzero(s.m))
            if compact:  # track the survivors only (CSR flows, per-bundle unit arrays)
                monkeypatch.setattr(_flowprune, "COMPACT_BELOW", 1.01)
                monkeypatch.setattr(_flowprune, "RAW_COMPACT_BELOW", 1.01)
                s._maybe_compact()
                monkeypatch.undo()
            c = s.factor(fl)
            t = np.arange(s.m.size)
            exact_c = s.factor_at(c, t)
            with np.errstate(invalid="ignore"):
                scores = _flowprune._score(s.lowest(), exact_c, form)
            finite = scores[np.isfinite(scores)]
            for hi in (*np.quantile(finite, [0.0, 0.3, 0.9]), np.inf) if finite.size else (np.inf,):
                with np.errstate(invalid="ignore"):
                    want = np.flatnonzero(scores <= hi)
                got = s.candidates(c, hi, form)
                assert np.isin(want, got).all()
                assert (s.m[got] > 0).all()
                extra = np.setdiff1d(got, want)
                assert np.allclose(scores[extra], hi, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(NETS))
def test_fresh_sums_equal_the_cached_sums_and_leave_the_cache_alone(name):
    g, _ = _graph_and_masks(name, None)
    for layer in g.layers:
        a, b = layer.fresh_sums(1), layer.fresh_sums(2)
        assert "abs_sum" not in layer.__dict__ and "sq_sum" not in layer.__dict__
        assert np.array_equal(a, layer.abs_sum) and np.array_equal(b, layer.sq_sum)
        assert layer.fresh_sums(1) is not layer.abs_sum and np.array_equal(layer.fresh_sums(1), a)


def _plain_walk(S, pos0, cc, lo, hi, power, form):
    """Element by element, as the first engine walked: counts, the pruned values' sum from 0 in
    ascending order, and the first value above ``hi``."""
    n_hi, n_lo, sums, stop = [], [], [], []
    for row, p0, c in zip(S, pos0, cc):
        nh = nl = 0
        acc, sv = 0.0, np.float32(np.nan)
        for v in row[p0:]:
            sc = _flowwalk.score(np.float32(v), c, form)
            if sc > hi:
                sv = v
                break
            nh += 1
            if not sc >= lo:
                nl += 1
                acc += float(v) ** power
        n_hi.append(nh), n_lo.append(nl), sums.append(acc), stop.append(sv)
    return np.array(n_hi), np.array(n_lo), np.array(sums), np.array(stop, np.float32)


@pytest.mark.parametrize("k", [1, 3, 9, 49])
@pytest.mark.parametrize("power,form", [(1, "abs_grad"), (2, "abs_grad"), (2, "w_grad")])
@pytest.mark.filterwarnings("ignore:invalid value")
def test_scan_bundles_equals_the_element_by_element_walk(k, power, form):
    """Windows of any first width, blocks of any size, NaN factors: the same counts, the same
    float64 sums bit for bit, the same first value above ``hi``."""
    rng = np.random.default_rng(k)
    n = 300
    S = np.sort(rng.random((n, k), dtype=np.float32), axis=1)
    S[:5] = 0.5  # ties
    pos0 = rng.integers(0, k, n)
    cc = np.exp(rng.normal(0, 1, n))
    cc[7] = np.nan
    cc[8] = np.inf
    S[8, 0] = 0.0  # 0 * inf = NaN
    pos0[8] = 0
    sc = _flowwalk.score(S[np.arange(n), pos0], cc, form)
    lo, hi = np.nanquantile(sc, [0.3, 0.6])
    want = _plain_walk(S, pos0, cc, lo, hi, power, form)
    for window in (1, 2, 4, 8):
        for block in (7, 1 << 14):
            base = np.arange(n) * k
            *got, w_next = _flowwalk.scan_bundles(S, power, min(window, k), base + pos0, base + k, cc, lo, hi, form,
                                                  block=block)
            for a, b in zip(got, want):
                assert np.array_equal(a, b, equal_nan=True)
            assert 1 <= w_next <= max(k, 1)


def test_ranges_and_row_counts_equal_the_plain_forms():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 50)
    b = a + rng.integers(0, 4, 50)
    i, p = _flowwalk.ranges(a, b)
    plain = [(j, q) for j in range(50) for q in range(a[j], b[j])]
    assert list(zip(i.tolist(), p.tolist())) == plain
    for w in (1, 2, 3, 4, 8, 9):
        m = rng.random((40, w)) < 0.5
        assert np.array_equal(_flowwalk.count_rows(m), m.sum(axis=1))


def test_synflow_candidates_keep_zero_scores_of_units_without_backward_flow():
    """At a threshold of 0, a zero weight of a destination with no backward flow scores 0 (its
    factor floored) and is a candidate; ``0 / 0`` in the margin test used to drop it."""
    from netgraph.layer import Layer
    from netgraph.sparsifiers._flowprune import LayerState

    w = np.ones((2, 2, 3), np.float32)
    w[1, 0, 0] = 0.0
    s = LayerState(Layer(0, "l", "conv", "w", (2, 2, 3), 0, 1, w), 1)
    c = (np.array([1.0, 0.0]), np.array([1.0, 1.0]))  # destination 1: no backward flow
    assert 2 in set(s.candidates(c, 0.0, "abs_grad").tolist())
    assert set(s.candidates(c, 0.5, "abs_grad").tolist()) >= {2, 3}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("density", [None, 0.6, 0.05, 0.0])
def test_kept_bundle_values_and_operators_equal_the_dense_aggregates(name, density, monkeypatch):
    """Per-bundle values, CSR operators, counts and maxima from the kept indices are the
    floats of the dense aggregates, bit for bit."""
    from netgraph import masked

    monkeypatch.setattr(masked, "CSR_FROM", 0)  # every sparse layer as CSR (the test nets are small)
    g, masks = _graph_and_masks(name, density)
    mg = as_masked(g, masks)
    fresh = as_masked(g, masks)  # nothing dense computed before the kept-bundle forms
    for layer, m in zip(g.layers, mg.masks_or_dense()):
        nz = mg.kept_bundles(layer)[2]
        assert fresh.kept_counts()[layer.index] == int(m.sum())
        for w in ("count", "abs", "square"):
            dense = mg.aggregates(w)[layer.index]
            assert np.array_equal(fresh.bundle_values(w, layer), dense.reshape(-1)[nz])
            op = fresh.operator(w, layer)
            assert np.array_equal(op.toarray() if hasattr(op, "toarray") else op, dense)
        plain = np.where(m, np.abs(layer.weight), 0).max(axis=2)
        assert np.array_equal(fresh.kept_bundle_max(layer), plain.reshape(-1)[nz])
    sparse = [l for l in g.layers if mg.kept() is not None and mg.kept()[l.index] is not None and l.groups == 1]
    assert density != 0.05 or sparse  # the CSR route is exercised
    assert all(("aggregate", "count", l.index) not in fresh._cache for l in sparse)


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_sparse_layers_kept_weights_are_gathered_once_and_give_the_same_floats(name):
    """Every aggregate and maximum of a sparse layer reads its kept weights from one gather
    (``MaskedGraph.kept_weights``): the floats of each function reading the weights itself."""
    from netgraph import masked

    g, masks = _graph_and_masks(name, 0.05)
    mg = as_masked(g, masks)
    gathers = []
    for layer in g.layers:
        idx, m = mg.kept()[layer.index], mg.layer_masks[layer.index]
        if idx is None:
            assert mg.kept_weights(layer) is None
            continue
        for w in ("abs", "square"):
            assert np.array_equal(mg.aggregate(w, layer), masked.layer_aggregate(layer, w, m, idx))
            assert np.array_equal(mg.bundle_values(w, layer), masked.kept_bundle_values(layer, w, idx))
        assert np.array_equal(mg.kept_bundle_max(layer), masked.kept_bundle_max(layer, idx))
        assert np.array_equal(mg.bundle_max(layer), masked.layer_bundle_max(layer, m, idx))
        gathers.append(layer.index)
        kw = mg.kept_weights(layer)
        assert kw.dtype == layer.weight.dtype and np.array_equal(kw, layer.weight.reshape(-1)[idx])
        assert mg.kept_weights(layer) is kw  # (cached: gathered once)
    assert gathers  # (a sparse layer was checked)
    counts = as_masked(g, masks)  # counts read no weight: nothing gathered
    for layer in g.layers:
        counts.aggregate("count", layer), counts.bundle_values("count", layer)
    assert not any(key[0] == "kept_weights" for key in counts._cache if isinstance(key, tuple))


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("density", [None, 0.3, 0.05, 0.0])
def test_reachability_equals_the_float_programme(name, density):
    """Reachability from kept bundles equals 0/1 vectors pushed through the dense 0/1
    pattern of the count aggregates (the former computation)."""
    from netgraph.layer import Layer

    g, masks = _graph_and_masks(name, density)
    mg = as_masked(g, masks)
    kept = {l.index: (a > 0).astype(np.float64) for l, a in zip(g.layers, mg.aggregates("count"))}
    G = len(g.groups)
    fwd = [np.ones(g.groups[0].size, dtype=bool)] + [None] * (G - 1)
    for i in range(1, G):
        acc = np.zeros(g.groups[i].size)
        for e in g.edges_into(i):
            acc += e.push(kept.get(e.index) if isinstance(e, Layer) else None, fwd[e.src].astype(np.float64))
        fwd[i] = acc > 0
    bwd = [None] * (G - 1) + [np.ones(g.groups[-1].size, dtype=bool)]
    for i in range(G - 2, -1, -1):
        acc = np.zeros(g.groups[i].size)
        for e in g.edges_out_of(i):
            acc += e.pull(kept.get(e.index) if isinstance(e, Layer) else None, bwd[e.dst].astype(np.float64))
        bwd[i] = acc > 0
    got_f, got_b = F.reachability(g, as_masked(g, masks))
    assert all(np.array_equal(a, b) for a, b in zip(got_f, fwd))
    assert all(np.array_equal(a, b) for a, b in zip(got_b, bwd))


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_bundle_sums_over_threads_equal_the_plain_sums(threads, monkeypatch):
    """A layer above ``PARALLEL_SUMS_FROM`` sums its blocks of rows over the threads: the same
    values, bit for bit, as numpy's sums of the whole weight (row counts that do not split evenly)."""
    from netgraph import layer as layer_module

    import concurrent.futures

    pools = []
    real = concurrent.futures.ThreadPoolExecutor
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", lambda **kw: pools.append(kw) or real(**kw))
    monkeypatch.setattr(layer_module, "PARALLEL_SUMS_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 37, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(37 * 4 * 4, 23))
    g = netgraph.from_torch(model, (3, 6, 6))
    for layer in g.layers:
        w = layer.weight.astype(np.float64)
        for chunk in (1, 7 * layer.n_in * layer.k, 1 << 16):  # a row a block, seven rows, the default
            assert np.array_equal(layer._bundle_sums(1, chunk), np.abs(w).sum(axis=2))
            assert np.array_equal(layer._bundle_sums(2, chunk), np.einsum("ijk,ijk->ij", w, w))
    assert bool(pools) == (threads != "1")  # the parts ran over a pool (one thread: no pool)
