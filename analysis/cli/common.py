"""What every command shares: the model options, --formats and the --out rule, JSON and table output, parsing.

Errors are handled once, by the group (:mod:`analysis.cli.boundary`).
"""

from __future__ import annotations

import json
import os

import click

from netgraph._json import plain
from netgraph._trace_ops import LAYER_SCALE_MODES
from netgraph.offpath import OFFPATH_POLICIES

from .boundary import FIGURE_FORMATS, SEED, SEED_MAX, check_out_dir, comma_choices, input_shape_value


#: What ``--model`` accepts.
MODEL_ACCEPTS = ("zoo model, torchvision:NAME, timm:NAME (see `netgraph models --source ...`) or a "
                 "user factory 'pkg.module:factory'")
MODEL_HELP = f"A {MODEL_ACCEPTS}."


def model_name_value(ctx, param, value):
    """A click callback: the model name without surrounding whitespace (``' vgg16 '`` is ``vgg16``);
    a name that is empty once stripped is refused."""
    if value is None:
        return None
    name = value.strip()
    if not name:
        raise click.BadParameter(f"{value!r} names no model; give a {MODEL_ACCEPTS}", param=param)
    return name


def num_classes_option(default: str = "the model's own"):
    """``--num-classes``: the number of outputs of the model to build (every command that builds one)."""
    return click.option("--num-classes", type=click.IntRange(min=1), default=None,
                        help=f"Number of outputs (default: {default}).")


def input_shape_option(default: str = "the model's own; required for user models"):
    """``--input-shape C,H,W``: one sample's shape (every command that builds a model)."""
    return click.option("--input-shape", default=None, metavar="C,H,W", callback=input_shape_value,
                        help=f"Input shape of one sample (default: {default}).")


def model_options(fn):
    """``--model``, ``--input-shape``, ``--num-classes`` and ``--seed`` shared by every model command."""
    fn = click.option("--seed", type=SEED, default=0, show_default=True,
                      help=f"Seed for the model's initialisation (and the method's randomness), 0..{SEED_MAX}.")(fn)
    fn = num_classes_option()(fn)
    fn = input_shape_option()(fn)
    fn = click.option("--model", "model_name", default="resnet20", show_default=True, callback=model_name_value,
                      help=MODEL_HELP)(fn)
    return fn


def mask_model_options(fn):
    """``--model``, ``--input-shape``, ``--num-classes``, ``--seed`` of the commands that read a mask file
    (``analyze``, ``report``): each defaults to the file's recorded model."""
    fn = click.option("--seed", type=SEED, default=None,
                      help="Model initialisation seed (default: the file's).")(fn)
    fn = num_classes_option("the file's with its model, else the model's own")(fn)
    fn = input_shape_option("the file's with its model, or with a model built in Python; "
                            "else the model's own")(fn)
    fn = click.option("--model", "model_name", default=None, callback=model_name_value,
                      help="Model to analyse against (default: the one recorded in the file). " + MODEL_HELP)(fn)
    return fn


def offpath_option(fn):
    """``--offpath``: the policy for off-path parameters (gate weights, attention query/key rows)."""
    return click.option("--offpath", type=click.Choice(OFFPATH_POLICIES), default=OFFPATH_POLICIES[0],
                        show_default=True,
                        help="Off-path parameters (gate weights, attention query/key rows): keep them dense, or "
                             "keep their largest |w| at the layers' density. Either way the density counts them.")(fn)


def layer_scale_option(fn):
    """``--layer-scale``: score layer-scale factors as they are, or as 1 (``from_torch(layer_scale=...)``)."""
    return click.option("--layer-scale", type=click.Choice(LAYER_SCALE_MODES), default=LAYER_SCALE_MODES[0],
                        show_default=True,
                        help="Layer-scale factors (ConvNeXt, CaiT; about 1e-6 at init): keep them in the graph, "
                             "or score as if they were 1.")(fn)


def formats_option(fn):
    """``--formats``: the figure formats a command writes, comma-separated (``compare``, ``report``)."""
    return click.option("--formats", default="png,svg", show_default=True, callback=comma_choices(FIGURE_FORMATS),
                        help=f"Figure formats, comma-separated: {', '.join(FIGURE_FORMATS)}.")(fn)


def check_empty_out(out_dir: str, force: bool, what: str) -> None:
    """Refuse a non-empty ``--out`` folder unless ``--force`` (files of an earlier run would mix in).

    Parameters
    ----------
    out_dir : str
        The ``--out`` folder (new, empty, or not empty with ``force``).
    force : bool
        The command's ``--force``.
    what : str
        What writes there, for the message: ``"a comparison"``, ``"a report"``.
    """
    check_out_dir(out_dir)
    entries = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) and not force else []
    if entries:
        raise click.BadParameter(
            f"{out_dir!r} is not empty ({len(entries)} {'entry' if len(entries) == 1 else 'entries'}, e.g. "
            f"{entries[0]}); choose a new folder, or pass --force to replace the files {what} writes there",
            param_hint="'--out'")


def echo_json(obj):
    """Print ``obj`` as JSON (non-finite numbers as null)."""
    click.echo(json.dumps(plain(obj), indent=2))


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


def parse_options(method, pairs):
    from netgraph.sparsifiers import get
    from netgraph.sparsifiers.registry import parse_option_value

    m = get(method)
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"options look like key=value, got {pair!r}")
        key = key.strip().replace("-", "_")
        if key in opts:  # (the last one silently won)
            raise click.UsageError(f"option {key!r} is given twice (-o {pair!r} after an earlier -o {key}=...); "
                                   "give each option once")
        opts[key] = parse_option_value(m, key, value)
    return opts


#: ``--data-samples`` accepted with ``--data digits``: 10 x the smallest class of the training split.
DIGITS_MAX_SAMPLES = 1200


def prune_data(kind, model, graph, samples, seed, echo):
    """Batches for data-dependent methods: 'random' Gaussian inputs or scikit-learn digits."""
    from netgraph.data import prune_batch

    if kind == "random":
        echo(f"data: {samples} standard-normal random inputs with random labels (no real data)")
    else:
        if samples > DIGITS_MAX_SAMPLES:
            raise click.BadParameter(f"{samples} is more than the digits training set offers; "
                                     f"use at most {DIGITS_MAX_SAMPLES} (N samples take N // 10 images of each digit)",
                                     param_hint="'--data-samples'")
        echo(f"data: scikit-learn digits, {max(1, samples // 10)} training images per class")
    return prune_batch(kind, graph, seed, samples, model=model)

