"""One run: (model spec, method, options, density, seed) -> (masks, one row).

Every experiment (comparison grids, sweeps, reproduction studies) is a loop over
:func:`run_one`; none has its own loop body. A row holds the run's identity, every metric of
the metric table (:data:`analysis.table.METRICS`), the per-layer list columns, and the
timings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from netgraph import zoo
from netgraph.errors import InvalidInputError
from netgraph.masked import as_masked
from netgraph.sparsifiers import get, sparsify
from netgraph.sparsifiers.registry import check_options, parse_option_value

from ..table import measure_masked
from ..widths import layer_table

LIST_COLUMNS = ("layer_names", "layer_units", "layer_widths", "layer_kept")
#: The method name of the unpruned network in experiment rows.
DENSE = "dense"


def layer_columns(graph, masks) -> dict:
    """The per-layer list columns of a results row (names, dense and active widths, kept)."""
    rows = layer_table(graph, masks)
    return {"layer_names": [r["layer"] for r in rows], "layer_units": [r["units"] for r in rows],
            "layer_widths": [r["active_units"] for r in rows], "layer_kept": [r["kept"] for r in rows]}


def parse_method(spec) -> tuple:
    """``"phew"`` or ``"phew:bias=uniform,kernel_conserved=true"`` -> ``(label, name, options)``.

    A ``(name, options)`` pair or a ``(label, name, options)`` triple passes through
    (validated). ``"dense"`` is the unpruned network.

    >>> parse_method("phew:bias=uniform")
    ('phew:bias=uniform', 'phew', {'bias': 'uniform'})
    """
    if isinstance(spec, (tuple, list)):
        if len(spec) == 2:
            name, opts = spec
            label = name if not opts else f"{name}:" + ",".join(f"{k}={v}" for k, v in opts.items())
        elif len(spec) == 3:
            label, name, opts = spec
        else:
            raise InvalidInputError(f"a method is 'name', (name, options) or (label, name, options), got {spec!r}")
        if name != DENSE:
            check_options(get(name), dict(opts))
        return label, name, dict(opts)
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"a method is a name like 'phew' or 'phew:bias=uniform', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    if name == DENSE and not rest:
        return DENSE, DENSE, {}
    m = get(name)
    opts = {}
    for pair in filter(None, rest.split(",")):
        k, sep, v = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"method options look like key=value, got {pair!r} in {spec!r}")
        k = k.strip().replace("-", "_")
        if k in opts:
            raise InvalidInputError(f"method option {k!r} is given twice in {spec!r}; give each option once")
        opts[k] = parse_option_value(m, k, v.strip())
    check_options(m, opts)
    return spec.strip(), name, opts


@lru_cache(maxsize=2)
def _cached_model_graph(spec: str, shape, seed: int, num_classes, layer_scale="as_is"):
    return zoo.graph_of(spec, shape, seed, num_classes, layer_scale)


def model_graph(model, input_shape=None, seed: int = 0, num_classes: int | None = None, layer_scale: str = "as_is"):
    """``(module, graph, name)`` of a model name (zoo, ``torchvision:NAME``, ``timm:NAME``,
    ``pkg.module:factory``) or a module.

    Graphs of named models are cached (a few), so a grid builds each (model, seed) once.
    ``layer_scale`` as in :func:`netgraph.from_torch`.
    """
    if isinstance(model, str):
        shape = None if input_shape is None else tuple(zoo.parse_input_shape(input_shape))
        net, g = _cached_model_graph(model, shape, int(seed), num_classes, layer_scale)
        return net, g, model
    import torch.nn as nn

    if isinstance(model, nn.Module):
        if input_shape is None:
            raise InvalidInputError("input_shape is required for a torch model, e.g. input_shape=(3, 32, 32)")
        from netgraph import from_torch

        g = from_torch(model, tuple(zoo.parse_input_shape(input_shape)), layer_scale=layer_scale)
        return model, g, type(model).__name__
    raise InvalidInputError(f"a model is a zoo name, 'pkg.module:factory' or a torch.nn.Module, got {model!r}")


@dataclass
class RunResult:
    """What one run gives: the masks (None for the dense network) and its row."""

    masks: object
    row: dict


def run_one(model, method, density: float, seed: int = 0, *, input_shape=None, data=None, max_flow: bool = True,
            built=None, progress: bool = False, metrics=None, offpath: str = "dense") -> RunResult:
    """Build one mask, measure it, and make its row.

    Parameters
    ----------
    model : str or torch.nn.Module
        A zoo name, ``"pkg.module:factory"`` or a module; seed ``seed`` initialises named
        models and drives the method.
    method : str or tuple
        A method spec for :func:`parse_method` (``"phew"``, ``"phew:bias=uniform"``,
        ``(name, options)``), or ``"dense"`` for the unpruned network.
    density : float
        The asked density (``target_density`` in the row; ``achieved_density`` is measured).
    seed : int
    input_shape : tuple, optional
        Required for modules and user factories.
    data : optional
        The pruning batch of data-dependent methods (tensors or batches).
    max_flow : bool
        Compute the max-flow metrics.
    built : tuple, optional
        ``(module, graph, name)`` from :func:`model_graph`, to share one build between runs.
    progress : bool
        Show the method's progress bar.
    metrics : iterable of str, optional
        Compute only these metric keys (the row keeps every metric column, the others
        ``None``); e.g. to skip the spectral metrics, which cost minutes on ImageNet models.
    offpath : {"dense", "magnitude"}
        Policy for the off-path parameters (see :func:`netgraph.sparsify`).

    Returns
    -------
    RunResult
        ``row`` keys: ``model``, ``method`` (label), ``base_method``, ``target_density``,
        ``seed``, every metric key, the list columns, ``seconds`` (the method) and
        ``measure_seconds``.
    """
    label, name, opts = parse_method(method)
    net, g, model_name = built if built is not None else model_graph(model, input_shape, seed)
    t0 = time.perf_counter()
    if name == DENSE:
        masks = None
    else:
        if get(name).needs_data and data is None:
            raise InvalidInputError(f"method {name!r} needs data: pass data='random' or 'digits' (CLI: --data)")
        masks = sparsify(net, name, density, seed, graph=g, data=data, progress=progress, offpath=offpath, **opts)
    t1 = time.perf_counter()
    mg = as_masked(g, masks)
    row = {"model": model_name, "method": label, "base_method": name, "target_density": density, "seed": seed,
           **measure_masked(mg, max_flow=max_flow, keys=metrics), **layer_columns(g, mg),
           "seconds": t1 - t0, "measure_seconds": time.perf_counter() - t1}
    return RunResult(masks, row)
