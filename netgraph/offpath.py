"""Off-path parameters: their weights, their policies, and how a density is split with them.

*Off-path parameters* (``graph.offpath``) are weights that feed only non-path operations:
the convs of a squeeze-and-excitation gate, attention query/key rows, relative position
bias tables. No input-output path crosses them, so the path methods cannot score them;
a *policy* decides their masks (docs/data-model.md, "Gates and off-path parameters"):

``"dense"`` (default)
    Every off-path weight is kept; the layers get what is left of the requested count.
``"magnitude"``
    The requested count is apportioned between the layers (as one block) and each
    off-path entry in proportion to their sizes (Hamilton's largest-remainder method,
    exact integers); each entry keeps its largest ``|w|``, ties by position.

Either way ``layers + off-path = round(d * (N + N_off))`` exactly, over all conv/linear
weights of the model.

>>> split_counts(0.1, 90, [7, 3], "magnitude")
(9, [1, 0])
>>> split_counts(0.5, 90, [7, 3], "dense")
(40, [7, 3])
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ._validate import check_choice
from .errors import InvalidInputError

#: The off-path policies: the one tuple the API and the CLI (``--offpath``) accept.
OFFPATH_POLICIES = ("dense", "magnitude")


def offpath_arrays(model, entries) -> dict:
    """Read-only numpy views (CPU float32/64; others copied to float32) of the off-path
    parameters of ``model``, by name; entries the model does not hold as a tensor are left out.
    A masked parameter (torch's pruning, a parametrization) reads as the weight the model
    computes from it: its pruned entries are zeros."""
    from .masks import parameter_of

    out = {}
    for e in entries:
        p = parameter_of(model, e["param"])[2]
        if p is None or e["param"] in out:
            continue
        t = p.detach()
        if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64) or not t.is_contiguous():
            out[e["param"]] = t.to("cpu", torch.float32).contiguous().numpy()
            continue
        arr = t.numpy()
        arr.flags.writeable = False
        out[e["param"]] = arr
    return out


def _hamilton(total: int, sizes) -> list:
    """``total`` split over ``sizes`` in proportion (largest remainders, ties to the earlier part)."""
    s = int(sum(sizes))
    base = [total * n // s for n in sizes]
    rem = [total * n % s for n in sizes]
    order = sorted(range(len(sizes)), key=lambda i: (-rem[i], i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


def split_counts(density: float, n_layers: int, sizes, policy: str = "dense"):
    """Kept counts ``(layers, [per off-path entry])`` summing to ``round(density * total)``.

    Parameters
    ----------
    density : float
        The requested density over all conv/linear weights (layers and off-path).
    n_layers : int
        Prunable weights of the graph's layers ``N``.
    sizes : list of int
        ``numel`` of each off-path entry (``N_off`` is their sum).
    policy : {"dense", "magnitude"}

    Raises
    ------
    InvalidInputError
        If the layers would keep no weight (the density is too low for the policy).
    """
    check_choice("offpath", policy, OFFPATH_POLICIES)
    sizes = [int(n) for n in sizes]
    n_off = sum(sizes)
    total = int(round(density * (n_layers + n_off)))
    if policy == "dense":
        layers, kept = total - n_off, sizes
        if layers < 1:
            raise InvalidInputError(
                f"density {density:g} is below what the dense off-path parameters ({n_off} gate or attention "
                f"query/key weights) already keep: {n_off / (n_layers + n_off):.4g}; use offpath='magnitude' "
                "(CLI --offpath magnitude) to prune them too")
        return min(layers, n_layers), kept
    parts = _hamilton(total, [n_layers, *sizes])
    if parts[0] < 1:
        raise InvalidInputError(f"density {density:g} keeps {total} weights: none is left for the layers")
    return parts[0], parts[1:]


def magnitude_masks(graph, counts) -> list:
    """``[(param, rows or None, bool mask of the entry's rows)]`` in the order of
    ``graph.offpath`` (one parameter may have several entries: the query/key rows of each
    head of a fused ``qkv``): each off-path entry keeps
    its ``counts[i]`` largest ``|w|`` (ties: lower flat index first). Warns once, naming
    them, if some entries lose every weight."""
    from .sparsifiers._select import top_k_masks

    out, emptied = [], []
    for e, k in zip(graph.offpath, counts):
        w = getattr(graph, "offpath_weights", {}).get(e["param"])
        if w is None:
            raise InvalidInputError(
                f"offpath='magnitude' needs the values of off-path parameter {e['param']!r}, which this graph "
                "does not hold; build the graph with netgraph.from_torch or pass the model")
        rows = e.get("rows")
        part = w if rows is None else w[rows[0]:rows[1]]
        (m,) = top_k_masks([np.abs(part)], int(k))
        out.append((e["param"], rows, m))
        if k == 0:
            emptied.append(e["param"])
    if emptied:
        warnings.warn(
            f"offpath='magnitude' prunes every weight of {len(emptied)} off-path parameter(s) "
            f"({', '.join(emptied[:3])}{', ...' if len(emptied) > 3 else ''}): the density is too low for "
            "them; their gate or attention logits become constants", UserWarning, stacklevel=3)
    return out
