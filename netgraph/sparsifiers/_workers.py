"""The workers of unit-level SynFlow's engine (:mod:`.synflow`, :mod:`._flowprune`): a thread
pool for large graphs (the compiled kernels release the GIL), and :func:`map_sized`, which maps
over the layers in a few tasks of about equal work."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._threads import workers


class Serial:
    """Executor stand-in for small graphs, where threads cost more than they save.

    Large graphs use one thread per core, or ``NETGRAPH_NUM_THREADS`` threads when that
    environment variable is set (sweep workers set it to 1).
    """

    map = staticmethod(map)

    def shutdown(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def pool(num_weights: int):
    """The engine's executor for a graph of ``num_weights``: a thread pool, or :class:`Serial`."""
    n = workers()
    if num_weights < 2_000_000 or n < 2:
        return Serial()
    return ThreadPoolExecutor(max_workers=n)


def map_sized(executor, fn, items, sizes) -> list:
    """``[fn(x) for x in items]`` in ``executor`` (else its plain ``map``), the items in
    contiguous groups of about equal total ``sizes``, four per worker: a task costs some 10 us to
    dispatch, and a net of 60 layers maps four times an iteration. Same results, same order."""
    items = list(items)
    if not hasattr(executor, "submit") or len(items) < 3:
        return list(executor.map(fn, items))
    cum = np.cumsum(np.asarray(sizes, dtype=np.float64) + 1.0)  # (+1: an empty item still costs a call)
    n = 4 * getattr(executor, "_max_workers", 2)
    cuts = np.unique(np.concatenate(([0], np.searchsorted(cum, cum[-1] * np.arange(1, n) / n) + 1, [len(items)])))
    tasks = [executor.submit(lambda a, b: [fn(x) for x in items[a:b]], int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
    return [r for t in tasks for r in t.result()]


def index_dtype(n: int):
    """Indices below ``n``: int32 while they fit (4 bytes an entry), else int64."""
    return np.int32 if n < 2**31 else np.int64


def memory_of(a: np.ndarray) -> np.ndarray:
    """The array whose memory ``a`` views (``a`` when it owns it)."""
    return a if a.base is None else a.base


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> None:
    """Give the memory freed so far back to the system where the C library keeps it (glibc's
    ``malloc_trim``: the walks' buffers, freed by the pool's threads, stay in their arenas
    otherwise and count in the process's peak); nothing elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
