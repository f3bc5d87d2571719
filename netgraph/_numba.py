"""When the toolkit loads its numba kernels (:data:`LOAD_FROM`), and the one line a user sees while
they compile.

numba compiles a kernel the first time it is called and keeps it in its cache (``cache=True``):
once per install, or after an upgrade. For the toolkit's kernels (SynFlow's walks and updates,
PHEW's tables and draws, the bundle sums, the spectral metrics' Lanczos solver) that is 10 to
60 s of silent work, which a user would take for a hang. Each kernel module calls
:func:`watch_compiles` when imported (numba is imported by then); while a
:func:`compile_notice` asks for it (the progress flag of :func:`netgraph.sparsify`, the
experiments and the CLI commands, off with ``--quiet``), the first compile of one of the
toolkit's kernels in the process prints one line to stderr. Loading a kernel from numba's
cache prints nothing (numba signals only compiles).
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

#: Graphs from which the toolkit loads its numba kernels where its numpy code would do as well (PHEW's
#: tables and draws, the spectral metrics' Lanczos solver): numba's import and the kernels' first load
#: from its cache, about 0.7 s once a process, cost a smaller graph more than they save. (SynFlow's
#: engine and the bundle sums it asks for take their kernels on any graph.)
LOAD_FROM = 50_000_000
#: What the line says.
NOTICE = ("netgraph: compiling its numba kernels for this install (once: 10-60 s; numba's cache keeps "
          "them) ...")
#: The toolkit's two packages' folders (installed side by side): a kernel's source file lies in one.
_FOLDERS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep
                 for name in ("netgraph", "analysis"))
_state = {"asking": 0, "shown": False, "watching": False}
_lock = threading.Lock()


def _ours(event) -> bool:
    """Whether a compile event is one of the toolkit's kernels (its source in the toolkit's folders:
    not another package that happens to be named ``analysis``)."""
    fn = getattr((event.data or {}).get("dispatcher"), "py_func", None)
    path = getattr(getattr(fn, "__code__", None), "co_filename", "")
    return os.path.abspath(path).startswith(_FOLDERS) if path else False


def _notify(event) -> None:
    with _lock:
        show = _state["asking"] > 0 and not _state["shown"] and _ours(event)
        _state["shown"] = _state["shown"] or show
    if show:
        from tqdm.auto import tqdm

        tqdm.write(NOTICE, file=sys.stderr)  # (beside any progress bar)


def watch_compiles() -> None:
    """Listen for numba's compiles (once a process; called by each kernel module at import)."""
    with _lock:
        if _state["watching"]:
            return
        _state["watching"] = True
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev):
            _notify(ev)

        def on_end(self, ev):
            pass

    event.register("numba:compile", _Listener())


def reads_in_place(w) -> bool:
    """Whether the toolkit's kernels read weights ``w`` (an ndarray) in place: C-contiguous float32 or
    float64 (what the tracer gives; other arrays take the numpy code)."""
    return w.dtype.name in ("float32", "float64") and w.flags.c_contiguous


@contextmanager
def compile_notice(show: bool = True):
    """Inside, with ``show``, the first compile of one of the toolkit's numba kernels in this
    process (on any thread) prints :data:`NOTICE` to stderr; without ``show`` it asks nothing
    (an enclosing context that shows still does)."""
    if not show:
        yield
        return
    with _lock:
        _state["asking"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["asking"] -= 1
