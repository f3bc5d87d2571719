"""``netgraph report MASK_FILE --out DIR``: every figure and a Markdown summary of one mask.

Register in ``analysis/cli/main.py`` with ``cli.add_command(report_cmd)``.
"""

from __future__ import annotations

import click

from ..experiments.report import write_report
from .boundary import check_out_dir, mask_and_graph
from .common import mask_model_options


@click.command("report")
@click.argument("mask_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the report.")
@mask_model_options
@click.option("--format", "formats", default="png,svg", show_default=True, help="Figure formats, comma-separated.")
def report_cmd(mask_file, out_dir, model_name, input_shape, num_classes, seed, formats):
    """Write every figure and report.md for one mask file (torch or .safetensors).

    The model is found as `netgraph analyze` finds it: the file's, or --model with
    --num-classes and --input-shape.
    """
    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    if not fmts or any(f not in ("png", "svg", "pdf") for f in fmts):
        raise click.UsageError(f"--format takes png, svg and/or pdf, got {formats!r}")
    check_out_dir(out_dir)  # before the work: a folder that cannot be written is refused now
    ms, g, _ = mask_and_graph(mask_file, model_name, input_shape, seed, num_classes)
    paths = write_report(ms, out_dir, graph=g, formats=fmts)
    click.echo(f"wrote {len(paths)} files to {out_dir} (summary: {paths[-1]})")
