"""When PHEW runs its compiled kernels (:mod:`._phew_kernels`) instead of its numpy code.

Both give the same results bit for bit; the choice is speed only, and it rests on the graph
alone: :func:`load_kernels` imports the kernels (numba with them) for a graph of
:data:`LOAD_FROM` weights or more, and the walk passes the module it got (or ``None``) to its
tables and draws, which use it for :data:`COMPILED_FROM` walkers or more.
"""

from __future__ import annotations

from .._numba import LOAD_FROM  # (graphs from which PHEW loads its compiled kernels)

#: Walkers from which a draw runs compiled (fewer: numpy's whole-array passes cost about as much).
COMPILED_FROM = 1 << 12


def load_kernels(num_weights: int):
    """:mod:`._phew_kernels` for a graph of ``num_weights`` (:data:`LOAD_FROM` or more), else
    ``None``; ``None`` too where numba cannot be imported."""
    if num_weights < LOAD_FROM:
        return None
    try:
        from . import _phew_kernels
    except ImportError:
        return None
    return _phew_kernels


def for_walkers(kernels, walkers: int):
    """``kernels`` for a draw of ``walkers`` (:data:`COMPILED_FROM` or more), else ``None``."""
    return kernels if kernels is not None and walkers >= COMPILED_FROM else None

