"""``netgraph sweep``: a resumable grid, with the checks a long run needs before it starts.

Before the first run: the config is validated (:func:`analysis.experiments.sweep_config.load_config`),
the output folder must be writable, a ``--scheduler`` must answer within a few seconds, and a
grid of more than :data:`CONFIRM_ABOVE` runs asks for confirmation (or ``--yes``) with an
estimated time. After it: a non-zero exit status when any run failed, with the count and
the first errors. Ctrl-C says how many runs are recorded and the exact command that continues.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import time

import click

from netgraph.errors import NetgraphError

from .boundary import (CONFIRM_ABOVE, Interrupted, check_out_dir, confirm_runs, debug_enabled, describe,
                       load_model_checked, one_line)
#: Seconds to wait for a ``--scheduler`` to accept a connection.
SCHEDULER_TIMEOUT = 3.0
SCHEMES = ("tcp", "tls", "ws", "wss")
DASK_PORT = 8786


def scheduler_address(address: str) -> tuple:
    """``(scheme, host, port)`` of ``tcp://host:port`` (or ``host:port``); a usage error otherwise."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    host, colon, port = rest.rpartition(":")
    if not colon:
        host, port = rest, str(DASK_PORT)
    host = host.strip("[]")
    if scheme not in SCHEMES or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{address!r} is not a scheduler address; expected {'|'.join(SCHEMES)}://HOST:PORT, "
                                 f"e.g. tcp://10.0.0.5:{DASK_PORT}", param_hint="'--scheduler'")
    return scheme, host, int(port)


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> None:
    """Fail fast (status 1, one line) when nothing accepts connections at ``address``."""
    _, host, port = scheduler_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or ("timed out" if isinstance(exc, socket.timeout) else type(exc).__name__)
        raise click.ClickException(f"no Dask scheduler answers at {address} (--scheduler) within {timeout:g} s: "
                                   f"{why}; start one with `dask scheduler` or check the address") from None


def estimate_seconds(run) -> float | None:
    """Seconds one run of the grid takes, measured now on ``run`` (mask not saved); None if it fails."""
    import dataclasses

    import torch

    from ..experiments.sweep import execute

    threads, env = torch.get_num_threads(), os.environ.get("NETGRAPH_NUM_THREADS")
    try:
        t0 = time.perf_counter()
        row = execute(dataclasses.replace(run, masks_dir=None))
        return time.perf_counter() - t0 if row.get("status") == "done" else None
    finally:
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("NETGRAPH_NUM_THREADS", None)


def human_time(seconds: float) -> str:
    """``"3.2 h"``-style durations."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def confirm_size(first_run, total: int, workers: int, scheduler: str | None) -> None:
    """Ask before a grid of ``total`` runs (more than :data:`CONFIRM_ABOVE`), timing ``first_run``;
    refuse when no one can answer (:func:`analysis.cli.boundary.confirm_runs`)."""
    per_run = estimate_seconds(first_run)
    who = f"on the cluster at {scheduler}" if scheduler else f"with {workers} worker{'s' * (workers > 1)}"
    eta = (f"about {human_time(per_run * total / (1 if scheduler else workers))} {who} "
           f"({per_run:.2f} s per run measured now)") if per_run is not None else "time unknown"
    confirm_runs(total, eta)


def first_errors(res, limit: int = 3) -> list:
    """The first distinct error lines of a sweep's failed runs (from ``res.errors``)."""
    lines = [one_line(e) for _, _, _, e in res.errors if e]
    return list(dict.fromkeys(lines))[:limit]


def recorded_counts(out_dir: str) -> dict:
    """``{status: number of runs}`` recorded in ``out_dir/results.sqlite`` (empty if none)."""
    import sqlite3

    db = os.path.join(out_dir, "results.sqlite")
    if not os.path.isfile(db):
        return {}
    try:
        with sqlite3.connect(db) as con:
            return dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    except sqlite3.Error:
        return {}


