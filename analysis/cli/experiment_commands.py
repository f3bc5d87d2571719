"""Commands that run many masks: compare, reproduce, demo (the sweep is in ``sweep_command``)."""

from __future__ import annotations

import os
import sys
import time

import click

from netgraph import zoo
from netgraph.data import PRUNE_DATA
from netgraph.errors import NetgraphError

from ..experiments.grid import check_distinct, grid_size
from ..experiments.reproduce import STUDIES
from .boundary import CONFIRM_ABOVE, SEED_MAX, check_out_dir, confirm_runs, density_list, load_model_checked, method_list
from .common import check_empty_out, format_table, formats_option, layer_scale_option, model_options, offpath_option


def _command_line() -> str | None:
    import shlex

    return "netgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None


@click.command("compare")
@model_options
@click.option("--methods", default="phew,synflow,synflow-l2,random", show_default=True, callback=method_list,
              help="Comma-separated methods; options as phew:bias=uniform,kernel_conserved=true.")
@click.option("--densities", default="0.1,0.05,0.02,0.01", show_default=True, callback=density_list,
              help="Comma-separated densities in (0, 1].")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of seeds: SEED, SEED+1, ..., SEED+N-1.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder; new or empty unless --force.")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out: first delete the files a comparison writes there "
                   "(results.csv, summary.md, the standard figures); other files stay.")
@click.option("--data", "data_kind", type=click.Choice(PRUNE_DATA), default=None,
              help="Data for snip/grasp.")
@click.option("--no-max-flow", is_flag=True, help="Skip the max-flow metrics (min vertex cut, disjoint paths).")
@click.option("--collapse", is_flag=True,
              help="Also bisect each data-free method's layer-collapse margin per seed (collapse.csv, a section "
                   "of summary.md, the collapse_margin figure).")
@formats_option
@offpath_option
@layer_scale_option
@click.option("--yes", "-y", is_flag=True, help=f"Start a grid of more than {CONFIRM_ABOVE:,} runs without asking.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def compare_cmd(model_name, input_shape, num_classes, seed, methods, densities, seeds, out_dir, force, data_kind, no_max_flow,
                collapse, formats, offpath, layer_scale, yes, quiet):
    """Masks for methods x densities x seeds: results.csv, summary.md and plots.

    Seed s initialises the model and drives the method; the seeds are --seed, --seed+1,
    ..., --seed + --seeds - 1.
    """
    from netgraph.sparsifiers import get

    from ..experiments.compare import compare, comparison_files, write_comparison
    from ..experiments.run import DENSE, parse_method

    if seed + seeds - 1 > SEED_MAX:
        raise click.BadParameter(f"--seed {seed} with --seeds {seeds} reaches {seed + seeds - 1}; seeds must stay "
                                 f"in 0..{SEED_MAX}", param_hint="'--seeds'")
    needs = [s for s in methods if parse_method(s)[1] != DENSE and get(parse_method(s)[1]).needs_data]
    if needs and data_kind is None:
        raise click.UsageError(f"method {needs[0]!r} is data-dependent: add --data random or --data digits")
    check_empty_out(out_dir, force, "a comparison")
    total = grid_size(methods, densities, range(seeds))  # counted before anything is built
    if total > CONFIRM_ABOVE and not yes:
        confirm_runs(total, " x ".join(f"{n:,} {word if n == 1 else plural}" for n, word, plural in (
            (len(methods), "method", "methods"), (len(densities), "density", "densities"), (seeds, "seed", "seeds"))))
    load_model_checked(model_name, input_shape, seed, num_classes)  # a factory that fails or ties weights: one line
    t0 = time.perf_counter()
    df = compare(model_name, methods, densities, range(seed, seed + seeds), input_shape=input_shape,
                 num_classes=num_classes, data=data_kind, progress=not quiet, max_flow=not no_max_flow,
                 offpath=offpath, layer_scale=layer_scale, collapse=collapse)
    for path in comparison_files(out_dir):
        os.remove(path)
    files = write_comparison(df, out_dir, formats=formats, command=_command_line())
    click.echo(f"{len(df)} runs in {time.perf_counter() - t0:.1f} s; wrote {len(files)} files to {out_dir}")


@click.command("reproduce")
@click.option("--study", type=click.Choice(STUDIES), required=True,
              help="topology: data-free study of vgg19/resnet20/resnet18; training: digits training study; "
                   "mnist1d: the MNIST-1D training study (needs the study extra: mnist1d); modern: the topology "
                   "study on torchvision's mobilenet_v2, efficientnet_b0, resnext50_32x4d, densenet121, "
                   "convnext_tiny and vit_b_16 (needs torchvision; --quick: timm's test networks).")
