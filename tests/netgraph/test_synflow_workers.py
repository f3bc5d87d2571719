"""SynFlow's workers (``netgraph/sparsifiers/_workers.py``): ``map_sized`` runs a map in a few
chunks of about equal size, shared by the caller and a helper, and gives what a plain map gives,
in order, whatever the sizes."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings, strategies as st

from netgraph.sparsifiers import _workers


@pytest.fixture(scope="module")
def executor():
    with ThreadPoolExecutor(max_workers=2) as ex:
        yield ex


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 10**9), max_size=70))
def test_map_sized_is_a_map_in_order(executor, sizes):
    items = list(range(len(sizes)))
    assert _workers.map_sized(executor, lambda i: (i, i * i), items, sizes) == [(i, i * i) for i in items]


def test_map_sized_shares_contiguous_chunks_with_one_helper(executor, monkeypatch):
    """Sixty small items and two large ones: one helper submitted (two workers: the caller is the
    other), at most four chunks a thread, each a contiguous run, every item run once."""
    submitted, runs = [], []
    submit = executor.submit
    monkeypatch.setattr(executor, "submit", lambda fn: submitted.append(fn) or submit(fn))
    Chunks = _workers._Chunks
    monkeypatch.setattr(_workers, "_Chunks", lambda spans, run: runs.append(spans) or Chunks(spans, run))
    sizes = [1] * 30 + [10**6] + [1] * 30 + [10**6]
    assert _workers.map_sized(executor, str, range(len(sizes)), sizes) == [str(i) for i in range(len(sizes))]
    (spans,) = runs
    assert len(submitted) == 1 and 2 <= len(spans) <= 8
    assert [a for a, _ in spans] == [0] + [b for _, b in spans[:-1]] and spans[-1][1] == len(sizes)


def test_the_caller_does_every_chunk_when_no_helper_starts():
    """A helper that never runs (a pool that drops its tasks) costs nothing: the caller takes
    every chunk and waits for nobody."""

    class Dropping:
        _max_workers = 2

        def submit(self, fn, *args):
            pass

    items = range(50)
    assert _workers.map_sized(Dropping(), lambda i: -i, items, [10**6] * 50) == [-i for i in items]


def test_small_maps_run_in_the_caller_alone():
    """Below SHARED_FROM in all, no helper is asked (the pool's submit would fail)."""

    class Closed:
        _max_workers = 2

        def submit(self, fn, *args):
            raise AssertionError("a helper was asked for a small map")

    assert _workers.map_sized(Closed(), abs, range(-20, 0), [1] * 20) == list(range(20, 0, -1))


@pytest.mark.parametrize("bad", [0, 5, 19])
def test_map_sized_raises_what_the_function_raises(executor, bad):
    """Whichever thread runs the failing item, the caller raises its error, after the chunks
    already started are done."""
    def f(i):
        if i == bad:
            raise ValueError(f"item {bad}")
        return i

    with pytest.raises(ValueError, match=f"item {bad}"):
        _workers.map_sized(executor, f, range(20), [10**6] * 20)


def test_small_graphs_run_serially():
    assert isinstance(_workers.pool(1000), _workers.Serial)
    assert _workers.map_sized(_workers.Serial(), abs, [-1, 2, -3], [1, 1, 1]) == [1, 2, 3]
