"""Commands about one model and one mask: models, graph, methods, metrics, prune, analyze."""

from __future__ import annotations

import time

import click

from netgraph import flows, zoo
from netgraph._numba import compile_notice
from netgraph.data import PRUNE_DATA
from netgraph.masks import prunable_parameter_names

from ..experiments.maskfile import write_masks
from .boundary import (SEED, check_out_file, density_value, graph_checked, mask_and_graph, mask_format, method_name,
                       one_line)
from .common import (echo_json, format_table, layer_scale_option, mask_model_options, model_options, offpath_option,
                     parse_options, prune_data)


def describe_graph(graph) -> dict:
    """A JSON-ready description of a graph: groups, layers, counts and dense flows."""
    return {
        "model": graph.model_spec.get("name"),
        "input_shape": list(graph.input_shape),
        "prunable_weights": graph.num_weights,
        "units": graph.num_units,
        "edges": graph.num_edges,
        "inputs": graph.input_group.size,
        "outputs": graph.output_group.size,
        "layers": [
            {
                "name": l.name,
                "kind": l.kind,
                "param": l.param,
                "shape": list(l.param_shape),
                "rows": None if l.rows is None else list(l.rows),
                "units": l.n_dst,
                "in_units": l.n_src,
                "groups": l.groups,
                "weights": l.numel,
                "src_group": l.src,
                "dst_group": l.dst,
            }
            for l in graph.layers
        ],
        "offpath_params": [dict(p, shape=list(p["shape"])) for p in graph.offpath],
        "shortcuts": [
            {"src_group": s.src, "dst_group": s.dst, "units": s.size, "kind": s.kind} for s in graph.shortcuts
        ],
        "log10_synflow_R": flows.log10_synflow_R(graph),
        "log10_path_kernel_trace": flows.log10_path_kernel_trace(graph),
    }


@click.command("models")
@click.option("--source", type=click.Choice(("zoo", "torchvision", "timm")), default="zoo", show_default=True,
              help="Which models: the zoo (with parameter counts), or the names torchvision / timm offer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_cmd(source, as_json):
    """List the model zoo with parameter counts, or the torchvision / timm model names."""
    if source != "zoo":
        names = [f"{source}:{n}" for n in zoo.names(source)]
        if as_json:
            echo_json(names)
        else:
            click.echo("\n".join(names))
        return
    rows = []
    for name in zoo.names():
        e = zoo.entry(name)
        m = e.factory()
        params = dict(m.named_parameters())
        prunable = sum(params[n].numel() for n in prunable_parameter_names(m))
        rows.append({"name": name, "input_shape": list(e.input_shape), "classes": e.num_classes,
                     "prunable_weights": prunable, "parameters": sum(p.numel() for p in m.parameters()),
                     "description": e.description})
    if as_json:
        echo_json(rows)
    else:
        click.echo(format_table([dict(r, input_shape="x".join(map(str, r["input_shape"]))) for r in rows],
                                ["name", "input_shape", "classes", "prunable_weights", "parameters",
                                       "description"]))


@click.command("graph")
@model_options
@layer_scale_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def graph_cmd(model_name, input_shape, num_classes, seed, layer_scale, as_json):
    """Describe a model's unit graph: layers, units, edges, dense flows."""
    t0 = time.perf_counter()
    _, g = graph_checked(model_name, input_shape, seed, num_classes, layer_scale)
    summary = describe_graph(g)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{model_name}: input {'x'.join(map(str, g.input_shape))}, {len(g.layers)} layers "
               f"({sum(l.kind == 'conv' for l in g.layers)} conv, {sum(l.kind == 'linear' for l in g.layers)} linear), "
               f"{len(g.shortcuts)} identity shortcuts")
    click.echo(format_table(summary["layers"], ["name", "kind", "in_units", "units", "weights", "src_group",
                                                "dst_group"]))
    click.echo(f"units {summary['units']}  edges {summary['edges']}  prunable weights {summary['prunable_weights']}")
    click.echo(f"log10 SynFlow R {summary['log10_synflow_R']:.4f}  "
               f"log10 path-kernel trace {summary['log10_path_kernel_trace']:.4f}  ({summary['seconds']} s)")


@click.command("methods")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def methods_cmd(as_json):
    """List the sparsification methods and their options."""
    from netgraph.sparsifiers import methods

    rows = [{"method": m.name, "options": ", ".join(f"{k}={v!r}" for k, v in m.options.items()) or "-",
             "data": "yes" if m.needs_data else "no", "description": m.description}
            for m in methods().values()]
    if as_json:
        echo_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['method']}  (needs data: {r['data']})\n  options: {r['options']}\n  {r['description']}")


@click.command("prune")
@model_options
@click.option("--method", required=True, callback=method_name, help="Sparsification method (see `netgraph methods`).")
@click.option("--density", callback=density_value, required=True, help="Kept fraction of weights, in (0, 1].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the mask file here: NAME.pt or NAME.pth (torch), NAME.safetensors.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Method option, e.g. -o bias=uniform -o kernel_conserved=true (repeatable).")
@click.option("--data", "data_kind", type=click.Choice(PRUNE_DATA), default=None,
              help="Data for snip/grasp: Gaussian random inputs, or scikit-learn digits.")
