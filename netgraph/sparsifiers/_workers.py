"""The workers of unit-level SynFlow's engine (:mod:`.synflow`, :mod:`._flowprune`): a thread
pool for large graphs (the compiled kernels release the GIL), and :func:`map_sized`, which maps
over the layers in a few tasks of about equal work."""

from __future__ import annotations

import functools
import threading
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


#: Maps of less work (the sum of their items' sizes) run in the calling thread alone: the bracket's
#: sample, the factors, the updates of a few candidates cost less than a helper's wake-up.
SHARED_FROM = 100_000


def map_sized(executor, fn, items, sizes) -> list:
    """``[fn(x) for x in items]`` in ``executor`` (else in the caller), the items in contiguous
    chunks of about equal total ``sizes``, four per thread, which the calling thread and
    ``workers - 1`` helpers of the pool take in turn (:class:`_Chunks`); a map of less than
    :data:`SHARED_FROM` in all runs in the caller alone. The caller works instead of waiting:
    a task handed to a sleeping thread starts tens to hundreds of microseconds later, and a net
    of 60 layers maps four times an iteration (in one sitting, SynFlow on vgg19 7% and on
    resnet50 11% faster than with every chunk a pool task; a net of 17 small layers 2.7 ms an
    iteration, against 3.7 ms so and 2 ms with no thread). Same results, same order."""
    items, sizes = list(items), list(sizes)
    if not hasattr(executor, "submit") or len(items) < 3 or sum(sizes) < SHARED_FROM:
        return [fn(x) for x in items]
    helpers = max(1, getattr(executor, "_max_workers", 2) - 1)
    cum = np.cumsum(np.asarray(sizes, dtype=np.float64) + 1.0)  # (+1: an empty item still costs a call)
    n = 4 * (helpers + 1)
    cuts = np.unique(np.concatenate(([0], np.searchsorted(cum, cum[-1] * np.arange(1, n) / n) + 1, [len(items)])))
    chunks = _Chunks([(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])], lambda a, b: [fn(x) for x in items[a:b]])
    for _ in range(helpers):
        executor.submit(chunks.work)
    chunks.work()
    return [r for part in chunks.results() for r in part]


class _Chunks:
    """The chunks of one :func:`map_sized`, taken in turn by whichever thread asks first (a
    helper that starts after the last one was taken returns at once, and nobody waits for it);
    :meth:`results` waits for the chunks still running, then gives every chunk's result in order
    or raises the first error (after which no chunk is started)."""

    def __init__(self, spans: list, run):
        self.spans, self.run = spans, run
        self.out = [None] * len(spans)
        self.next = self.running = 0
        self.error = None
        self.cond = threading.Condition()

    def _take(self):
        with self.cond:
            if self.next == len(self.spans) or self.error is not None:
                return None
            self.next += 1
            self.running += 1
            return self.next - 1

    def _done(self, error=None) -> None:
        with self.cond:
            self.running -= 1
            if error is not None and self.error is None:
                self.error = error
            if self.running == 0:
                self.cond.notify_all()

    def work(self) -> None:
        """Run chunks until none is left."""
        while (i := self._take()) is not None:
            try:
                self.out[i] = self.run(*self.spans[i])
            except BaseException as exc:  # (raised in the caller, by results)
                self._done(exc)
                return
            self._done()

    def results(self) -> list:
        with self.cond:
            self.cond.wait_for(lambda: self.running == 0)
        if self.error is not None:
            raise self.error
        return self.out


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
