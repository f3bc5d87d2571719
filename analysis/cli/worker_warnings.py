"""The Dask worker plugin of ``netgraph sweep`` that sends the workers' warnings to the command
(:mod:`analysis.cli.warning_lines`); imported by the sweep only (it imports Dask)."""

from __future__ import annotations

import warnings

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

from .warning_lines import forward

__all__ = ["ForwardWarnings", "forward_from_workers"]


class ForwardWarnings(WorkerPlugin):
    """A worker plugin: the worker's warnings go to the clients as Dask ``warn`` events."""

    name = "netgraph-forward-warnings"

    def setup(self, worker):
        """Route the worker process's warnings to :func:`analysis.cli.warning_lines.forward`."""
        warnings.showwarning = forward


def forward_from_workers(address: str) -> None:
    """Register :class:`ForwardWarnings` on the workers of the cluster at ``address``."""
    with Client(address, set_as_default=False) as client:
        client.register_plugin(ForwardWarnings())
