r"""Path norms of a mask: :math:`\|\Phi\|_q` for any ``q`` in ``[1, inf]``.

Gonon, Brisebarre, Riccietti and Gribonval ("A path-norm toolkit for modern networks",
ICLR 2024) bound the generalisation of a network by the ``l_q`` norm of its **path
vector** :math:`\Phi`, one entry per input-output path, the product of the weights on it.
On the unit DAG of :mod:`netgraph` a path picks one kept weight element in every bundle it
crosses (an identity shortcut is an edge of weight 1, a BatchNorm scale ``s`` multiplies
every path through its unit), so

.. math::

    \|\Phi\|_q^q = \sum_p \prod_{e \in p} |w_e|^q \qquad (1 \le q < \infty), \qquad
    \|\Phi\|_\infty = \max_p \prod_{e \in p} |w_e| .

Both come from one pass over the layers, O(edges): the flow programme of
:mod:`netgraph.flows` with bundle aggregate ``sum of kept |w|^q`` and scales ``s^q``
(Gonon et al.'s "one forward pass of the network with weights ``|w|^q`` on an all-ones
input"), and a max-plus programme in log space for ``q = inf``
(``log F(v) = log s(v) + max_u [log F(u) + log max_{w in (u,v)} |w|]``).

* ``q = 1`` is SynFlow's ``R`` (tested equal to :func:`netgraph.flows.log10_synflow_R`).
* ``q = 2``: ``||Phi||_2^2 = R2``, the quantity SynFlow-L2 and the path kernel are built on.
  The path-kernel trace is the sum of the *derivatives*,
  ``Tr(Pi) = sum_e dR2/d(w_e^2)``, while Euler's theorem gives
  ``sum_e w_e^2 dR2/d(w_e^2) = sum_p len(p) prod_p w^2``, i.e. ``L ||Phi||_2^2`` when every
  path crosses ``L`` weights (a plain MLP or VGG): the squared 2-path-norm is the
  ``w^2``-weighted trace divided by the depth (tested on an MLP).

Where this differs from the paper: biases are left out (their paths start at a hidden
unit; a mask only covers conv and linear weights), and pooling, flatten and padding follow
the channel-level data model (a pooling layer maps a channel to itself, see
``docs/data-model.md``), so on nets without padding the value equals the forward pass
of the network with weights ``|w|^q`` and BatchNorm scales ``s^q`` on an all-ones input
(tested against autograd), not a pixel-level path count.

>>> import torch, netgraph
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False), torch.nn.Linear(3, 1, bias=False))
>>> with torch.no_grad():
...     _ = model[0].weight.fill_(2.0), model[1].weight.fill_(0.5)
>>> g = netgraph.from_torch(model, (2,))
>>> round(10 ** log10_path_norm(g, None, 1), 9), round(10 ** log10_path_norm(g, None, "inf"), 9)
(6.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from netgraph.errors import InvalidInputError
from netgraph.flows import LOG10E, flows_from_aggregates, path_flows
from netgraph.graph import Layer
from netgraph.masked import as_masked


def _check_q(q) -> float:
    if isinstance(q, str) and q.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        qf = float(q)
    except (TypeError, ValueError):
        raise InvalidInputError(f"path-norm order q must be a number >= 1 or 'inf', got {q!r}") from None
    if isinstance(q, bool) or not qf >= 1:
        raise InvalidInputError(f"path-norm order q must be a number >= 1 or 'inf', got {q!r}")
    return qf


def power_aggregates(graph, masks, q: float) -> list:
    """Per-layer bundle aggregates ``sum of kept |w|^q`` (float64, bundle shape)."""
    mg = as_masked(graph, masks)
    if q == 1:
        return mg.aggregates("abs")
    if q == 2:
        return mg.aggregates("square")
    out = []
    for layer, m in zip(graph.layers, mg.masks_or_dense()):
        w = np.abs(layer.weight.astype(np.float64)) ** q
        out.append(np.einsum("ijk,ijk->ij", w, m) if not mg.dense else w.sum(axis=2))
    return out


def _log(x):
    with np.errstate(divide="ignore"):
        return np.log(np.abs(np.asarray(x, dtype=np.float64)))


def _max_plus(mg, layer, x: np.ndarray) -> np.ndarray:
    """``y[v] = max_u log(amax[v, u]) + x[u]`` over the layer's bundles (``-inf``: none),
    ``amax`` the largest kept ``|w|`` of each bundle.

    Sparse layers visit their kept bundles only (row-major, so each destination is one
    run for a segment maximum); the values are those of the dense form, element by element.
    """
    v, u, nz = mg.kept_bundles(layer)
    if nz.size >= 0.5 * layer.num_bundles:  # (half or more: one dense pass is as fast)
        return (_log(mg.bundle_max(layer)) + layer.gather(x)).max(axis=1)
    y = np.full(layer.n_dst, -np.inf)
    if nz.size:
        starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
        y[v[starts]] = np.maximum.reduceat(_log(mg.kept_bundle_max(layer)) + x[u], starts)
    return y


def _log_max_path(graph, masks) -> float:
    """``log`` of the largest product of ``|w|`` (and scales) over input-output paths."""
    mg = as_masked(graph, masks)
    G = len(graph.groups)
    F = [None] * G
    F[0] = np.zeros(graph.groups[0].size)
    for g in range(1, G):
        best = np.full(graph.groups[g].size, -np.inf)
        for e in graph.edges_into(g):
            x = F[e.src] if e.in_scale is None else F[e.src] + _log(e.in_scale)
            if isinstance(e, Layer):
                y = _max_plus(mg, e, x)
            elif e.is_identity:
                y = x
            else:  # an index map: units it does not reach get no path from it
                y = np.full(e.n_dst, -np.inf)
                y[e.dst_units] = x[e.src_units]
            if e.out_scale is not None:
                y = y + _log(e.out_scale)
            best = np.maximum(best, y)
        F[g] = best
    return float(F[G - 1].max()) if F[G - 1].size else -math.inf


def log10_path_norm(graph, masks=None, q=2) -> float:
    r"""``log10`` of the path norm :math:`\|\Phi\|_q` of a mask (``-inf`` when disconnected).

    Parameters
    ----------
    graph : NetGraph
    masks : optional
        Anything :func:`netgraph.masked.as_masked` accepts (``None``: dense).
    q : float or "inf"
        Order, ``q >= 1``; ``"inf"`` (or ``math.inf``) for the largest path product.

    Examples
    --------
    >>> import torch, netgraph
    >>> from netgraph import flows
    >>> g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)), (3,))
    >>> abs(log10_path_norm(g, None, 1) - flows.log10_synflow_R(g)) < 1e-12
    True
    """
    q = _check_q(q)
    mg = as_masked(graph, masks)
    if math.isinf(q):
        return mg.cached(("analysis.pathnorm", "inf"), lambda: _log_max_path(graph, mg) * LOG10E)

    def compute():
        if q in (1, 2):  # the flows of |w| and w^2 that the path metrics read too
            fl = path_flows(graph, "abs" if q == 1 else "square", mg)
        else:
            fl = flows_from_aggregates(graph, power_aggregates(graph, mg, q), q, f"abs^{q:g}")
        return fl.log_R / q * LOG10E

    return mg.cached(("analysis.pathnorm", q), compute)


def path_norms(graph, masks=None, qs=(1, 2, "inf")) -> dict:
    """``{"log10_path_norm_<q>": value}`` for each order ``q`` (see :func:`log10_path_norm`)."""
    return {f"log10_path_norm_{q}": log10_path_norm(graph, masks, q) for q in qs}
