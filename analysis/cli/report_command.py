"""``netgraph report MASK_FILE --out DIR``: every figure and a Markdown summary of one mask.

Register in ``analysis/cli/main.py`` with ``cli.add_command(report_cmd)``.
"""

from __future__ import annotations

import os

import click
from click.core import ParameterSource

from netgraph._numba import compile_notice

from ..experiments.report import report_files, write_report
from .boundary import FIGURE_FORMATS, comma_choices, mask_and_graph
from .common import check_empty_out, formats_option, mask_model_options


@click.command("report")
@click.argument("mask_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the report; new or empty unless --force.")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out: an earlier report's files there (report.md and its figures, in "
                   "any format) are replaced; other files stay.")
@mask_model_options
@formats_option
@click.option("--format", "old_formats", default=None, hidden=True, callback=comma_choices(FIGURE_FORMATS),
              help="The old name of --formats.")
@click.pass_context
def report_cmd(ctx, mask_file, out_dir, force, model_name, input_shape, num_classes, seed, formats, old_formats):
    """Write every figure and report.md for one mask file (torch or .safetensors).

    The model is found as `netgraph analyze` finds it: the file's, or --model with
    --num-classes and --input-shape.
    """
    if old_formats is not None:
        if ctx.get_parameter_source("formats") is ParameterSource.COMMANDLINE:
            raise click.UsageError("--format is the old name of --formats; give --formats only")
        formats = old_formats
    check_empty_out(out_dir, force, "a report")  # before the work: a folder that cannot be written is refused now
    ms, g, _ = mask_and_graph(mask_file, model_name, input_shape, seed, num_classes)
    for path in report_files(out_dir):  # (with --force) an earlier report's files, in any format, go first
        os.remove(path)
    with compile_notice():  # (a first compile of numba kernels says so: once per install)
        paths = write_report(ms, out_dir, graph=g, formats=formats)
    click.echo(f"wrote {len(paths)} files to {out_dir} (summary: {paths[-1]})")