@click.option("--out", "out_dir", default="docs/reproduction", show_default=True, type=click.Path(file_okay=False))
@click.option("--quick", is_flag=True, help="The reduced version (one small model, few densities, one seed).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--report-only", is_flag=True,
              help="mnist1d only: rebuild the tables, report and figures from OUT/mnist1d_results.csv of an "
                   "earlier run, without training.")
def reproduce_cmd(study, out_dir, quick, quiet, report_only):
    """Measure the PHEW paper's claims; write tables, a claims table and figures to OUT."""
    from ..experiments import reproduce

    if report_only and study != "mnist1d":
        raise click.UsageError(f"--report-only rebuilds the mnist1d study's report; it does not apply to --study {study}")
    check_out_dir(out_dir)
    command = _command_line()
    t0 = time.perf_counter()
    df, claims = reproduce.run_study(study, quick, out_dir, progress=not quiet, command=command,
                                     report_only=report_only)
    for c in claims:
        click.echo(f"[{c['holds']}] {c['claim']}: {c['measured']}")
    click.echo(f"{len(df)} runs in {(time.perf_counter() - t0) / 60:.1f} min; wrote {out_dir}/{study.replace('-', '_')}.md")


def zoo_model_list(ctx, param, value):
    """A click callback: comma-separated zoo model names, at least one."""
    names = [t.strip() for t in str(value).split(",") if t.strip()]
    bad = [n for n in names if n not in zoo.names()]
    if not names:
        raise click.BadParameter(f"{value!r} names no model; choose from {', '.join(zoo.names())}", param=param)
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not a zoo model; choose from {', '.join(zoo.names())}",
                                 param=param)
    try:
        return check_distinct("models", names)
    except NetgraphError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _narrowest(r) -> str:
    """The bottleneck of a result row in words: an emptied layer of a connected network is one
    the shortcuts go round, not a disconnection."""
    text = f"{r.bottleneck_width} units ({r.bottleneck_fraction:.0%} of dense)"
    if r.bottleneck_width == 0:
        text += ", paths go round it through the shortcuts" if r.connected else ", disconnected"
    return text


@click.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(file_okay=False),
              help="Where to write the tables and figures (the files of an earlier demo are replaced).")
@click.option("--models", default="resnet20,vgg19", show_default=True, callback=zoo_model_list,
              help="Comma-separated zoo models.")
@click.option("--densities", default="0.1,0.02,0.005", show_default=True, callback=density_list,
              help="Comma-separated densities in (0, 1].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_cmd(out_dir, models, densities, quiet):
    """The main job on built-in defaults: PHEW vs SynFlow-L2 (random for reference).

    For each model and density: build the masks, measure them, print a comparison
    (path-kernel trace, bottleneck, layer widths, wasted weights, time) and write
    results.csv, summary.md and figures under OUT.
    """
    from ..experiments.compare import compare, comparison_files, write_comparison

    check_out_dir(out_dir)
    dens = densities
    for name in models:
        _, g = zoo.graph_of(name)
        click.echo(f"\n== {name}: {len(g.layers)} layers, {g.num_units} units, {g.num_weights:,} prunable weights")
        df = compare(name, ["phew", "synflow-l2", "random"], dens, seeds=1, progress=not quiet)
        rows = [{"method": r.method, "density": r.target_density, "kept": r.kept, "seconds": r.seconds,
                 "log10_PK_trace": r.log10_path_kernel_trace, "bottleneck": r.bottleneck_width,
                 "bottleneck_frac": r.bottleneck_fraction,
                 "mean_width": r.mean_width_fraction, "on_path": r.effective_fraction}
                for r in df.itertuples()]
        click.echo(format_table(rows, list(rows[0])))
        for d in dict.fromkeys(dens):
            cell = df[df["target_density"] == d].set_index("method")
            p, s2 = cell.loc["phew"], cell.loc["synflow-l2"]
            click.echo(f"  at {d:g}: PK trace PHEW/SynFlow-L2 = 10^{p.log10_path_kernel_trace - s2.log10_path_kernel_trace:+.2f}; "
                       f"mean layer width PHEW {p.mean_width_fraction:.0%} vs SynFlow-L2 {s2.mean_width_fraction:.0%}; "
                       f"narrowest layer {_narrowest(p)} vs {_narrowest(s2)}")
        folder = os.path.join(out_dir, name)
        for path in comparison_files(folder) if os.path.isdir(folder) else []:
            os.remove(path)
        files = write_comparison(df, folder, command=f"netgraph demo --models {name}")
        click.echo(f"  wrote {len(files)} files to {folder}")
