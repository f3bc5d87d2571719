"""SynFlow's workers (``netgraph/sparsifiers/_workers.py``): ``map_sized`` runs a map in a few
tasks of about equal size, and gives what a plain map gives, in order, whatever the sizes."""

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


def test_map_sized_groups_items_into_a_few_tasks(executor, monkeypatch):
    """Sixty small items and two large ones: at most four tasks a worker, each a contiguous run."""
    submitted = []
    submit = executor.submit

    def counting(fn, a, b):
        submitted.append((a, b))
        return submit(fn, a, b)

    monkeypatch.setattr(executor, "submit", counting)
    sizes = [1] * 30 + [10**6] + [1] * 30 + [10**6]
    assert _workers.map_sized(executor, str, range(len(sizes)), sizes) == [str(i) for i in range(len(sizes))]
    assert 2 <= len(submitted) <= 8
    assert [a for a, _ in submitted] == [0] + [b for _, b in submitted[:-1]] and submitted[-1][1] == len(sizes)


def test_map_sized_raises_what_the_function_raises(executor):
    def f(i):
        if i == 5:
            raise ValueError("item 5")
        return i

    with pytest.raises(ValueError, match="item 5"):
        _workers.map_sized(executor, f, range(20), [1] * 20)


def test_small_graphs_run_serially():
    assert isinstance(_workers.pool(1000), _workers.Serial)
    assert _workers.map_sized(_workers.Serial(), abs, [-1, 2, -3], [1, 1, 1]) == [1, 2, 3]
