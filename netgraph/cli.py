"""The ``netgraph`` command line: thin wrappers that parse, call the API and print."""

from __future__ import annotations

import functools
import json
import os
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


def _jsonable(obj):
    """Plain JSON: numpy scalars to Python, non-finite floats to null."""
    import math

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _echo_json(obj):
    click.echo(json.dumps(_jsonable(obj), indent=2))


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


def _parse_options(method, pairs):
    from .sparsifiers import get
    from .sparsifiers.registry import parse_option_value

    m = get(method)
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"options look like key=value, got {pair!r}")
        opts[key.strip().replace("-", "_")] = parse_option_value(m, key.strip().replace("-", "_"), value)
    return opts


def prune_data(kind, graph, samples, seed, echo):
    """Batches for data-dependent methods: 'random' Gaussian inputs or scikit-learn digits."""
    from .data import prune_batch

    if kind == "random":
        echo(f"data: {samples} standard-normal random inputs with random labels (no real data)")
    else:
        echo(f"data: scikit-learn digits, {max(1, samples // 10)} training images per class")
    return prune_batch(kind, graph, seed, samples)


@main.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def methods_cmd(as_json):
    """List the sparsification methods and their options."""
    from .sparsifiers import methods

    rows = [{"method": m.name, "options": ", ".join(f"{k}={v!r}" for k, v in m.options.items()) or "-",
             "data": "yes" if m.needs_data else "no", "description": m.description}
            for m in methods().values()]
    if as_json:
        _echo_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['method']}  (needs data: {r['data']})\n  options: {r['options']}\n  {r['description']}")


@main.command("prune")
@model_options
@click.option("--method", required=True, help="Sparsification method (see `netgraph methods`).")
@click.option("--density", type=float, required=True, help="Kept fraction of weights, in (0, 1].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the mask file here.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Method option, e.g. -o bias=uniform -o kernel_conserved=true (repeatable).")
@click.option("--data", "data_kind", type=click.Choice(["random", "digits"]), default=None,
              help="Data for snip/grasp: Gaussian random inputs, or scikit-learn digits.")
@click.option("--data-samples", type=int, default=100, show_default=True, help="Samples in the pruning batch.")
@click.option("--init-seed", type=int, default=None, help="Seed of the model's initialisation (default: --seed).")
@click.option("--quiet", is_flag=True, help="No progress bar; print only the summary line.")
@click.option("--json", "as_json", is_flag=True, help="Print the mask report as JSON.")
@_fail_cleanly
def prune_cmd(model_name, input_shape, seed, method, density, out, options, data_kind, data_samples, init_seed,
              quiet, as_json):
    """Build a sparse mask and report it (kept weights per layer, density, time)."""
    from .sparsifiers import get, sparsify

    m = get(method)
    opts = _parse_options(method, options)
    echo = (lambda *a: None) if (quiet or as_json) else click.echo
    model, g = zoo.graph_of(model_name, input_shape, seed if init_seed is None else init_seed)
    data = None
    if m.needs_data:
        if data_kind is None:
            raise click.UsageError(f"method {method!r} is data-dependent: add --data random or --data digits")
        data = prune_data(data_kind, g, data_samples, seed, echo)
    t0 = time.perf_counter()
    ms = sparsify(model, method, density, seed, graph=g, data=data, progress=not (quiet or as_json), **opts)
    seconds = time.perf_counter() - t0
    if out:
        ms.save(out)
    report = {"method": method, "options": ms.meta["options"], "density": density,
              "achieved_density": ms.density, "kept": ms.num_kept, "target": ms.meta["target"],
              "total": ms.num_total, "seconds": round(seconds, 3), "out": out, "layers": ms.report(),
              "details": ms.meta.get("details", {})}
    if as_json:
        _echo_json(report)
        return
    if not quiet:
        rows = [{"param": r["param"], "kept": r["kept"], "total": r["total"], "density": r["density"]}
                for r in report["layers"]]
        click.echo(format_table(rows, ["param", "kept", "total", "density"]))
    over = ms.num_kept - ms.meta["target"]
    click.echo(f"{method}: kept {ms.num_kept} of {ms.num_total} weights, density {ms.density:.6g} "
               f"(asked {density:g}{f', {over:+d} weights' if over else ', exact'}) in {seconds:.2f} s"
               + (f"; wrote {out}" if out else ""))


def split_methods(text: str) -> list:
    """``"phew:bias=uniform,kernel_conserved=true,synflow"`` -> two method specs."""
    out = []
    for tok in filter(None, (t.strip() for t in text.split(","))):
        if "=" in tok and ":" not in tok and out:
            out[-1] += "," + tok
        else:
            out.append(tok)
    return out


def _floats(text: str, what: str) -> list:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.UsageError(f"{what} must be comma-separated numbers, got {text!r}") from None


