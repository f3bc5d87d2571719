"""The compiled Lanczos solver (netgraph._lanczos) against dense SVDs and ARPACK."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
import torch

import netgraph
from analysis import spectral
from netgraph import _lanczos
from netgraph.masked import as_masked


def _matrices():
    rng = np.random.default_rng(0)
    block = sp.random(100, 80, 0.1, random_state=3).toarray()
    return {
        "random tall": sp.random(400, 150, 0.05, random_state=1, format="csr"),
        "random wide": sp.random(70, 900, 0.05, random_state=2, format="csr"),
        "fewer columns than a basis": sp.random(60, 15, 0.3, random_state=5, format="csr"),
        "identity (every product breaks down)": sp.identity(300, format="csr"),
        "permutation, mu1 = mu2": sp.csr_matrix(np.eye(200)[rng.permutation(200)] * 2.0),
        "rank one, mu2 = 0": sp.csr_matrix(np.outer(rng.random(300), rng.random(120))),
        "two equal blocks, mu1 = mu2": sp.csr_matrix(scipy.linalg.block_diag(block, block)),
        "empty rows": sp.csr_matrix(np.vstack([sp.random(200, 150, 0.05, random_state=4).toarray(),
                                               np.zeros((100, 150))])),
        "weights across orders of magnitude": sp.csr_matrix(
            sp.random(300, 200, 0.05, random_state=6).toarray() * 10.0 ** rng.integers(-6, 3, (300, 200))),
    }


@pytest.mark.parametrize("name", list(_matrices()))
def test_compiled_solver_matches_dense_svd_and_arpack(name):
    a = _matrices()[name]
    want = scipy.linalg.svdvals(a.toarray())[:2]
    got = spectral._top_sv_arpack(a, 2, compiled=True)
    arpack = spectral._top_sv_arpack(a, 2, compiled=False)
    assert np.abs(got - want).max() <= 1e-13 * want[0], (got, want)
    assert np.abs(got - arpack).max() <= 1e-13 * want[0]


@pytest.mark.parametrize("scale", [1e-150, 1e-9, 1.0, 1e78, 1e100])
def test_compiled_solver_at_any_scale(scale):
    """The matrix is scaled by a power of two before the solve: ARPACK's absolute floor on the
    Ritz values (eps ** (2/3)) and the norms' squares do not depend on the weights' scale."""
    a = sp.random(300, 200, 0.05, random_state=9, format="csr") * scale
    want = scipy.linalg.svdvals(a.toarray())[:2]
    got = spectral._top_sv_arpack(a, 2, compiled=True)
    assert np.abs(got - want).max() <= 1e-13 * want[0], (got, want)


@pytest.mark.parametrize("fmt", ["csc", "coo", "bsr"])
def test_compiled_solver_takes_any_sparse_format(fmt):
    a = sp.random(400, 150, 0.05, random_state=1, format="csr")
    want = scipy.linalg.svdvals(a.toarray())[:2]
    for m in (a, a.T):
        got = spectral._top_sv_arpack(m.asformat(fmt), 2, compiled=True)
        assert np.abs(got - want).max() <= 1e-13 * want[0]


def test_k_not_below_the_basis_is_refused_by_the_solver():
    a = sp.random(30, 8, 0.5, random_state=2, format="csr")
    with pytest.raises(ValueError, match="basis size"):
        _lanczos.gram_top(a.indptr, a.indices, a.data, np.ones(8), 8, 20, 1e-10, 100)
    # a matrix narrower than a basis: the basis spans its columns, the values are exact
    want = scipy.linalg.svdvals(a.toarray())[:2]
    assert np.abs(spectral._top_sv_arpack(a, 2, compiled=True) - want).max() <= 1e-13 * want[0]


def test_solver_meets_arpacks_rule_and_is_deterministic():
    """Each returned vector is a Ritz vector whose residual meets ``tol * theta``; two runs give
    the same bytes."""
    a = sp.random(500, 300, 0.03, random_state=7, format="csr")
    v0 = np.random.default_rng(0).standard_normal(300)
    vecs, ok, products = _lanczos.gram_top(a.indptr, a.indices, a.data, v0, 2, 20, 1e-10, 5000)
    assert ok and 2 < products < 300
    g = (a.T @ a).toarray()
    for v in vecs:
        theta = v @ g @ v
        assert abs(np.linalg.norm(v) - 1) < 1e-12
        assert np.linalg.norm(g @ v - theta * v) <= 1e-10 * theta * 1.01
    again = _lanczos.gram_top(a.indptr, a.indices, a.data, v0, 2, 20, 1e-10, 5000)[0]
    assert vecs.tobytes() == again.tobytes()
    assert abs(vecs[0] @ vecs[1]) < 1e-12


def test_gram_product_is_a_transpose_a():
    a = sp.random(90, 40, 0.2, random_state=8, format="csr")
    x = np.random.default_rng(1).standard_normal(40)
    y = np.empty(40)
    _lanczos._gram(a.indptr, a.indices, a.data, x, y)
    np.testing.assert_allclose(y, a.T @ (a @ x), rtol=1e-13, atol=1e-13)


def test_solver_out_of_products_hands_over_to_arpack(monkeypatch):
    a = sp.random(400, 150, 0.05, random_state=1, format="csr")
    v0 = np.random.default_rng(0).standard_normal(150)
    assert not _lanczos.gram_top(a.indptr, a.indices, a.data, v0, 2, 20, 1e-10, 5)[1]
    monkeypatch.setattr(spectral, "LANCZOS_PRODUCTS", 5)
    want = scipy.linalg.svdvals(a.toarray())[:2]
    assert np.abs(spectral._top_sv_arpack(a, 2, compiled=True) - want).max() <= 1e-13 * want[0]


def _graph_and_masks():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(60, 1100), torch.nn.ReLU(), torch.nn.Linear(1100, 1030),
                                torch.nn.ReLU(), torch.nn.Linear(1030, 300), torch.nn.ReLU(), torch.nn.Linear(300, 10))
    g = netgraph.from_torch(model, (60,))
    return g, netgraph.sparsify(g, "random", 0.05, seed=1)


def test_large_graphs_take_the_compiled_solver_with_the_same_values(monkeypatch):
    """With the threshold lowered, layer_spectra's CSR layers take the compiled solver: the
    same measures as ARPACK's to 1e-13, on one thread and on the pool bit for bit."""
    g, ms = _graph_and_masks()
    calls = []
    real = _lanczos.gram_top
    monkeypatch.setattr(_lanczos, "gram_top", lambda *a: calls.append(1) or real(*a))
    arpack = spectral.layer_spectra(g, ms)
    assert not calls
    monkeypatch.setattr(spectral, "COMPILED_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "2")
    pooled = spectral.layer_spectra(g, ms)
    mg = as_masked(g, ms)
    sparse_jobs = sum(sp.issparse(m) for layer in g.layers for m in spectral._layer_inputs(mg, layer)[:2])
    assert len(calls) == sparse_jobs >= 4
    for r, s in zip(pooled, arpack):
        for key in ("mu1", "mu2", "mu1_w", "mu2_w"):
            scale = r["mu1" if key in ("mu1", "mu2") else "mu1_w"]
            assert abs(r[key] - s[key]) <= 1e-13 * scale
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "1")
    assert spectral.layer_spectra(g, ms) == pooled