def interrupted(config: str, out_dir: str, total: int) -> Interrupted:
    """The one line after Ctrl-C: what is recorded and the command that continues."""
    db = os.path.join(out_dir, "results.sqlite")
    counts = recorded_counts(out_dir)
    n = sum(counts.values())
    detail = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    again = f"netgraph sweep {shlex.quote(config)} --out {shlex.quote(out_dir)} --resume"
    return Interrupted(f"interrupted: {n} of {total} runs recorded{f' ({detail})' if detail else ''} in {db}; "
                       f"continue with: {again}")


@click.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Sweep folder (default: <name>-sweep next to the config).")
@click.option("--resume", is_flag=True, help="Continue: skip the runs already recorded.")
@click.option("--retry-failed", is_flag=True, help="With --resume, run the failed runs again.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Local Dask worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Submit to a running Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of a local cluster.")
@click.option("--force", is_flag=True,
              help="With --resume, continue although the config changed (its runs join the same database).")
@click.option("--yes", "-y", is_flag=True, help=f"Start a grid of more than {CONFIRM_ABOVE:,} runs without asking.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep_cmd(config, out_dir, resume, retry_failed, workers, scheduler, force, yes, quiet):
    """Run a resumable grid from a YAML/TOML CONFIG; results in SQLite (see docs/sweeps.md).

    Exits with status 1 when any run failed (the errors are in the database's error
    column); Ctrl-C prints the command that continues the sweep.
    """
    from ..experiments.sweep import local_cluster, run_sweep
    from ..experiments.sweep_config import load_config
    from .worker_warnings import forward_from_workers

    if retry_failed and not resume:
        raise click.UsageError("--retry-failed continues a sweep: add --resume")
    try:
        cfg = load_config(config)
    except NetgraphError:
        raise
    except Exception as exc:  # a user factory of the config raised while it was checked
        if debug_enabled(click.get_current_context(silent=True)):
            raise
        raise click.ClickException(f"sweep config {config}: building its models failed: {describe(exc)}") from None
    for m in cfg.models:  # user factories: one that raises or ties weights stops here, not in every run
        if ":" in m["name"]:
            load_model_checked(m["name"], m["input_shape"])
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(config)), f"{cfg.name}-sweep")
    check_out_dir(out_dir)
    have = sum(recorded_counts(out_dir).values())
    if have and not resume:
        raise click.BadParameter(f"{out_dir!r} already holds {have} recorded runs; add --resume to continue that "
                                 "sweep, or choose another folder", param_hint="'--out'")
    if scheduler:
        check_scheduler(scheduler)
    total = cfg.size  # counted, not built: a huge grid is confirmed before it takes memory
    if total > CONFIRM_ABOVE and not yes:
        confirm_size(next(cfg.iter_runs(out_dir)), total, workers, scheduler)
    try:
        with contextlib.ExitStack() as stack:
            address = scheduler or stack.enter_context(local_cluster(workers))
            if not scheduler and not debug_enabled(click.get_current_context(silent=True)):
                forward_from_workers(address)  # the workers' warnings: one line each, once, here
            res = run_sweep(cfg, out_dir, resume=resume, retry_failed=retry_failed, workers=workers,
                            scheduler=address, progress=not quiet, force=force)
    except KeyboardInterrupt:
        raise interrupted(config, out_dir, total) from None
    click.echo(f"{res.total} runs: {res.skipped} already recorded, {res.done} finished, {res.failed} failed "
               f"in {res.seconds:.1f} s; results in {os.path.join(res.directory, 'results.sqlite')}")
    if res.failed:
        errors = first_errors(res)
        for line in errors[1:]:
            click.echo(f"  also: {line}", err=True)
        raise click.ClickException(
            f"{res.failed} of {res.total - res.skipped} runs failed; first: {errors[0] if errors else '?'} "
            f"(every error in the error column of {os.path.join(res.directory, 'results.sqlite')})")
