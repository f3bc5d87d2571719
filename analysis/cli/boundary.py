"""The CLI boundary: one-line errors and exit statuses, ``--debug``, and checks of option values.

Every failure leaves the command as one line on standard error:

* status 2, a usage error: a bad option value (click's own checks, the checks below, and
  every :class:`netgraph.errors.NetgraphError` the library raises for bad input);
* status 1, a runtime failure: a file that cannot be written, a user model factory that
  raises, a sweep with failed runs, an unexpected exception (reported with its type and
  a hint to rerun with ``--debug``);
* status 130 after Ctrl-C;
* status 1, silently, when the reader of standard output goes away (``| head``; click's handling).

``netgraph --debug ...`` or the environment variable ``NETGRAPH_DEBUG=1`` lets exceptions
through with their traceback, for bug reports.
"""

from __future__ import annotations

import os
import sys

import click

from netgraph._validate import MAX_SEED as SEED_MAX
from netgraph.errors import NetgraphError, UnsupportedModelError

from ..plots import FORMATS as FIGURE_FORMATS  # noqa: F401 (the choices of --formats)

#: Seeds the command line accepts (those numpy's and torch's generators both take): the one
#: type of every ``--seed``-like option.
SEED = click.IntRange(0, SEED_MAX)
#: Grids of more runs than this (``sweep``, ``compare``) ask for confirmation (or ``--yes``).
CONFIRM_ABOVE = 10_000
DEBUG_ENV = "NETGRAPH_DEBUG"


def one_line(text) -> str:
    """``text`` on one line: its non-empty lines joined by spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def debug_enabled(ctx: click.Context | None = None) -> bool:
    """True with ``--debug`` on the group or ``NETGRAPH_DEBUG`` set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug"))


#: How many blockers of an unsupported model the one-line error names (the rest are counted).
SHOWN_BLOCKERS = 5


def error_text(exc: NetgraphError) -> str:
    """The one-line text of a library error; a long list of blockers is cut to its first few.

    A transformer can have hundreds of unsupported operations; the line names the first
    :data:`SHOWN_BLOCKERS`, counts the rest and says where the whole list is.
    """
    blockers = getattr(exc, "blockers", None) if isinstance(exc, UnsupportedModelError) else None
    if not blockers or len(blockers) <= SHOWN_BLOCKERS:
        return one_line(exc)
    head = one_line(exc).split(": [1] ", 1)[0]
    shown = "; ".join(f"[{i + 1}] {one_line(s)}" for i, s in enumerate(blockers[:SHOWN_BLOCKERS]))
    return (f"{head}: {shown}; and {len(blockers) - SHOWN_BLOCKERS} more (all of them: "
            f"`netgraph coverage --sources MODEL --out DIR`, or the exception's `blockers` in Python)")


def describe(exc: BaseException) -> str:
    """``"Type: message"`` of an exception, on one line."""
    msg = one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class NetgraphGroup(click.Group):
    """A click group whose every error is one line with a meaningful exit status."""

    def invoke(self, ctx: click.Context):
        """Run the command; translate exceptions into one-line click errors."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            if debug_enabled(ctx):
                raise
            raise Interrupted("interrupted") from None
        except NetgraphError as exc:
            if debug_enabled(ctx):
                raise
            raise click.UsageError(error_text(exc)) from None
        except BrokenPipeError:  # the reader left (`... | head`): click's main exits quietly with status 1
            raise
        except OSError as exc:
            if debug_enabled(ctx):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or describe(exc)}{where}") from None
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            raise click.ClickException(
                f"{describe(exc)} (unexpected; rerun with --debug for the traceback)") from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's ``main``, printing a :class:`click.ClickException` as one ``Error:`` line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `netgraph` alone: the whole help, not flattened into one line
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class Interrupted(click.ClickException):
    """Ctrl-C: exit status 130 (128 + SIGINT), as shells report it."""

    exit_code = 130


def make_cwd_importable() -> None:
    """Let ``--model pkg.module:factory`` import from the current directory, as ``python -m`` does.

    The directory is appended to ``sys.path`` (installed packages keep precedence).
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


# -- option values ---------------------------------------------------------------------


def _first_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _check_creatable(path: str, option: str, shown: str | None = None) -> None:
    """Refuse ``path`` (a folder to be created or written) when its nearest existing ancestor is not a writable folder."""
    shown = shown or path
    base = _first_existing(path)
    if not os.path.isdir(base):
        raise click.BadParameter(f"cannot write {shown!r}: {base} is a file, not a folder", param_hint=f"'{option}'")
    if not os.access(base, os.W_OK | os.X_OK) or _probe_fails(base):
        raise click.BadParameter(f"cannot write {shown!r}: {base} is not writable", param_hint=f"'{option}'")


