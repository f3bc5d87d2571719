"""``netgraph report MASK_FILE --out DIR``: every figure and a Markdown summary of one mask.

Register in ``analysis/cli/main.py`` with ``cli.add_command(report_cmd)``.
"""

from __future__ import annotations

import click

from ..experiments.report import write_report
from .boundary import SEED, check_out_dir, input_shape_value


@click.command("report")
@click.argument("mask_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the report.")
@click.option("--model", "model_name", default=None, help="Model (default: the one in the mask file).")
@click.option("--input-shape", default=None, metavar="C,H,W", callback=input_shape_value,
              help="Input shape (user models).")
@click.option("--seed", type=SEED, default=None, help="Model initialisation seed (default: the file's).")
@click.option("--format", "formats", default="png,svg", show_default=True, help="Figure formats, comma-separated.")
def report_cmd(mask_file, out_dir, model_name, input_shape, seed, formats):
    """Write every figure and report.md for one mask file (torch or .safetensors)."""
    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    if not fmts or any(f not in ("png", "svg", "pdf") for f in fmts):
        raise click.UsageError(f"--format takes png, svg and/or pdf, got {formats!r}")
    check_out_dir(out_dir)  # before the work: a folder that cannot be written is refused now
    paths = write_report(mask_file, out_dir, model=model_name, input_shape=input_shape, seed=seed, formats=fmts)
    click.echo(f"wrote {len(paths)} files to {out_dir} (summary: {paths[-1]})")