@main.command("analyze")
@click.argument("mask_file", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", default=None, help="Model to analyse against (default: the one in the file).")
@click.option("--input-shape", default=None, metavar="C,H,W", help="Input shape (user models).")
@click.option("--seed", type=int, default=None, help="Model initialisation seed (default: the file's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_fail_cleanly
def analyze_cmd(mask_file, model_name, input_shape, seed, as_json):
    """Measure a saved mask: widths, bottleneck, connectivity, path diversity."""
    import analysis

    from .errors import MaskMismatchError
    from .masks import MaskSet

    ms = MaskSet.load(mask_file)
    spec = ms.meta.get("model") if isinstance(ms.meta.get("model"), dict) else {}
    name = model_name or spec.get("name")
    if not name:
        raise click.UsageError(f"{mask_file} does not say which model it was made for; pass --model")
    shape = input_shape or (None if model_name else spec.get("input_shape"))
    init = seed if seed is not None else spec.get("seed", 0)  # the model spec's seed is its init seed
    _, g = zoo.graph_of(name, shape, int(init))
    try:
        lm = g.layer_masks(ms)
    except MaskMismatchError as exc:
        made = spec.get("name")
        raise MaskMismatchError(f"{mask_file} (made for {made!r}) does not fit model {name!r}: {exc}") from None
    rec = analysis.measure(g, lm)
    layers = analysis.layer_table(g, lm)
    if as_json:
        _echo_json({"file": mask_file, "model": name, "method": ms.meta.get("method"), "summary": rec,
                    "layers": layers})
        return
    click.echo(f"{mask_file}: {ms.meta.get('method', '?')} mask of {name}, "
               f"{rec['kept']} of {rec['total']} weights (density {rec['density']:.6g})")
    click.echo(format_table(layers, ["layer", "kind", "kept", "density", "effective", "active_units", "units"]))
    click.echo(format_table([{"metric": k, "value": v} for k, v in rec.items()], ["metric", "value"]))


@main.command("compare")
@model_options
@click.option("--methods", default="phew,synflow,synflow-l2,random", show_default=True,
              help="Comma-separated methods; options as phew:bias=uniform,kernel_conserved=true.")
@click.option("--densities", default="0.1,0.05,0.02,0.01", show_default=True, help="Comma-separated densities.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Number of seeds (0..N-1).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--data", "data_kind", type=click.Choice(["random", "digits"]), default=None,
              help="Data for snip/grasp.")
@click.option("--no-max-flow", is_flag=True, help="Skip the max-flow metrics (min vertex cut, disjoint paths).")
@click.option("--formats", default="png,svg", show_default=True, help="Figure formats.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_fail_cleanly
def compare_cmd(model_name, input_shape, seed, methods, densities, seeds, out_dir, data_kind, no_max_flow, formats,
                quiet):
    """Masks for methods x densities x seeds: results.csv, summary.md and plots."""
    import shlex

    import analysis

    t0 = time.perf_counter()
    df = analysis.compare(model_name, split_methods(methods), _floats(densities, "--densities"), seeds,
                          input_shape=input_shape, data=data_kind, progress=not quiet, max_flow=not no_max_flow)
    command = "netgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    files = analysis.write_comparison(df, out_dir, formats=tuple(f for f in formats.split(",") if f),
                                      command=command)
    click.echo(f"{len(df)} runs in {time.perf_counter() - t0:.1f} s; wrote {len(files)} files to {out_dir}")


@main.command("reproduce")
@click.option("--study", type=click.Choice(["topology", "training"]), required=True,
              help="topology: data-free study of vgg19/resnet20/resnet18; training: digits training study.")
@click.option("--out", "out_dir", default="docs/reproduction", show_default=True, type=click.Path(file_okay=False))
@click.option("--quick", is_flag=True, help="The reduced version (one small model, few densities, one seed).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reproduce_cmd(study, out_dir, quick, quiet):
    """Measure the PHEW paper's claims; write tables, a claims table and figures to OUT."""
    import shlex

    from analysis import reproduce

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


@main.command("sweep")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Sweep directory (default: <name>-sweep next to the config).")
@click.option("--resume", is_flag=True, help="Continue: skip the runs already recorded.")
@click.option("--retry-failed", is_flag=True, help="With --resume, run the failed runs again.")
@click.option("--workers", type=int, default=2, show_default=True, help="Local Dask worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Submit to a running Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of a local cluster.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_fail_cleanly
def sweep_cmd(config, out_dir, resume, retry_failed, workers, scheduler, quiet):
    """Run a resumable grid from a YAML/TOML CONFIG; results in SQLite (see docs/sweeps.md)."""
    from analysis.sweep import run_sweep

    res = run_sweep(config, out_dir, resume=resume, retry_failed=retry_failed, workers=workers,
                    scheduler=scheduler, progress=not quiet)
    click.echo(f"{res.total} runs: {res.skipped} already recorded, {res.done} finished, {res.failed} failed "
               f"in {res.seconds:.1f} s; results in {os.path.join(res.directory, 'results.sqlite')}")


@main.command("demo")
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
    import os

    import analysis

    dens = _floats(densities, "--densities")
    for name in filter(None, models.split(",")):
        _, g = zoo.graph_of(name)
        click.echo(f"\n== {name}: {len(g.layers)} layers, {g.num_units} units, {g.num_weights:,} prunable weights")
        df = analysis.compare(name, ["phew", "synflow-l2", "random"], dens, seeds=1, progress=not quiet)
        rows = [{"method": r.method, "density": r.target_density, "kept": r.kept, "seconds": r.seconds,
                 "log10_PK_trace": r.log10_path_kernel_trace, "bottleneck": r.bottleneck_width,
                 "mean_width": r.mean_width_fraction, "on_path": r.effective_fraction}
                for r in df.itertuples()]
        click.echo(format_table(rows, list(rows[0])))
        for d in dens:
            cell = df[df["target_density"] == d].set_index("method")
            p, s2 = cell.loc["phew"], cell.loc["synflow-l2"]
            click.echo(f"  at {d:g}: PK trace PHEW/SynFlow-L2 = 10^{p.log10_path_kernel_trace - s2.log10_path_kernel_trace:+.2f}; "
                       f"mean layer width PHEW {p.mean_width_fraction:.0%} vs SynFlow-L2 {s2.mean_width_fraction:.0%}; "
                       f"bottleneck {p.bottleneck_width} vs {s2.bottleneck_width} units")
        files = analysis.write_comparison(df, os.path.join(out_dir, name), command=f"netgraph demo --models {name}")
        click.echo(f"  wrote {len(files)} files to {os.path.join(out_dir, name)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
