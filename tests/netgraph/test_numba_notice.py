"""The one line a first compile of the toolkit's numba kernels prints (``netgraph._numba``): once a
process, only where a caller asks (progress on), never for another package's kernels."""

import pytest

from netgraph import _numba

event = pytest.importorskip("numba.core.event")


@pytest.fixture
def fresh(monkeypatch):
    """The notice not shown yet in this process, and nobody asking."""
    monkeypatch.setitem(_numba._state, "shown", False)
    monkeypatch.setitem(_numba._state, "asking", 0)


def _compile(dispatcher):
    with event.trigger_event("numba:compile", data={"dispatcher": dispatcher}):
        pass


def test_first_compile_of_a_toolkit_kernel_says_so_once(fresh, capsys):
    from netgraph import _sum_kernels  # (importing a kernel module starts the watch)

    assert _numba._state["watching"]
    _compile(_sum_kernels.abs_sums)  # nobody asks: nothing
    assert capsys.readouterr().err == ""
    with _numba.compile_notice(False):
        _compile(_sum_kernels.abs_sums)
    assert capsys.readouterr().err == ""
    with _numba.compile_notice(True), _numba.compile_notice(False):  # (an enclosing one that shows still does)
        _compile(_sum_kernels.abs_sums)
        _compile(_sum_kernels.leaf)
    err = capsys.readouterr().err
    assert err.count(_numba.NOTICE) == 1 and err.strip() == _numba.NOTICE
    with _numba.compile_notice():
        _compile(_sum_kernels.abs_sums)  # once a process
    assert capsys.readouterr().err == ""
    assert _numba._state["asking"] == 0


def test_other_kernels_and_events_say_nothing(fresh, capsys):
    from numba import njit

    from netgraph import _sum_kernels  # noqa: F401

    @njit
    def theirs(x):
        return x + 1

    with _numba.compile_notice():
        _compile(theirs)
        with event.trigger_event("numba:compile", data=None):
            pass
        assert theirs(1) == 2  # a real compile of another package's function
    assert capsys.readouterr().err == "" and not _numba._state["shown"]


def test_sparsify_asks_with_progress_only(fresh, monkeypatch):
    """``sparsify(progress=True)`` asks for the notice while its method runs; without progress not."""
    import torch

    import netgraph
    from netgraph.sparsifiers import registry

    seen = []
    real = registry.get

    def get(name):
        m = real(name)
        return type(m)(**{**m.__dict__, "fn": lambda ctx, **kw: seen.append(_numba._state["asking"]) or m.fn(ctx, **kw)})

    monkeypatch.setattr(netgraph.sparsifiers, "get", get)
    g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)), (4,))
    netgraph.sparsify(g, "random", 0.5, seed=0, progress=True)
    netgraph.sparsify(g, "random", 0.5, seed=0)
    assert seen == [1, 0]
