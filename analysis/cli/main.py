"""The ``netgraph`` command: a click group of thin commands that parse, call the API and print."""

from __future__ import annotations

import sys

import click

from netgraph import __version__

from .experiment_commands import compare_cmd, demo_cmd, reproduce_cmd, sweep_cmd
from .model_commands import analyze_cmd, graph_cmd, methods_cmd, metrics_cmd, models_cmd, prune_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netgraph")
def main():
    """Sparse neural-network topologies at initialization, as graph algorithms."""


for _cmd in (models_cmd, graph_cmd, methods_cmd, metrics_cmd, prune_cmd, analyze_cmd, compare_cmd, reproduce_cmd,
             sweep_cmd, demo_cmd):
    main.add_command(_cmd)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
