"""Commands that run many masks: compare, reproduce, sweep, demo."""

from __future__ import annotations

import os
import sys
import time

import click

from netgraph import zoo
from netgraph.data import PRUNE_DATA

from ..experiments.reproduce import STUDIES

from .common import fail_cleanly, floats, format_table, model_options, split_methods


@click.command("compare")
@model_options
@click.option("--methods", default="phew,synflow,synflow-l2,random", show_default=True,
              help="Comma-separated methods; options as phew:bias=uniform,kernel_conserved=true.")
@click.option("--densities", default="0.1,0.05,0.02,0.01", show_default=True, help="Comma-separated densities.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Number of seeds (0..N-1).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--data", "data_kind", type=click.Choice(PRUNE_DATA), default=None,
              help="Data for snip/grasp.")
@click.option("--no-max-flow", is_flag=True, help="Skip the max-flow metrics (min vertex cut, disjoint paths).")
@click.option("--formats", default="png,svg", show_default=True, help="Figure formats.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@fail_cleanly
def compare_cmd(model_name, input_shape, seed, methods, densities, seeds, out_dir, data_kind, no_max_flow, formats,
                quiet):
    """Masks for methods x densities x seeds: results.csv, summary.md and plots."""
    import shlex

    from ..experiments.compare import compare, write_comparison

    t0 = time.perf_counter()
    df = compare(model_name, split_methods(methods), floats(densities, "--densities"), seeds,
                          input_shape=input_shape, data=data_kind, progress=not quiet, max_flow=not no_max_flow)
    command = "netgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    files = write_comparison(df, out_dir, formats=tuple(f for f in formats.split(",") if f),
                                      command=command)
    click.echo(f"{len(df)} runs in {time.perf_counter() - t0:.1f} s; wrote {len(files)} files to {out_dir}")


@click.command("reproduce")
@click.option("--study", type=click.Choice(STUDIES), required=True,
              help="topology: data-free study of vgg19/resnet20/resnet18; training: digits training study.")
@click.option("--out", "out_dir", default="docs/reproduction", show_default=True, type=click.Path(file_okay=False))
@click.option("--quick", is_flag=True, help="The reduced version (one small model, few densities, one seed).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reproduce_cmd(study, out_dir, quick, quiet):
    """Measure the PHEW paper's claims; write tables, a claims table and figures to OUT."""
    import shlex

    from ..experiments import reproduce

    command = "netgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    t0 = time.perf_counter()
    if study == "topology":
        cfg = reproduce.QUICK_TOPOLOGY if quick else reproduce.TopologyStudy()
        df = reproduce.run_topology(cfg, out_dir, progress=not quiet, command=command)
        claims = reproduce.topology_claims(df)
    else:
        cfg = reproduce.QUICK_TRAINING if quick else reproduce.TrainingStudy()
        df = reproduce.run_training(cfg, out_dir, progress=not quiet, command=command)
        claims = reproduce.training_claims(df, cfg)
    for c in claims:
        click.echo(f"[{c['holds']}] {c['claim']}: {c['measured']}")
    click.echo(f"{len(df)} runs in {(time.perf_counter() - t0) / 60:.1f} min; wrote {out_dir}/{study}.md")


@click.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Sweep directory (default: <name>-sweep next to the config).")
@click.option("--resume", is_flag=True, help="Continue: skip the runs already recorded.")
@click.option("--retry-failed", is_flag=True, help="With --resume, run the failed runs again.")
@click.option("--workers", type=int, default=2, show_default=True, help="Local Dask worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Submit to a running Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of a local cluster.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@fail_cleanly
def sweep_cmd(config, out_dir, resume, retry_failed, workers, scheduler, quiet):
    """Run a resumable grid from a YAML/TOML CONFIG; results in SQLite (see docs/sweeps.md)."""
    from ..experiments.sweep import run_sweep

    res = run_sweep(config, out_dir, resume=resume, retry_failed=retry_failed, workers=workers,
                    scheduler=scheduler, progress=not quiet)
    click.echo(f"{res.total} runs: {res.skipped} already recorded, {res.done} finished, {res.failed} failed "
               f"in {res.seconds:.1f} s; results in {os.path.join(res.directory, 'results.sqlite')}")


@click.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(file_okay=False),
              help="Where to write the tables and figures.")
@click.option("--models", default="resnet20,vgg19", show_default=True, help="Comma-separated zoo models.")
@click.option("--densities", default="0.1,0.02,0.005", show_default=True, help="Comma-separated densities.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo_cmd(out_dir, models, densities, quiet):
    """The main job on built-in defaults: PHEW vs SynFlow-L2 (random for reference).

    For each model and density: build the masks, measure them, print a comparison
    (path-kernel trace, bottleneck, layer widths, wasted weights, time) and write
    results.csv, summary.md and figures under OUT.
    """
    from ..experiments.compare import compare, write_comparison

    dens = floats(densities, "--densities")
    for name in filter(None, models.split(",")):
        _, g = zoo.graph_of(name)
        click.echo(f"\n== {name}: {len(g.layers)} layers, {g.num_units} units, {g.num_weights:,} prunable weights")
        df = compare(name, ["phew", "synflow-l2", "random"], dens, seeds=1, progress=not quiet)
        rows = [{"method": r.method, "density": r.target_density, "kept": r.kept, "seconds": r.seconds,
                 "log10_PK_trace": r.log10_path_kernel_trace, "bottleneck": r.bottleneck_width,
                 "bottleneck_frac": r.bottleneck_fraction,
                 "mean_width": r.mean_width_fraction, "on_path": r.effective_fraction}
                for r in df.itertuples()]
        click.echo(format_table(rows, list(rows[0])))
        for d in dens:
            cell = df[df["target_density"] == d].set_index("method")
            p, s2 = cell.loc["phew"], cell.loc["synflow-l2"]
            click.echo(f"  at {d:g}: PK trace PHEW/SynFlow-L2 = 10^{p.log10_path_kernel_trace - s2.log10_path_kernel_trace:+.2f}; "
                       f"mean layer width PHEW {p.mean_width_fraction:.0%} vs SynFlow-L2 {s2.mean_width_fraction:.0%}; "
                       f"bottleneck {p.bottleneck_width} ({p.bottleneck_fraction:.0%} of dense) vs "
                       f"{s2.bottleneck_width} ({s2.bottleneck_fraction:.0%}) units")
        files = write_comparison(df, os.path.join(out_dir, name), command=f"netgraph demo --models {name}")
        click.echo(f"  wrote {len(files)} files to {os.path.join(out_dir, name)}")
