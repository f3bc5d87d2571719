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

from .._validate import check_density, check_seed, target_count
from ..errors import InvalidInputError
from ..graph import NetGraph
from ..masks import MaskSet
from ..provenance import provenance
from .registry import Context, check_options, get, methods, names, register

__all__ = ["sparsify", "names", "methods", "get", "register", "Context"]


def sparsify(model_or_graph, method: str, density: float, seed: int = 0, *, input_shape=None,
             data=None, progress: bool = False, graph: NetGraph | None = None, **options) -> MaskSet:
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
        Kept fraction of the prunable (conv and linear) weights, in (0, 1].
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
        The graph of the given module, if already built (saves tracing it again).
    **options
        Method options (see ``netgraph.sparsifiers.get(method).options``).

    Returns
    -------
    MaskSet
        Masks for every conv and linear weight, with metadata (method, options, density
        requested and achieved, seed, model spec, time taken, method details, and the
        provenance: library, torch and numpy versions, git commit, command line).

    Raises
    ------
    InvalidInputError
        Unknown method or option, density outside (0, 1], a data-dependent method
        without data, NaN/inf weights.
    """
    m = get(method)
    density = check_density(density)
    opts = check_options(m, options)
    seed = check_seed(seed)
    model = None
    if isinstance(model_or_graph, NetGraph):
        graph = model_or_graph
    elif isinstance(model_or_graph, nn.Module):
        model = model_or_graph
        if graph is None:
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
    # Off-path parameters (gate weights) are kept dense and counted: the layers get what
    # is left of the requested density over all conv/linear weights.
    offpath = int(sum(p["numel"] for p in getattr(graph, "offpath", ())))
    target = target_count(density, graph.num_weights)
    layer_density = density
    if offpath:
        target = int(round(density * (graph.num_weights + offpath))) - offpath
        if target < 1:
            raise InvalidInputError(
                f"density {density:g} is below what the dense off-path parameters ({offpath} gate, attention query/key or token-mixing weights) "
                f"already keep: {offpath / (graph.num_weights + offpath):.4g}")
        target = min(target, graph.num_weights)
        layer_density = target / graph.num_weights
    ctx = Context(graph=graph, density=layer_density, target=target, seed=seed,
                  model=model, data=data, progress=progress)
    t0 = time.perf_counter()
    layer_masks = m.fn(ctx, **opts)
    seconds = time.perf_counter() - t0
    meta = {
        "method": method,
        "options": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in opts.items()},
        "density": density,
        "target": ctx.target,
        **({"offpath_dense": offpath, "layer_density": layer_density} if offpath else {}),
        "seed": seed,
        "model": graph.model_spec,
        "seconds": round(seconds, 4),
        "details": ctx.info,
        "provenance": provenance(),
    }
    return MaskSet.from_graph(graph, layer_masks, meta)
