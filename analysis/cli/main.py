"""The ``netgraph`` command: a click group of thin commands that parse, call the API and print."""

from __future__ import annotations

import sys

import click

from netgraph import __version__

from . import warning_lines
from .boundary import DEBUG_ENV, NetgraphGroup, make_cwd_importable
from .coverage_command import coverage_cmd
from .experiment_commands import compare_cmd, demo_cmd, reproduce_cmd
from .model_commands import analyze_cmd, graph_cmd, methods_cmd, metrics_cmd, models_cmd, prune_cmd
from .report_command import report_cmd
from .sweep_command import sweep_cmd


@click.group(cls=NetgraphGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netgraph")
@click.option("--debug", is_flag=True,
              help=f"Show the Python traceback of an error (for bug reports); also {DEBUG_ENV}=1.")
def main(debug):
    """Sparse neural-network topologies at initialization, as graph algorithms.

    Errors are one line on standard error: exit status 2 for a bad option or input,
    1 for a failure while running (silently when the reader of the output goes away, as in
    `netgraph analyze m.pt | head`), 130 after Ctrl-C.
    """
    make_cwd_importable()
    if not debug:  # a library warning is one line, once (with --debug: Python's full form)
        warning_lines.install()


for _cmd in (models_cmd, graph_cmd, methods_cmd, metrics_cmd, prune_cmd, analyze_cmd, compare_cmd, reproduce_cmd,
             sweep_cmd, demo_cmd, coverage_cmd, report_cmd):
    main.add_command(_cmd)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
