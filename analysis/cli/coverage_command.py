"""``netgraph coverage``: which torchvision and timm architectures the tracer supports."""

from __future__ import annotations

import time

import click

from netgraph.errors import NetgraphError

from .boundary import check_out_dir, one_line


def _finite(ctx, param, value):
    if value != value:  # NaN passes click's range check
        raise click.BadParameter("nan is not a number of seconds in 1<=x<=1000000.0", param=param)
    return value


@click.command("coverage")
@click.option("--out", "out_dir", default="docs", show_default=True, type=click.Path(file_okay=False),
              help="Folder for coverage.md, coverage.csv and coverage.json.")
@click.option("--sources", default="torchvision,timm", show_default=True,
              help="Comma-separated: torchvision, timm, zoo, or single model names (e.g. timm:convnext_atto).")
@click.option("--timeout", type=click.FloatRange(min=1, max=1e6), default=600, show_default=True,
              callback=_finite, help="Seconds allowed per model.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Torch threads per model.")
@click.option("--in-process", is_flag=True, help="Trace in this process (default: one fresh process per model).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def coverage_cmd(out_dir, sources, timeout, threads, in_process, quiet):
    """Try every torchvision classifier and a broad timm selection: traced or not, time, blockers.

    Architectures only (nothing downloaded), each at its default input size. Writes the
    report that docs/coverage.md is.
    """
    from netgraph.provenance import command_line

    from ..experiments.coverage import check_sources, write_coverage

    names = tuple(s.strip() for s in sources.split(",") if s.strip())
    if not names:
        raise click.BadParameter("give at least one source, e.g. torchvision", param_hint="'--sources'")
    try:
        check_sources(names)  # before anything is written
    except NetgraphError as exc:
        raise click.BadParameter(one_line(exc), param_hint="'--sources'") from None
    check_out_dir(out_dir)
    t0 = time.perf_counter()
    res = write_coverage(out_dir, names, quiet=quiet, isolate=not in_process, timeout=timeout, threads=threads,
                         command=command_line())
    for source, counts in res["summary"]["sources"].items():
        click.echo(f"{source}: {counts.get('traced', 0)} of {counts['total']} traced"
                   + (f", {counts['bug']} bugs" if counts.get("bug") else ""))
    for b in res["summary"]["blockers"][:5]:
        click.echo(f"  {b['models']:3d} models stopped by: {b['blocker']}")
    click.echo(f"{time.perf_counter() - t0:.0f} s; wrote {', '.join(res['files'].values())}")
