"""PHEW's fast paths give exactly what the straightforward computations give."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn as nn

import netgraph
from netgraph.sparsifiers.phew import BIASES, WalkGraph, _bundle_totals, _first_takes, element_weights


def _conv_graph(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Conv2d(5, 4, 2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 2 * 2, 6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        model[2].weight[0, 0] = 0.0  # an all-zero kernel: the uniform fallback
    return netgraph.from_torch(model, (3, 5, 5))


@pytest.mark.parametrize("taps_kept", [0, 16, "compiled"])
@pytest.mark.parametrize("bias", [b for b in BIASES if b != "uniform"])
def test_tap_equals_cumsum_draw(bias, taps_kept, monkeypatch):
    """The tap-major running sums (all kept at once, or the total first, or the compiled draw)
    draw the same tap as a float64 cumsum over each kernel."""
    from netgraph.sparsifiers import _bias, _compiled

    if taps_kept == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setattr(_compiled, "LOAD_FROM", 0)
        monkeypatch.setattr(_compiled, "COMPILED_FROM", 0)
    else:
        monkeypatch.setattr(_bias, "TAPS_KEPT", taps_kept)
    g = _conv_graph()
    wg = WalkGraph(g, bias)
    for layer in g.layers:
        rng = np.random.default_rng(3)
        v = rng.integers(0, layer.n_dst, 500)
        j = rng.integers(0, layer.n_in, 500)
        got = wg._tap(layer, v, j, np.random.default_rng(7))
        if layer.k == 1:
            assert (got == 0).all()
            continue
        r = np.random.default_rng(7).random(500)
        cum = np.cumsum(element_weights(layer, bias, layer.weight[v, j]).astype(np.float64), axis=1)
        want = (cum <= (r * cum[:, -1])[:, None]).sum(axis=1)
        empty = cum[:, -1] <= 0
        want[empty] = (r[empty] * layer.k).astype(np.int64)
        assert np.array_equal(got, np.minimum(want, layer.k - 1))


@pytest.mark.parametrize("bias", ["magnitude", "square"])
def test_bundle_totals_of_one_element_bundles(bias):
    """Bundle totals (a linear layer's without a reduction) are the per-bundle float64 sums of
    ``|w|`` or ``w^2``, bit for bit, and the layer's cached sums."""
    g = _conv_graph()
    for layer in g.layers:
        got = _bundle_totals(layer, bias)
        w = layer.weight.astype(np.float64)
        want = np.abs(w).sum(axis=2) if bias == "magnitude" else np.einsum("ijk,ijk->ij", w, w)
        assert got.dtype == np.float64 and np.array_equal(got, want)
        assert np.array_equal(got, layer.abs_sum if bias == "magnitude" else layer.sq_sum)


def test_first_takes_equals_stable_sort_and_unique():
    """One composite-key sort finds the same new elements and first walks as a stable sort
    by walk followed by ``np.unique(return_index=True)``."""
    rng = np.random.default_rng(0)
    B, n = 1000, 20000
    w = np.concatenate([np.sort(rng.integers(0, B, n // 4)) for _ in range(4)])  # sorted runs, as walks give
    e = rng.integers(0, 5000, w.size)
    kept = rng.random(5000) < 0.3
    uniq, first = _first_takes(w, e, kept, B)
    fresh = ~kept[e]
    w2, e2 = w[fresh], e[fresh]
    order = np.argsort(w2, kind="stable")
    u_ref, idx = np.unique(e2[order], return_index=True)
    assert np.array_equal(uniq, u_ref) and np.array_equal(first, w2[order][idx])
    empty = _first_takes(w[:0], e[:0], kept, B)
    assert empty[0].size == 0 and empty[1].size == 0


def _mlp_graph(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(37, 50), nn.ReLU(), nn.Linear(50, 9), nn.ReLU(), nn.Linear(9, 21))
    with torch.no_grad():
        model[0].weight[:, 3] = 0.0  # a source unit with no usable forward weight
        model[2].weight[4] = 0.0  # a destination unit with no usable backward weight
        model[0].weight[7, :5] = 0.0  # exact zeros inside blocks
    return netgraph.from_torch(model, (37,))


@pytest.mark.parametrize("bias", BIASES)
def test_block_tables_draw_like_dense_tables(bias):
    """Block tables (every 16th cumulative sum kept) give the dense tables' walks, bit for bit."""
    g = _mlp_graph()
    dense, block = WalkGraph(g, bias), WalkGraph(g, bias, block_above=0)
    assert any(type(t).__name__ == "BlockTable" for t in block.fwd + block.bwd if t is not None)
    for direction, n0 in (("forward", 37), ("backward", 21)):
        ids = np.arange(3000)
        a = dense.walk(direction, ids % n0, ids, np.random.default_rng(5))
        b = block.walk(direction, ids % n0, ids, np.random.default_rng(5))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_phew_masks_with_block_tables(monkeypatch):
    from netgraph.sparsifiers import _tables

    g = _mlp_graph(1)
    want = netgraph.sparsify(g, "phew", 0.2, seed=4)
    monkeypatch.setattr(_tables, "BLOCK_ABOVE", 0)
    got = netgraph.sparsify(g, "phew", 0.2, seed=4)
    assert all(np.array_equal(np.asarray(want[p]), np.asarray(got[p])) for p in g.param_names)


@pytest.mark.parametrize("branch", ["weighted", "authors"])
def test_tables_built_over_threads_walk_like_serial_ones(branch, monkeypatch):
    """A large graph builds its groups' tables over a thread pool (each layer's bundle totals
    once, under a lock): the same masks, bit for bit, as the serial build of a small graph."""
    from concurrent.futures import ThreadPoolExecutor

    from netgraph.sparsifiers import phew

    torch.manual_seed(0)
    model = netgraph.zoo.build("resnet20", seed=0)  # shortcuts, projections, convs and a linear head
    g = netgraph.from_torch(model, (3, 32, 32))
    want = netgraph.sparsify(g, "phew", 0.05, seed=3, branch=branch)
    built = []
    monkeypatch.setattr(phew, "pool", lambda n: built.append(n) or ThreadPoolExecutor(max_workers=3))
    monkeypatch.setattr(phew, "_bundle_totals", lambda *a, _f=phew._bundle_totals: calls.append(a[0].index) or _f(*a))
    calls = []
    got = netgraph.sparsify(netgraph.from_torch(model, (3, 32, 32)), "phew", 0.05, seed=3, branch=branch)
    assert built and calls and sorted(calls) == sorted(set(calls))  # pooled, and no layer's totals twice
    assert all(np.array_equal(np.asarray(want[p]), np.asarray(got[p])) for p in g.param_names)


def _draw_graph(dtype, seed=0):
    """Kernels of 4, 9 and 25 taps (more than ``TAPS_KEPT``), an all-zero kernel and exact zeros
    (the inverse biases' 0), in float32 or float64 weights."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.Conv2d(6, 7, 3), nn.ReLU(), nn.Conv2d(7, 4, 2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))
    with torch.no_grad():
        model[2].weight[1, 2] = 0.0
        model[2].weight[0, 0, 1, 1] = 0.0
        for p in model.parameters():
            p.copy_(torch.round(p * 64) / 64)  # ties between running sums and targets
    return netgraph.from_torch(model.to(dtype), (3, 10, 10))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", BIASES)
def test_compiled_draws_are_the_numpy_draws(bias, dtype, monkeypatch):
    """The compiled draws (:mod:`._phew_kernels`: the tap inside a kernel, the tables' binary
    searches) take the numpy draws' taps and columns, bit for bit: every layer, every walker."""
    from netgraph.sparsifiers import _bias, _compiled

    pytest.importorskip("numba")
    g = _draw_graph(dtype)
    monkeypatch.setattr(_compiled, "COMPILED_FROM", 0)
    got, want = [], []
    for load_from, out in ((0, got), (10**12, want)):
        monkeypatch.setattr(_compiled, "LOAD_FROM", load_from)
        wg = WalkGraph(g, bias)
        assert (wg.kernels is None) == (load_from > 0)
        for direction, n0 in (("forward", g.groups[0].size), ("backward", g.groups[-1].size)):
            ids = np.arange(6000)
            out.append(wg.walk(direction, ids % n0, ids, np.random.default_rng(2)))
        for layer in g.layers:
            if layer.k > 1:
                rng = np.random.default_rng(3)
                v, j = rng.integers(0, layer.n_dst, 3000), rng.integers(0, layer.n_in, 3000)
                out.append((wg._tap(layer, v, j, np.random.default_rng(4)),))
                r = np.tile(np.arange(64) / 64, 50)[:3000]  # targets on the running sums' grid: exact ties
                out.append((_bias.tap_draws(layer, bias, v, j, r, wg.kernels),))
                if bias != "uniform":  # targets at each running sum over the total: ties in every bias
                    cum = np.cumsum(_bias.element_weights(layer, bias, layer.weight[v, j]).astype(np.float64), axis=1)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        r = cum[np.arange(v.size), np.arange(v.size) % layer.k] / cum[:, -1]
                    out.append((_bias.tap_draws(layer, bias, v, j, np.nan_to_num(r), wg.kernels),))
    assert len(got) == len(want) > 4
    assert all(np.array_equal(a, b) for x, y in zip(got, want) for a, b in zip(x, y))


def test_compiled_search_is_the_numpy_search():
    """:func:`._blocktable.search_sorted_runs` compiled: the same counts as numpy's (runs along a
    row and down a column, targets on the values, below and above them, NaN targets)."""
    from netgraph.sparsifiers._blocktable import search_sorted_runs

    K = pytest.importorskip("netgraph.sparsifiers._phew_kernels")
    rng = np.random.default_rng(9)
    table = np.cumsum(np.round(rng.random((37, 53)) * 4) / 4, axis=1)
    flat = table.reshape(-1)
    for unit_step, n, units in ((1, 53, 37), (53, 37, 53)):
        pos = rng.integers(0, units, 5000) * (53 if unit_step == 1 else 1)
        target = np.where(rng.random(5000) < 0.5, flat[pos + unit_step * rng.integers(0, n, 5000)],
                          rng.uniform(-1, 30, 5000))
        target[:7] = np.nan
        got, want = (search_sorted_runs(flat, pos, unit_step, n, target, kern) for kern in (K, None))
        assert np.array_equal(got, want)


def test_small_graphs_do_not_load_numba():
    """PHEW on a graph of fewer than ``LOAD_FROM`` weights runs its numpy code and never imports
    numba (whose first load costs more than a small graph's walks); a larger graph loads it."""
    import subprocess
    import sys

    code = ("import sys, torch, netgraph\n"
            "from netgraph.sparsifiers import _compiled\n"
            "m = torch.nn.Sequential(torch.nn.Linear(300, 400), torch.nn.ReLU(), torch.nn.Linear(400, 10))\n"
            "g = netgraph.from_torch(m, (300,))\n"
            "netgraph.sparsify(g, 'phew', 0.1, seed=0)\n"
            "assert 'numba' not in sys.modules\n"
            "_compiled.LOAD_FROM = 1\n"
            "netgraph.sparsify(g, 'phew', 0.1, seed=0)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(importlib.util.find_spec("numba") is not None)


def test_bias_codes_name_every_bias():
    """The kernels' bias codes cover :data:`BIASES` (the kernels branch on the codes)."""
    K = pytest.importorskip("netgraph.sparsifiers._phew_kernels")
    assert sorted(K.BIAS_CODES) == sorted(BIASES) and sorted(K.BIAS_CODES.values()) == list(range(len(BIASES)))


def _batches(g, bias, kernel_conserved, rng_of, executor, monkeypatch):
    """Three batches of :meth:`WalkGraph.walk_batch` (with ``executor`` or without), their records,
    the generator's state after, and the threads the backward walks ran on (True: this one)."""
    import threading

    from netgraph.sparsifiers import phew

    here = []
    real = phew.WalkGraph.walk

    def walk(self, direction, *a, **kw):
        if direction == "backward":
            here.append(threading.current_thread() is threading.main_thread())
        return real(self, direction, *a, **kw)

    monkeypatch.setattr(phew.WalkGraph, "walk", walk)
    wg, rng, out = WalkGraph(g, bias), rng_of(), []
    for b in range(3):
        out.append(wg.walk_batch(b * 900 + np.arange(900), rng, kernel_conserved, executor))
    return out, rng.bit_generator.state, here


def _same_state(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


@pytest.mark.parametrize("kernel_conserved", [False, True])
@pytest.mark.parametrize("net", ["conv", "rounded", "mlp_zeros", "resnet", "mt19937"])
def test_walk_batch_beside_a_pool_is_the_serial_batch(net, kernel_conserved, monkeypatch):
    """A chain's backward walks run on the pool from the generator advanced past the forward walks'
    draws: the records and the generator after are the serial batch's, bit for bit; where a walker
    stops on a zero weight (the MLP's zero column; the rounded net's many zeros) they are walked
    again after the forward walks; a residual net or another bit generator walks in turn."""
    from concurrent.futures import ThreadPoolExecutor

    g = {"conv": _conv_graph, "rounded": lambda: _draw_graph(torch.float32), "mlp_zeros": _mlp_graph,
         "mt19937": _mlp_graph,
         "resnet": lambda: netgraph.from_torch(netgraph.zoo.build("resnet20", seed=0), (3, 32, 32))}[net]()
    rng_of = (lambda: np.random.Generator(np.random.MT19937(5))) if net == "mt19937" else (
        lambda: np.random.default_rng(5))
    assert (WalkGraph(g)._chain is None) == (net == "resnet")
    half = np.random.default_rng(5)
    half.integers(0, 2**32, dtype=np.uint32, size=1)  # half a 64-bit draw held: no copy can match it
    assert WalkGraph(g)._ahead(10, half, False) is None
    for bias in ("magnitude", "uniform", "inverse"):
        want, state, _ = _batches(g, bias, kernel_conserved, rng_of, None, monkeypatch)
        with ThreadPoolExecutor(max_workers=1) as ex:
            got, state2, here = _batches(g, bias, kernel_conserved, rng_of, ex, monkeypatch)
        assert _same_state(state, state2)
        assert all(np.array_equal(a, b) for x, y in zip(want, got) for a, b in zip(x, y))
        if net in ("resnet", "mt19937"):
            assert len(here) == 3 and all(here)  # in turn, on this thread
        elif net == "mlp_zeros":  # the zero column's walkers stop: walked again, then in turn
            assert here == [False, True, True, True]
        elif net == "conv" and bias == "magnitude":  # (no zero weight drawn: every batch beside)
            assert len(here) == 3 and not any(here)


def test_phew_masks_with_walks_beside_each_other(monkeypatch):
    """A chain of 2M weights or more walks its batches' backward walks on the pool: the masks of
    one thread, bit for bit."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1500, 1000), nn.ReLU(), nn.Linear(1000, 600), nn.ReLU(), nn.Linear(600, 10))
    g = netgraph.from_torch(model, (1500,))
    assert g.num_weights >= 2_000_000
    got = netgraph.sparsify(g, "phew", 0.01, seed=2)
    monkeypatch.setenv("NETGRAPH_NUM_THREADS", "1")
    want = netgraph.sparsify(netgraph.from_torch(model, (1500,)), "phew", 0.01, seed=2)
    assert all(np.array_equal(np.asarray(want[p]), np.asarray(got[p])) for p in g.param_names)
