"""The number of threads of the toolkit's pools: one place that reads ``NETGRAPH_NUM_THREADS``."""

from __future__ import annotations

import os

from .errors import InvalidInputError


def workers() -> int:
    """Threads for the toolkit's pools: ``NETGRAPH_NUM_THREADS`` when set (sweep workers set it
    to 1), else one per core; at most 4.

    Raises
    ------
    InvalidInputError
        If ``NETGRAPH_NUM_THREADS`` is set to anything but a positive integer.
    """
    env = os.environ.get("NETGRAPH_NUM_THREADS", "").strip()
    if not env:
        return min(4, os.cpu_count() or 1)
    if not env.isdecimal() or int(env) < 1:
        raise InvalidInputError(f"NETGRAPH_NUM_THREADS must be a positive whole number of threads, got {env!r}; "
                                "unset it for one thread per core")
    return min(4, int(env))