def test_solves_started_before_the_other_metrics_give_the_same_table(monkeypatch):
    """On a large graph the metric table starts the spectral solves on the pool, computes the other
    metrics meanwhile and collects them: the same record as solving when asked; a metric that
    fails stops the solves (the pool let go) and raises as before."""
    from analysis import table

    g, ms = _graph_and_masks()
    want = table.measure_masked(as_masked(g, ms))
    monkeypatch.setattr(spectral, "COMPILED_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "2")
    started = []
    real = spectral._Solves
    monkeypatch.setattr(spectral, "_Solves", lambda *a, **kw: started.append(real(*a, **kw)) or started[-1])
    mg = as_masked(g, ms)
    got = table.measure_masked(mg)
    assert len(started) == 1 and started[0].pool._shutdown and not mg.has(spectral._STARTED)
    assert started[0].pool._max_workers == 1  # (one thread left to the other metrics)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key in ("ramanujan_gap_mean", "ramanujan_gap_min", "biregular_gap_mean", "weighted_spectral_gap"):
            assert abs(got[key] - value) <= 1e-12 * max(1.0, abs(value))  # (compiled solver against ARPACK)
        else:
            assert got[key] == value or (value != value and got[key] != got[key])
    assert spectral.start_layer_spectra(g, mg) is None  # collected: nothing to start
    assert table.measure_masked(mg, keys=["kept"])["ramanujan_gap_mean"] is None
    assert len(started) == 1  # (no spectral metric asked: nothing started)

    def fail(mg):
        raise RuntimeError("a metric failed")

    import dataclasses

    failing = dataclasses.replace(table.METRICS[0], compute=fail)
    monkeypatch.setattr(table, "METRICS", [failing] + list(table.METRICS[1:]))
    failed = as_masked(g, ms)
    with pytest.raises(RuntimeError, match="a metric failed"):
        table.measure_masked(failed)
    assert len(started) == 2 and started[1].pool._shutdown and not failed.has(spectral._STARTED)
    assert all(f.done() for f in started[1].futures.values())  # (none left running past the BLAS limit)
    assert spectral.layer_spectra(g, failed) == spectral.layer_spectra(g, mg)  # solved afresh
    assert len(started) == 3


def test_a_failed_solve_is_not_kept(monkeypatch):
    """A solve that raises fails that call only: the next one solves again (nothing stored)."""
    g, ms = _graph_and_masks()
    monkeypatch.setattr(spectral, "COMPILED_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "2")
    want = spectral.layer_spectra(g, as_masked(g, ms))
    real, calls = spectral.top_singular_values, []

    def flaky(*a):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("once")
        return real(*a)

    monkeypatch.setattr(spectral, "top_singular_values", flaky)
    mg = as_masked(g, ms)
    with pytest.raises(MemoryError):
        spectral.layer_spectra(g, mg)
    assert not mg.has(spectral._STARTED) and not mg.has("analysis.spectral")
    assert spectral.layer_spectra(g, mg) == want
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "1")  # one thread: solved when asked, nothing started
    assert spectral.start_layer_spectra(g, as_masked(g, ms)) is None


def test_solves_start_largest_layer_first_and_a_failed_start_lets_go(monkeypatch):
    """On the pool each layer's solves start once its matrices are made, the layers with the most
    bundles first; a failure while making them stops the solves begun (the pool shut down, none
    running) and raises."""
    g, ms = _graph_and_masks()
    monkeypatch.setattr(spectral, "COMPILED_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "2")
    made, real = [], spectral._layer_inputs
    monkeypatch.setattr(spectral, "_layer_inputs", lambda mg, layer: made.append(layer.index) or real(mg, layer))
    want = spectral.layer_spectra(g, as_masked(g, ms))
    sizes = [g.layers[i].n_src * g.layers[i].n_dst for i in made]
    assert sorted(made) == list(range(len(g.layers))) and sizes == sorted(sizes, reverse=True)
    pools = []
    real_pool = spectral.ThreadPoolExecutor
    monkeypatch.setattr(spectral, "ThreadPoolExecutor", lambda **kw: pools.append(real_pool(**kw)) or pools[-1])

    def fail_third(mg, layer):
        if len(made) == len(g.layers) + 2:
            raise MemoryError("making a layer's matrices")
        return made.append(layer.index) or real(mg, layer)

    monkeypatch.setattr(spectral, "_layer_inputs", fail_third)
    mg = as_masked(g, ms)
    with pytest.raises(MemoryError):
        spectral.start_layer_spectra(g, mg)
    assert len(pools) == 1 and pools[0]._shutdown and not mg.has(spectral._STARTED)
    monkeypatch.setattr(spectral, "_layer_inputs", real)
    assert spectral.layer_spectra(g, mg) == want


def test_never_more_solves_at_once_than_threads(monkeypatch):
    """The pool's workers and the caller (which solves those not begun) stay within
    NETGRAPH_NUM_THREADS, called directly or by the metric table."""
    import threading
    import time

    from analysis import table

    monkeypatch.setattr(spectral, "COMPILED_FROM", 0)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "2")
    torch.manual_seed(0)
    layers = [m for _ in range(6) for m in (torch.nn.Linear(400, 400), torch.nn.ReLU())]
    g = netgraph.from_torch(torch.nn.Sequential(*layers, torch.nn.Linear(400, 10)), (400,))
    ms = netgraph.sparsify(g, "random", 0.05, seed=1)
    real, lock, state = spectral.top_singular_values, threading.Lock(), {"now": 0, "max": 0}

    def counted(*a):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            time.sleep(0.05)  # (long enough for the caller to reach rows() while the pool is busy)
            return real(*a)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(spectral, "top_singular_values", counted)
    spectral.layer_spectra(g, as_masked(g, ms))
    assert state["max"] == 2
    state["max"] = 0
    table.measure_masked(as_masked(g, ms), keys=["ramanujan_gap_mean"])
    assert state["max"] == 2


def test_compiled_graphs_take_the_solver_on_half_sparse_layers_of_2_18_bundles(monkeypatch):
    """With the compiled solver, a layer of COMPILED_SPARSE_FROM bundles or more, under half of them
    nonzero, takes it on CSR (from its kept bundles, or from a dense matrix); the Gram route gave the
    same values to 1e-13 of mu1. Without the solver, and at half nonzero or more, the Gram route stays."""
    torch.manual_seed(0)
    g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Conv2d(512, 512, 3)), (512, 3, 3))
    layer = g.layers[0]
    ms = netgraph.sparsify(g, "random", 0.045, seed=0)  # (vgg16's 512 x 512 convs at 1%: a third of the bundles)
    mg = as_masked(g, ms)
    f, a, _ = spectral._layer_inputs(mg, layer)  # (a small graph: no compiled solver)
    assert spectral._route(layer, f, 2) == spectral._route(layer, a, 2) == "gram"
    monkeypatch.setattr(spectral, "COMPILED_FROM", 0)
    fc, ac, _ = spectral._layer_inputs(as_masked(g, ms), layer)
    assert sp.issparse(fc) and sp.issparse(ac)
    for dense, kept in ((f, fc), (a, ac)):
        want = spectral.top_singular_values(layer, dense, 2)
        assert spectral._route(layer, dense, 2, compiled=True) == "arpack-sparse"
        for got in (spectral.top_singular_values(layer, kept, 2, True),
                    spectral.top_singular_values(layer, dense, 2, True)):
            assert np.abs(got - want).max() <= 1e-13 * want[0], (got, want)
    half = np.asarray(f, dtype=np.float64).copy()
    half.reshape(-1)[: half.size // 2 + 1] = 1.0
    assert spectral._route(layer, half, 2, compiled=True) == "gram"
    small = np.asarray(f)[:256]  # 2**17 bundles: under the threshold
    assert spectral._route(layer, small, 2, compiled=True) == "gram"
