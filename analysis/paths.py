"""Path diversity of a mask: how many input-output paths, how heavy, how evenly spread."""

from __future__ import annotations

import math

from netgraph import flows
from netgraph.masked import as_masked

from .connectivity import _max_flow


def edge_disjoint_paths(graph, masks=None, backend: str = "auto") -> int:
    """Maximum number of edge-disjoint input-output paths in the unit graph (max flow).

    Each kept unit-level edge ``(u, v)`` (any number of kept elements) has capacity 1;
    inputs and outputs are joined to a super-source and super-sink. ``backend`` as
    :func:`analysis.connectivity.min_vertex_cut`'s.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    >>> edge_disjoint_paths(netgraph.from_torch(model, (2,)))  # limited by the 2 x 4 input edges
    8
    """
    return _max_flow(graph, masks, split_units=False, backend=backend)


def path_diversity(graph, masks=None, max_flow: bool = True) -> dict:
    """Path statistics of a mask, all from the flow programme (and one max flow), run over
    the kept bundles of sparse layers (:func:`netgraph.flows.path_flows`).

    Keys: ``log10_paths`` (number of input-output paths through kept weights),
    ``log10_synflow_R`` (sum over paths of the product of ``|w|``), ``log10_R2`` (of
    ``w^2``), ``log10_path_kernel_trace``, ``path_entropy`` (nats, unit paths weighted by
    products of ``sum |w|``), ``log10_effective_paths`` (``H / ln 10``: ``exp(H)`` is the
    effective number of paths), ``edge_disjoint_paths`` (None with ``max_flow=False``).
    Logarithms are ``-inf`` when the mask disconnects the network.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    >>> d = path_diversity(netgraph.from_torch(model, (2,)))
    >>> round(10 ** d["log10_paths"]), d["edge_disjoint_paths"]
    (6, 3)
    """
    mg = as_masked(graph, masks)  # flows over the kept bundles of sparse layers
    H, _ = flows.path_entropy(graph, mg)
    out = {
        "log10_paths": flows.log10_num_paths(graph, mg),
        "log10_synflow_R": flows.log10_synflow_R(graph, mg),
        "log10_R2": flows.log10_R2(graph, mg),
        "log10_path_kernel_trace": flows.log10_path_kernel_trace(graph, mg),
        "path_entropy": H,
        "log10_effective_paths": H / math.log(10),
    }
    out["edge_disjoint_paths"] = edge_disjoint_paths(graph, masks) if max_flow else None
    return out