@click.option("--data-samples", type=click.IntRange(min=1), default=100, show_default=True, help="Samples in the pruning batch.")
@click.option("--init-seed", type=SEED, default=None, help="Seed of the model's initialisation (default: --seed).")
@offpath_option
@layer_scale_option
@click.option("--quiet", is_flag=True, help="No progress bar; print only the summary line.")
@click.option("--json", "as_json", is_flag=True, help="Print the mask report as JSON.")
def prune_cmd(model_name, input_shape, num_classes, seed, method, density, out, options, data_kind, data_samples, init_seed,
              offpath, layer_scale, quiet, as_json):
    """Build a sparse mask and report it (kept weights per layer, density, time)."""
    from netgraph.sparsifiers import get, sparsify

    m = get(method)
    opts = parse_options(method, options)
    check_out_file(out)
    if out is not None:
        mask_format(out)
    echo = (lambda *a: None) if (quiet or as_json) else click.echo
    model, g = graph_checked(model_name, input_shape, seed if init_seed is None else init_seed, num_classes,
                             layer_scale)
    data = None
    if m.needs_data:
        if data_kind is None:
            raise click.UsageError(f"method {method!r} is data-dependent: add --data random or --data digits")
        data = prune_data(data_kind, model, g, data_samples, seed, echo)
    t0 = time.perf_counter()
    ms = sparsify(model, method, density, seed, graph=g, data=data, progress=not (quiet or as_json), offpath=offpath,
                  **opts)
    seconds = time.perf_counter() - t0
    if out:
        try:
            write_masks(ms, out)
        except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
            raise click.ClickException(f"cannot write {out}: {one_line(exc)}") from None
    report = {"method": method, "options": ms.meta["options"], "density": density,
              "achieved_density": ms.achieved_density, "kept": ms.num_kept, "target": ms.meta["target"],
              "total": ms.num_total, "offpath": ms.meta.get("offpath"), "seconds": round(seconds, 3), "out": out,
              "layers": ms.report(),
              "details": ms.meta.get("details", {})}
    if as_json:
        echo_json(report)
        return
    if not quiet:
        rows = [{"param": r["param"], "kept": r["kept"], "total": r["total"], "density": r["density"]}
                for r in report["layers"]]
        click.echo(format_table(rows, ["param", "kept", "total", "density"]))
    over = ms.num_kept - ms.meta["target"]
    click.echo(f"{method}: kept {ms.num_kept} of {ms.num_total} weights, density {ms.achieved_density:.6g} "
               f"(asked {density:g}{f', {over:+d} weights' if over else ', exact'}) in {seconds:.2f} s"
               + (f"; wrote {out}" if out else ""))
    note = report["details"].get("note")
    if note:  # what the method did other than asked (per-layer densities that set the count, say)
        click.echo(f"note: {note}")


@click.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--markdown", is_flag=True, help="Print the Markdown table of docs/metrics.md.")
def metrics_cmd(as_json, markdown):
    """List the metrics of a mask (the metric table): key, unit, direction, description."""
    from ..table import METRICS, markdown as table_markdown

    if as_json and markdown:
        raise click.UsageError("--json and --markdown exclude each other: give one (JSON rows, or the Markdown table)")
    if markdown:
        click.echo(table_markdown(), nl=False)
        return
    rows = [{"key": m.key, "unit": m.unit,
             "better": {True: "higher", False: "lower", None: "-"}[m.higher_is_better],
             "description": m.full_description} for m in METRICS]
    if as_json:
        echo_json(rows)
    else:
        click.echo(format_table(rows, ["key", "unit", "better", "description"]))


@click.command("analyze")
@click.argument("mask_file", type=click.Path(dir_okay=False))
@mask_model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def analyze_cmd(mask_file, model_name, input_shape, num_classes, seed, as_json):
    """Measure a saved mask: widths, bottleneck, connectivity, path diversity.

    The model is rebuilt from the file's metadata. A mask made in Python for a model built
    there, such as torchvision.models.resnet18(num_classes=10), names only its class: pass
    --model torchvision:resnet18 --num-classes 10 (and --input-shape if the mask was not
    made at the file's recorded shape).
    """
    from ..summary import measure
    from ..widths import layer_table

    ms, g, mg = mask_and_graph(mask_file, model_name, input_shape, seed, num_classes)
    name = g.model_spec.get("name")
    with compile_notice():  # (a first compile of numba kernels says so: once per install)
        rec = measure(g, mg)
    layers = layer_table(g, mg)
    if as_json:
        echo_json({"file": mask_file, "model": name, "method": ms.meta.get("method"), "summary": rec,
                    "layers": layers})
        return
    click.echo(f"{mask_file}: {ms.meta.get('method', '?')} mask of {name}, "
               f"{rec['kept']} of {rec['total']} weights (achieved density {rec['achieved_density']:.6g})")
    click.echo(format_table(layers, ["layer", "kind", "kept", "density", "effective", "active_units", "units"]))
    click.echo(format_table([{"metric": k, "value": v} for k, v in rec.items()], ["metric", "value"]))
