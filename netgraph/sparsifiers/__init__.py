"""Sparsifiers: one entry point, :func:`sparsify`, over a registry of methods.

>>> import netgraph
>>> model = netgraph.zoo.build("digits_mlp", seed=0)
>>> ms = netgraph.sparsify(model, "synflow", density=0.1, seed=0, input_shape=(1, 8, 8))
>>> ms.num_kept == round(0.1 * 6464)
True
"""

from __future__ import annotations

import time

import torch.nn as nn

from .._numba import compile_notice
from .._validate import check_choice, check_density, check_seed, target_count
from ..errors import InvalidInputError
from ..graph import NetGraph
from ..masks import MaskSet, parameter_of
from ..offpath import OFFPATH_POLICIES, magnitude_masks, split_counts
from ..provenance import provenance
from .registry import Context, check_options, get, methods, names, register

__all__ = ["sparsify", "names", "methods", "get", "register", "Context", "OFFPATH_POLICIES"]


def _check_graph_of(model: nn.Module, graph) -> None:
    """Raise unless every parameter of ``graph`` (layers and off-path) is one of ``model``'s,
    of the same shape: names and shapes only, no tracing. (A model may have conv/linear
    weights its graph lacks: modules its forward pass does not use, e.g. auxiliary heads.)"""
    if not isinstance(graph, NetGraph):
        raise InvalidInputError(f"graph must be a NetGraph (netgraph.from_torch), got {type(graph).__name__}")
    params = [(layer.param, tuple(layer.param_shape)) for layer in graph.layers]
    params += [(p["param"], tuple(p["shape"])) for p in graph.offpath]
    for name, shape in params:
        t = parameter_of(model, name)[2]
        if t is None or tuple(t.shape) != shape:
            found = "has no such parameter" if t is None else f"has shape {tuple(t.shape)}"
            raise InvalidInputError(
                f"graph= is not the graph of this model: its parameter {name!r} of shape {shape} does not "
                f"fit (the model {found}); pass the graph from_torch built for this model, or no graph")


def sparsify(model_or_graph, method: str, density: float, seed: int = 0, *, input_shape=None,
             data=None, progress: bool = False, graph: NetGraph | None = None, offpath: str = "dense",
             **options) -> MaskSet:
    """Build a sparse mask with a registered method.

    Parameters
    ----------
    model_or_graph : torch.nn.Module or NetGraph
        The network. Data-dependent methods (``snip``, ``grasp``) need the module.
    method : str
        One of :func:`names`: ``phew``, ``synflow``, ``synflow-l2``, ``random``,
        ``magnitude``, ``snip``, ``grasp``, ``expander``, ``npb``, ``synflow-schedule``,
        ``phew-layerwise``.
    density : float
        Kept fraction of the conv and linear weights, in (0, 1]: the graph's layers and its
        off-path parameters (gate weights, attention query/key rows) together; met exactly.
    seed : int
        Seed of every random choice the method makes; the same seed gives the same mask.
    input_shape : tuple, optional
        Shape of one input sample; required when a module is given.
    data : optional
        For data-dependent methods: a ``(inputs, labels)`` pair of tensors or an iterable
        of such batches (e.g. a ``DataLoader``).
    progress : bool
        Show a progress bar for long methods.
    graph : NetGraph, optional
        The graph of the given module, if already built (saves tracing it again). Its
        parameters (names and shapes) must be the module's.
    offpath : {"dense", "magnitude"}
        Policy for the off-path parameters (:data:`netgraph.offpath.OFFPATH_POLICIES`):
        keep them all (default; the layers get the rest of the count), or keep the
        largest ``|w|`` of each at the layers' density (the count is split in proportion
        to sizes by largest remainders; warns if an entry loses every weight). See
        :mod:`netgraph.offpath`.
    **options
        Method options (see ``netgraph.sparsifiers.get(method).options``).

    Returns
    -------
    MaskSet
        Masks for every conv and linear weight, with metadata (method, options, density
        requested and achieved, seed, model spec, time taken, method details, the
        off-path policy with its weight and kept counts (``meta["offpath"]``) and the
        provenance: library, torch and numpy versions, git commit, command line).

    Raises
    ------
    InvalidInputError
        Unknown method, option or off-path policy, density outside (0, 1] (or too low
        for the off-path policy), a data-dependent method without data, NaN/inf weights,
        a ``graph`` that is not a NetGraph of ``model_or_graph``'s parameters.
    """
    m = get(method)
    density = check_density(density)
    opts = check_options(m, options)
    seed = check_seed(seed)
    check_choice("offpath", offpath, OFFPATH_POLICIES)
    model = None
    if isinstance(model_or_graph, NetGraph):
        graph = model_or_graph
    elif isinstance(model_or_graph, nn.Module):
        model = model_or_graph
        if graph is not None:
            _check_graph_of(model, graph)
        else:
            if input_shape is None:
                raise InvalidInputError(
                    "input_shape is required when sparsifying a torch model, e.g. input_shape=(3, 32, 32)")
            from ..trace import from_torch

            graph = from_torch(model, input_shape)
    else:
        raise InvalidInputError(
            f"sparsify takes a torch.nn.Module or a NetGraph, got {type(model_or_graph).__name__}"
        )
    if m.needs_data:
        if model is None:
            raise InvalidInputError(f"method {method!r} needs the torch model (not a graph) and data")
        if data is None:
            raise InvalidInputError(
                f"method {method!r} is data-dependent: pass data=(inputs, labels) or a DataLoader "
                "(CLI: --data random or --data digits)"
            )
    # Off-path parameters (gate weights, attention query/key rows) count in the density:
    # the policy splits round(d * (N + N_off)) between them and the layers (netgraph.offpath).
    sizes = [int(p["numel"]) for p in getattr(graph, "offpath", ())]
    target, off_counts = target_count(density, graph.num_weights), []
    if sizes:
        target, off_counts = split_counts(density, graph.num_weights, sizes, offpath)
    layer_density = target / graph.num_weights if sizes else density
    ctx = Context(graph=graph, density=layer_density, target=target, seed=seed,
                  model=model, data=data, progress=progress)
    t0 = time.perf_counter()
    with compile_notice(progress):  # (a first compile of numba kernels says so: once per install)
        layer_masks = m.fn(ctx, **opts)
    seconds = time.perf_counter() - t0
    meta = {
        "method": method,
        "options": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in opts.items()},
        "density": density,
        "target": ctx.target + sum(off_counts),  # over all conv/linear weights, off-path included
        **({"offpath": {"policy": offpath, "weights": sum(sizes), "kept": sum(off_counts)},
            "layer_target": ctx.target, "layer_density": layer_density} if sizes else {}),
        "seed": seed,
        "model": graph.model_spec,
        "seconds": round(seconds, 4),
        "details": ctx.info,
        "provenance": provenance(),
    }
    off_masks = magnitude_masks(graph, off_counts) if sizes and offpath == "magnitude" else None
    return MaskSet.from_graph(graph, layer_masks, meta, offpath_masks=off_masks)
