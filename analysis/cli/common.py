"""What every command shares: clean errors, the model options, JSON and table output, parsing."""

from __future__ import annotations

import functools
import json

import click

from netgraph._json import plain
from netgraph.errors import NetgraphError

def fail_cleanly(fn):
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
        opts[key.strip().replace("-", "_")] = parse_option_value(m, key.strip().replace("-", "_"), value)
    return opts


def prune_data(kind, graph, samples, seed, echo):
    """Batches for data-dependent methods: 'random' Gaussian inputs or scikit-learn digits."""
    from netgraph.data import prune_batch

    if kind == "random":
        echo(f"data: {samples} standard-normal random inputs with random labels (no real data)")
    else:
        echo(f"data: scikit-learn digits, {max(1, samples // 10)} training images per class")
    return prune_batch(kind, graph, seed, samples)


def split_methods(text: str) -> list:
    """``"phew:bias=uniform,kernel_conserved=true,synflow"`` -> two method specs."""
    out = []
    for tok in filter(None, (t.strip() for t in text.split(","))):
        if "=" in tok and ":" not in tok and out:
            out[-1] += "," + tok
        else:
            out.append(tok)
    return out


def floats(text: str, what: str) -> list:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.UsageError(f"{what} must be comma-separated numbers, got {text!r}") from None