def _probe_fails(folder: str) -> bool:
    """True when a file cannot be created in ``folder`` (``os.access`` says yes to root, and to /proc)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return False
    except OSError:
        return True


def check_out_file(path: str | None, option: str = "--out") -> str | None:
    """Refuse (usage error) an output file that cannot be written, before any work starts."""
    if path is None:
        return None
    if os.path.isdir(path):
        raise click.BadParameter(f"{path!r} is a folder; give a file name such as masks.pt",
                                 param_hint=f"'{option}'")
    _check_creatable(os.path.dirname(os.path.abspath(path)), option, shown=path)
    if os.path.exists(path):
        try:
            with open(path, "ab"):  # appends nothing: the file stays as it is
                pass
        except OSError as exc:
            why = "the file is read-only" if isinstance(exc, PermissionError) else exc.strerror or describe(exc)
            raise click.BadParameter(f"cannot write {path!r}: {why}", param_hint=f"'{option}'") from None
    return path


def mask_format(path: str, option: str = "--out") -> str:
    """The mask file format ``path``'s suffix names (:func:`analysis.experiments.maskfile.check_mask_path`);
    a usage error for any other suffix."""
    from ..experiments.maskfile import check_mask_path

    try:
        return check_mask_path(path)
    except NetgraphError as exc:
        raise click.BadParameter(one_line(exc), param_hint=f"'{option}'") from None


def check_out_dir(path: str | None, option: str = "--out") -> str | None:
    """Refuse (usage error) an output folder that is a file or cannot be created."""
    if path is None:
        return None
    if os.path.exists(path) and not os.path.isdir(path):
        raise click.BadParameter(f"{path!r} is a file; give a folder", param_hint=f"'{option}'")
    _check_creatable(path, option)
    return path


def confirm_runs(total: int, detail: str = "") -> None:
    """Ask whether to start ``total`` runs (counted before any is built). No: not started
    (status 1). No one to answer (no input left): a usage error (status 2) saying to pass
    ``--yes``."""
    question = f"The grid has {total:,} runs{f' ({detail})' if detail else ''}. Start it?"
    try:
        ok = click.confirm(question, default=False, err=True)
    except click.Abort:  # end of input: a script or a pipe
        raise click.UsageError(f"not started: {total:,} runs need a confirmation and there is no input to "
                               "answer it; pass --yes to start without asking") from None
    if not ok:
        raise click.ClickException(f"not started: you answered no to {total:,} runs (--yes starts without asking)")


def comma_choices(choices):
    """A click callback: a comma-separated list of values from ``choices`` (at least one; no value: None)."""

    def callback(ctx, param, value):
        if value is None:
            return None
        items = [t.strip().lower() for t in str(value).split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            got = ", ".join(map(repr, bad)) if bad else repr(value)
            raise click.BadParameter(f"{got} is not accepted; choose from {', '.join(choices)} (comma-separated)")
        return tuple(dict.fromkeys(items))

    return callback


def load_model_checked(spec, input_shape=None, seed: int = 0, num_classes=None):
    """:func:`netgraph.zoo.load_model`, with a user factory's failure and tied weights as one line.

    Returns ``(model, shape, model_spec)``. A factory (or its module) that raises is a
    runtime error (status 1); a model whose modules share one weight tensor is refused
    (status 2): the unit graph needs one weight per layer.
    """
    from netgraph import zoo

    try:
        model, shape, mspec = zoo.load_model(spec, input_shape, seed, num_classes)
    except NetgraphError:
        raise
    except Exception as exc:  # the user's code failed
        if debug_enabled(click.get_current_context(silent=True)):
            raise
        raise click.ClickException(f"building model {spec!r} failed: {describe(exc)}") from None
    check_untied(model, spec)
    return model, shape, mspec


def check_untied(model, spec: str) -> None:
    """Refuse a model whose modules share one parameter (tied weights)."""
    from netgraph.errors import UnsupportedModelError

    owners: dict = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    tied = [names for names in owners.values() if len(names) > 1]
    if tied:
        raise UnsupportedModelError(
            f"model {spec!r} ties weights ({' = '.join(tied[0])}): the unit graph needs one weight tensor per "
            "layer; untie them (e.g. copy the tensor) to analyse the model")


def graph_checked(spec, input_shape=None, seed: int = 0, num_classes=None, layer_scale: str = "as_is"):
    """``(model, graph)`` like :func:`netgraph.zoo.graph_of`, through :func:`load_model_checked`
    (``layer_scale`` as in :func:`netgraph.from_torch`)."""
    from netgraph.trace import from_torch

    model, shape, mspec = load_model_checked(spec, input_shape, seed, num_classes)
    return model, from_torch(model, shape, model_spec=mspec, layer_scale=layer_scale)


def mask_and_graph(mask_file, model=None, input_shape=None, seed=None, num_classes=None):
    """``(masks, graph, masked graph)`` of a mask file and the model it was made for (``analyze``,
    ``report``): the model is the file's unless given (:func:`analysis.experiments.maskfile.rebuild_args`),
    built through :func:`graph_checked`; a mask that does not fit it is one line naming both models."""
    from netgraph.errors import MaskMismatchError
    from netgraph.masked import as_masked

    from ..experiments.maskfile import read_masks, rebuild_args

    ms = read_masks(mask_file)
    args = rebuild_args(ms, mask_file, model, input_shape, seed, num_classes)
    _, g = graph_checked(**args)
    try:
        return ms, g, as_masked(g, ms)
    except MaskMismatchError as exc:
        made = (ms.meta.get("model") or {}).get("name")
        hint = "" if num_classes is not None or input_shape is not None else (
            " (made with another number of outputs or input shape? pass --num-classes, --input-shape)")
        raise MaskMismatchError(f"{mask_file} (made for {made!r}) does not fit model {args['spec']!r}: "
                                f"{one_line(exc)}{hint}") from None


def _bad(param, exc) -> click.BadParameter:
    return click.BadParameter(one_line(exc), param=param)


def density_value(ctx, param, value):
    """A click callback: one density in (0, 1], checked by :func:`netgraph._validate.check_density`."""
    from netgraph._validate import check_density

    if value is None:
        return None
    try:
        return check_density(float(value))
    except ValueError as exc:  # NetgraphError is a ValueError, and so is float("abc")
        if not isinstance(exc, NetgraphError):
            exc = f"{value!r} is not a number; a density is the kept fraction of weights in (0, 1], e.g. 0.05"
        raise _bad(param, exc) from None


def density_list(ctx, param, value):
    """A click callback: comma-separated densities, each in (0, 1], at least one."""
    items = [t.strip() for t in str(value).split(",") if t.strip()]
    if not items:
        raise click.BadParameter(f"{value!r} holds no density; give e.g. 0.1,0.05", param=param)
    from ..experiments.grid import check_distinct

    try:
        return check_distinct("densities", [density_value(ctx, param, t) for t in items])
    except NetgraphError as exc:  # a density listed twice: the grid's one rule
        raise _bad(param, exc) from None


def method_list(ctx, param, value):
    """A click callback: comma-separated method specs (``phew,phew:bias=uniform,synflow``), validated."""
    from ..experiments.run import parse_method

    if isinstance(value, list):
        return value
    specs = split_methods(str(value))
    if not specs:
        raise click.BadParameter(f"{value!r} names no method (the method list is empty); "
                                 "give e.g. phew,synflow (see `netgraph methods`)", param=param)
    from ..experiments.grid import check_distinct_methods

    try:
        check_distinct_methods([parse_method(spec) for spec in specs])
    except NetgraphError as exc:
        raise _bad(param, exc) from None
    return specs


def method_name(ctx, param, value):
    """A click callback: one method name of the registry (see ``netgraph methods``)."""
    from netgraph.sparsifiers import get

    try:
        get(value)
    except NetgraphError as exc:
        raise _bad(param, exc) from None
    return value


def input_shape_value(ctx, param, value):
    """A click callback: ``C,H,W`` (or ``CxHxW``) of positive integers, kept as text for the library."""
    import re

    if value is None:
        return None
    if not re.fullmatch(r"\s*\d+\s*([,x]\s*\d+\s*)*", str(value)) or any(int(p) <= 0 for p in re.findall(r"\d+", value)):
        raise click.BadParameter(f"{value!r} is not a shape; give one sample's shape as positive integers C,H,W "
                                 "(e.g. 3,32,32, or 64 for flat inputs)", param=param)
    return value


def split_methods(text: str) -> list:
    """``"phew:bias=uniform,kernel_conserved=true,synflow"`` -> two method specs."""
    out = []
    for tok in filter(None, (t.strip() for t in text.split(","))):
        if "=" in tok and ":" not in tok and out:
            out[-1] += "," + tok
        else:
            out.append(tok)
    return out
