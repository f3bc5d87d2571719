"""The number of threads of the toolkit's pools: one place that reads ``NETGRAPH_NUM_THREADS``."""

from __future__ import annotations

import os


def workers() -> int:
    """Threads for the toolkit's pools: ``NETGRAPH_NUM_THREADS`` when set (sweep workers set it
    to 1), else one per core, at most 4."""
    return min(4, int(os.environ.get("NETGRAPH_NUM_THREADS", 0)) or os.cpu_count() or 1)
