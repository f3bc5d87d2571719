"""The ``netgraph`` command line: thin wrappers that parse, call the API and print."""

from __future__ import annotations

import functools
import json
import sys
import time

import click

from . import zoo
from ._version import __version__
from .errors import NetgraphError


def _fail_cleanly(fn):
    """Turn library errors for bad input into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetgraphError as exc:
            raise click.UsageError(str(exc)) from None

    return wrapper


def model_options(fn):
    """``--model``, ``--input-shape`` and ``--seed`` shared by every model command."""
    fn = click.option("--seed", type=int, default=0, show_default=True,
                      help="Seed for the model's initialisation (and the method's randomness).")(fn)
    fn = click.option("--input-shape", default=None, metavar="C,H,W",
                      help="Input shape of one sample; required for user models.")(fn)
    fn = click.option("--model", "model_name", default="resnet20", show_default=True,
                      help="A zoo model (see `netgraph models`) or a user factory 'pkg.module:factory'.")(fn)
    return fn


def _echo_json(obj):
    click.echo(json.dumps(obj, indent=2, default=float))


def format_table(rows, columns, floatfmt="{:.4g}") -> str:
    """A plain-text table of dict rows (no dependency, aligned columns)."""
    def fmt(v):
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)))
    return "\n".join(lines)


def _numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netgraph")
def main():
    """Sparse neural-network topologies at initialization, as graph algorithms."""


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_cmd(as_json):
    """List the model zoo with parameter counts."""
    rows = []
    for name in zoo.names():
        e = zoo.entry(name)
        m = e.factory()
        prunable = sum(p.numel() for p in m.parameters() if p.dim() > 1)
        rows.append({"name": name, "input_shape": "x".join(map(str, e.input_shape)), "classes": e.num_classes,
                     "prunable_weights": prunable, "parameters": sum(p.numel() for p in m.parameters()),
                     "description": e.description})
    if as_json:
        _echo_json(rows)
    else:
        click.echo(format_table(rows, ["name", "input_shape", "classes", "prunable_weights", "parameters",
                                       "description"]))


@main.command("graph")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_fail_cleanly
def graph_cmd(model_name, input_shape, seed, as_json):
    """Describe a model's unit graph: layers, units, edges, dense flows."""
    t0 = time.perf_counter()
    _, g = zoo.graph_of(model_name, input_shape, seed)
    summary = g.summary()
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if as_json:
        _echo_json(summary)
        return
    click.echo(f"{model_name}: input {'x'.join(map(str, g.input_shape))}, {len(g.layers)} layers "
               f"({sum(l.kind == 'conv' for l in g.layers)} conv, {sum(l.kind == 'linear' for l in g.layers)} linear), "
               f"{len(g.shortcuts)} identity shortcuts")
    click.echo(format_table(summary["layers"], ["name", "kind", "in_units", "units", "weights", "src_group",
                                                "dst_group"]))
    click.echo(f"units {summary['units']}  edges {summary['edges']}  prunable weights {summary['prunable_weights']}")
    click.echo(f"log10 SynFlow R {summary['log10_synflow_R']:.4f}  "
               f"log10 path-kernel trace {summary['log10_path_kernel_trace']:.4f}  ({summary['seconds']} s)")


@main.command("demo")
@click.option("--quiet", is_flag=True, help="Less output.")
@click.pass_context
def demo_cmd(ctx, quiet):
    """The main job on built-in defaults (what `make demo` runs)."""
    ctx.invoke(graph_cmd, model_name="resnet20", input_shape=None, seed=0, as_json=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
