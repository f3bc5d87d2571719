"""Library warnings on the command line: one ``Warning:`` line each, once per command.

A warning of the library (a layer scale below 1e-3, an off-path parameter pruned empty) is
printed as ``Warning: TEXT`` on standard error, on one line, the first time its text
occurs in the command (:func:`install`); with ``--debug`` Python's own form stays.

The runs of a sweep happen in Dask worker processes, whose warnings would each print
Python's two-line form (file, line and source) on the terminal, once per worker and per
run. :class:`analysis.cli.worker_warnings.ForwardWarnings`, registered on a local cluster,
sends them instead to the command (Dask's ``warn`` event, as :func:`distributed.warn`
does), which prints each distinct one once like the other commands.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import warnings

import click

from .boundary import one_line

__all__ = ["install", "forward"]


def install() -> None:
    """Print every warning as one ``Warning: TEXT`` line on standard error, each distinct text once."""
    shown: set = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = one_line(message)
        if text in shown:
            return
        shown.add(text)
        tqdm = sys.modules.get("tqdm")  # a progress bar on the terminal: cleared, the line printed, redrawn
        with tqdm.tqdm.external_write_mode(file=sys.stderr) if tqdm is not None else contextlib.nullcontext():
            click.echo(f"Warning: {text}", err=True)

    warnings.showwarning = show
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"Warning: {one_line(message)}\n"


def forward(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` of a worker: the warning goes to the sweep's client, not to the terminal."""
    text = one_line(message)
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not inside a worker's task: one line here
        sys.stderr.write(f"Warning: {text}\n")
        return
    try:
        kind = pickle.dumps(category)
        pickle.loads(kind)
    except Exception:  # a class the client may not import: the text is what counts
        kind = pickle.dumps(UserWarning)
    worker.log_event("warn", {"message": pickle.dumps(text), "category": kind})
