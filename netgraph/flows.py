r"""Forward and backward flows over the unit graph: one dynamic programme, four quantities.

For an edge aggregate :math:`a(u, v)` and the per-unit scales :math:`s`:

.. math::

    F(\text{input}) = 1, \quad F(v) = \sum_{u} F(u)\, s_{in}(u)^p\, a(u, v)\, s_{out}(v)^p

    B(\text{output}) = 1, \quad B(u) = \sum_{v} s_{in}(u)^p\, a(u, v)\, s_{out}(v)^p\, B(v)

    R = \sum_{\text{outputs}} F = \sum_{\text{inputs}} B

* ``weights="abs"`` (:math:`a = \sum |w|`, :math:`p = 1`): SynFlow's objective
  :math:`R = 1^T |W_L| \cdots |W_1| 1` and, per element ``w`` of bundle ``(u, v)``, its
  SynFlow score :math:`|w|\, s_{in}(u) F(u)\, s_{out}(v) B(v)`.
* ``weights="square"`` (:math:`a = \sum w^2`, :math:`p = 2`): :math:`R_2`, the squared l2
  path norm; the path-kernel trace is
  :math:`\sum_{(u,v)} \#\text{kept}(u, v)\, s_{in}^2 F_2(u)\, s_{out}^2 B_2(v)`.
* ``weights="count"`` (:math:`a` = number of kept elements, :math:`p = 0`): the number of
  input-output paths of a mask.

Shortcuts (identity edges and the index maps of concatenation, split and channel
permutation) are edges of aggregate 1. Each group's flow vector is stored as
``vec * exp(log_scale)`` with ``max(vec) = 1``, so nothing overflows float64 however deep
the network (a dense VGG19 has about 4e40 paths; deeper nets pass 1e308). Every
matrix-vector product runs over the ``(n_dst, n_in)`` bundle matrix of a layer (block by
block for a grouped conv, see :meth:`netgraph.Layer.push`): the cost is O(edges), never
O(paths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_choice
from .graph import Layer, NetGraph
from .masked import WEIGHTS, MaskedGraph, as_masked
from .reach import reachability

__all__ = ["WEIGHTS", "MaskedGraph", "as_masked", "aggregates", "path_flows", "reachability", "flows_from_aggregates", "Flows",
           "log10_synflow_R", "log10_R2", "log10_num_paths", "log10_path_kernel_trace", "path_kernel_trace",
           "synflow_scores", "synflow_l2_scores", "element_scores", "path_entropy"]
_POWER = {"abs": 1, "square": 2, "count": 0}
LOG10E = math.log10(math.e)


def aggregates(graph: NetGraph, weights: str = "abs", masks=None) -> list:
    """Per-layer bundle aggregates (float64) under a mask, shape ``layer.weight.shape[:2]``.

    ``weights`` is ``"abs"`` (sum of kept ``|w|``), ``"square"`` (sum of kept ``w^2``) or
    ``"count"`` (number of kept elements). ``masks`` is anything
    :func:`~netgraph.masked.as_masked` accepts (``None`` means dense); the result is cached
    on the masked graph.
    """
    check_choice("weights", weights, WEIGHTS)
    return as_masked(graph, masks).aggregates(weights)


def _scale(s, p):
    if s is None or p == 0:
        return None
    return s if p == 1 else s**p


def _combine(terms):
    """Sum scaled vectors ``y * exp(c)``; return ``(vec, log_scale)`` with max(vec) = 1."""
    tops = [(y, c, y.max()) for y, c in terms if y.size]
    live = [(y, c, t) for y, c, t in tops if t > 0]
    if not live:
        n = terms[0][0].shape[0] if terms else 0
        return np.zeros(n), 0.0
    top = max(c + math.log(t) for _, c, t in live)
    f = live[0][0] * math.exp(live[0][1] - top)  # (0.0 + x is x: the sum from zeros, one pass less)
    for y, c, _ in live[1:]:
        f += y * math.exp(c - top)
    m = f.max()
    return f / m, top + math.log(m)


@dataclass
class Flows:
    """Forward and backward flows of one aggregate.

    ``forward[g] * exp(log_forward_scale[g])`` is :math:`F` on the units of group ``g``;
    likewise for ``backward``. Use :meth:`log_R` for the total, :meth:`bundle_factor` for per-bundle
    gradients. ``aggregates``: the per-layer matrices run on (CSR for a large sparse layer).
    """

    graph: NetGraph
    weights: str
    power: int
    aggregates: list
    forward: list
    forward_scale: np.ndarray
    backward: list
    backward_scale: np.ndarray

    @property
    def log_R(self) -> float:
        """Natural log of :math:`R` (``-inf`` if no path survives)."""
        out = len(self.graph.groups) - 1
        total = float(self.forward[out].sum())
        return -math.inf if total <= 0 else float(self.forward_scale[out]) + math.log(total)

    @property
    def log10_R(self) -> float:
        return self.log_R * LOG10E

    @property
    def R(self) -> float:
        """:math:`R` as a float (``inf`` past float64's range)."""
        try:
            return math.exp(self.log_R)
        except OverflowError:
            return math.inf

    def bundle_factor(self, layer: Layer, relative: bool = True):
        r"""Per-bundle gradient factor of a layer.

        Returns ``(c, log_offset)`` where ``c`` has the bundle shape ``(n_dst, n_in)`` and
        ``c[v, j] * exp(log_offset)`` is :math:`s_{in}(u)^p F(u)\, s_{out}(v)^p B(v)` with
        ``u = layer.src_index()[v, j]``, the
        derivative of :math:`R` with respect to the aggregate of bundle ``(u, v)``. With
        ``relative=True`` the offset is relative to :math:`R` (so ``c * exp(offset)`` is
        :math:`\partial \log R / \partial a`).
        """
        f = self.forward[layer.src]
        b = self.backward[layer.dst]
        si = _scale(layer.in_scale, self.power)
        so = _scale(layer.out_scale, self.power)
        if si is not None:
            f = f * si
        if so is not None:
            b = b * so
        offset = float(self.forward_scale[layer.src] + self.backward_scale[layer.dst])
        if relative:
            offset -= self.log_R
        return b[:, None] * layer.gather(f), offset


def flow_step(graph: NetGraph, g: int, vecs, logs, agg_of: dict, power: int, forward: bool = True) -> tuple:
    """One step of the forward (backward) programme: group ``g``'s ``(vector, log scale)`` from the vectors
    ``vecs``, log scales ``logs`` of the groups before (after) it and layer aggregates ``agg_of`` (index ->
    aggregate; missing: empty)."""
    terms = []
    for e in graph.edges_into(g) if forward else graph.edges_out_of(g):
        near, far, end = (e.in_scale, e.out_scale, e.src) if forward else (e.out_scale, e.in_scale, e.dst)
        near, far = _scale(near, power), _scale(far, power)
        x = vecs[end] if near is None else vecs[end] * near
        agg = agg_of.get(e.index) if isinstance(e, Layer) else None
        y = e.push(agg, x) if forward else e.pull(agg, x)
        terms.append((y if far is None else y * far, logs[end]))
    return _combine(terms or [(np.zeros(graph.groups[g].size), 0.0)])


def _sweep(graph: NetGraph, agg_of: dict, power: int, forward: bool) -> tuple:
    """Every group's ``(vectors, log scales)``, from the input group up or the output group down."""
    G = len(graph.groups)
    vecs, logs = [None] * G, np.zeros(G)
    first, order = (0, range(1, G)) if forward else (G - 1, range(G - 2, -1, -1))
    vecs[first] = np.ones(graph.groups[first].size)
    for g in order:
        vecs[g], logs[g] = flow_step(graph, g, vecs, logs, agg_of, power, forward)
    return vecs, logs


def flows_from_aggregates(graph: NetGraph, aggs: list, power: int, weights: str = "custom", pool=None) -> Flows:
    """Run the forward/backward programme on given per-layer aggregates.

    This is the core the other functions call; sparsifiers that keep their own aggregates (SynFlow's
    iterations) call it directly, with an executor (``pool``) running the backward sweep beside the forward one.
    """
    agg_of = {layer.index: a for layer, a in zip(graph.layers, aggs)}
    back = pool.submit(_sweep, graph, agg_of, power, False) if pool is not None else None
    fwd, fsc = _sweep(graph, agg_of, power, True)
    bwd, bsc = _sweep(graph, agg_of, power, False) if back is None else back.result()
    return Flows(graph, weights, power, aggs, fwd, fsc, bwd, bsc)


def path_flows(graph: NetGraph, weights: str = "abs", masks=None) -> Flows:
    """Forward and backward flows of ``graph`` under ``masks``.

    Parameters
    ----------
    graph : NetGraph
    weights : {"abs", "square", "count"}
        Edge aggregate: sum of ``|w|`` (SynFlow), sum of ``w^2`` (path kernel), number of
        kept elements (path counting).
    masks : MaskSet, dict or list, optional
        Kept weights; ``None`` means dense.

    Returns
    -------
    Flows
        A large sparse layer enters as a CSR matrix of its kept bundles
        (:meth:`~netgraph.masked.MaskedGraph.operator`): O(kept bundles), values equal to the
        dense route's to rounding (about 1e-15 relative). Cached on the masked graph.

    Examples
    --------
    >>> import torch, netgraph
    >>> from netgraph.flows import path_flows
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> g = netgraph.from_torch(model, (3,))
    >>> round(path_flows(g, "count").R)  # 3 * 4 * 2 input-output paths
    24
    """
    check_choice("weights", weights, WEIGHTS)
    mg = as_masked(graph, masks)
    return mg.cached(("flows", weights), lambda: flows_from_aggregates(
        graph, [mg.operator(weights, layer) for layer in graph.layers], _POWER[weights], weights))


# -- quantities ---------------------------------------------------------------------

def log10_synflow_R(graph: NetGraph, masks=None) -> float:
    r"""``log10`` of SynFlow's objective :math:`R = \sum_p \prod_{e \in p} |w_e|`."""
    return path_flows(graph, "abs", masks).log10_R


def log10_R2(graph: NetGraph, masks=None) -> float:
    r"""``log10`` of :math:`R_2 = \sum_p \prod_{e \in p} w_e^2` (squared l2 path norm)."""
    return path_flows(graph, "square", masks).log10_R


def log10_num_paths(graph: NetGraph, masks=None) -> float:
    """``log10`` of the number of input-output paths through kept weights (``-inf`` if none).

    Paths are counted at element level: a path picks one kept element in each bundle it
    crosses (an identity shortcut counts as one edge).
    """
    return path_flows(graph, "count", masks).log10_R


def _log_path_kernel_trace(graph: NetGraph, masks=None, flows: Flows | None = None) -> float:
    mg = as_masked(graph, masks)
    if flows is None:
        flows = path_flows(graph, "square", mg)
    logs = []
    p = flows.power
    for layer in graph.layers:
        v, u, _ = mg.kept_bundles(layer)  # kept bundles only: O(kept bundles)
        n = mg.bundle_values("count", layer)
        f, b = flows.forward[layer.src][u], flows.backward[layer.dst][v]
        if layer.in_scale is not None:
            f = f * layer.in_scale[u] ** p
        if layer.out_scale is not None:
            b = b * layer.out_scale[v] ** p
        off = float(flows.forward_scale[layer.src] + flows.backward_scale[layer.dst])
        t = float(np.dot(n * b, f))
        if t > 0:
            logs.append(off + math.log(t))
    if not logs:
        return -math.inf
    top = max(logs)
    return top + math.log(sum(math.exp(x - top) for x in logs))


def log10_path_kernel_trace(graph: NetGraph, masks=None) -> float:
    r"""``log10`` of the path-kernel trace :math:`\mathrm{Tr}(\Pi) = \sum_e \partial R_2 / \partial (w_e^2)`.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.fill_(2.0); _ = model[1].weight.fill_(3.0)
    >>> g = netgraph.from_torch(model, (1,))
    >>> round(10 ** log10_path_kernel_trace(g), 6)  # d(w1^2 w2^2)/d(w1^2) + .../d(w2^2) = 9 + 4
    13.0
    """
    return _log_path_kernel_trace(graph, masks) * LOG10E


def path_kernel_trace(graph: NetGraph, masks=None) -> float:
    """The path-kernel trace as a float (``inf`` past float64's range)."""
    try:
        return math.exp(_log_path_kernel_trace(graph, masks))
    except OverflowError:
        return math.inf


def element_scores(graph: NetGraph, flows: Flows, element_weight, masks=None, relative=False, log=False) -> dict:
    """``element_weight(layer) * bundle factor`` per element, as ``{param: array}``.

    ``element_weight(layer)`` returns a non-negative array of shape ``(n_dst, n_in, k)``.
    The product is formed in log space, so a factor past float64's range never raises:
    with ``log=True`` the natural logarithms are returned (``-inf`` for a zero score),
    otherwise the scores (``inf`` only where the true score exceeds float64). Pruned
    elements (``masks`` false) score 0 (``-inf`` in log form). With ``relative=True`` on a
    mask that leaves no input-output path, every score is 0: no weight carries flow.
    """
    layer_masks = as_masked(graph, masks).layer_masks
    dead = relative and not math.isfinite(flows.log_R)
    out = []
    for i, layer in enumerate(graph.layers):
        ew = element_weight(layer)
        if dead:
            s = np.full(ew.shape, -np.inf)
        else:
            c, off = flows.bundle_factor(layer, relative=relative)
            with np.errstate(divide="ignore"):
                s = np.log(ew) + (np.log(c) + off)[:, :, None]
        if layer_masks is not None:
            s = np.where(layer_masks[i], s, -np.inf)
        if not log:
            with np.errstate(over="ignore"):
                s = np.exp(s)
        out.append(s)
    # a layer over a row range of its parameter: the other rows (off-path) score 0
    return graph.to_params(out, fill=-np.inf if log else 0.0)


def synflow_scores(graph: NetGraph, masks=None, *, relative: bool = False, log: bool = False) -> dict:
    r"""SynFlow scores :math:`|w| \, \partial R / \partial |w|` of every weight.

    Parameters
    ----------
    graph : NetGraph
    masks : optional
        Kept weights; pruned weights score 0 and do not carry flow.
    relative : bool
        Return :math:`\partial \log R / \partial \log |w|` (scores divided by :math:`R`),
        which never overflows; on a chain network each layer's relative scores sum to 1.
        Zero everywhere when the mask leaves no input-output path.
    log : bool
        Return natural logarithms of the scores (``-inf`` for zero), for networks whose
        scores pass float64's range.

    Returns
    -------
    dict
        Parameter name to float64 array of the parameter's shape.

    Notes
    -----
    Equal to the autograd computation (all-ones input, ``|w|`` weights, zero biases, eval
    mode) on networks without zero padding; see the exactness tests.
    """
    flows = path_flows(graph, "abs", masks)
    return element_scores(graph, flows, lambda l: np.abs(l.weight.astype(np.float64)), masks, relative, log)


def synflow_l2_scores(graph: NetGraph, masks=None, *, form: str = "abs_grad", relative: bool = False,
                      log: bool = False) -> dict:
    r"""SynFlow-L2 scores of every weight.

    ``form="abs_grad"`` (default, the PHEW authors' form): :math:`|w| \, \partial R_2 / \partial (w^2)`.
    ``form="w_grad"``: :math:`w \, \partial R_2 / \partial w = 2 w^2 \, \partial R_2 / \partial (w^2)`.
    The two rank weights differently. ``relative`` and ``log`` as in :func:`synflow_scores`
    (the squared flows pass float64's range sooner than R does).
    """
    check_choice("form", form, ("abs_grad", "w_grad"))
    flows = path_flows(graph, "square", masks)
    if form == "abs_grad":
        ew = lambda l: np.abs(l.weight.astype(np.float64))  # noqa: E731
    else:
        ew = lambda l: 2.0 * np.square(l.weight.astype(np.float64))  # noqa: E731
    return element_scores(graph, flows, ew, masks, relative, log)


def path_entropy(graph: NetGraph, masks=None) -> tuple:
    r"""Entropy of the path-weight distribution and the effective number of paths.

    With :math:`w_p` the product of the edge aggregates :math:`a_e = \sum |w|` (times the
    unit scales) along unit path :math:`p` and :math:`Z = R = \sum_p w_p`:

    .. math:: H = \log Z - \frac{1}{Z} \sum_e a_e \log a_e \, F(u)\, B(v)

    Returns ``(H, exp(H))`` in nats; ``exp(H)`` is the effective number of paths (equal
    to the number of unit paths when all path weights are equal).

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3, bias=False), torch.nn.Linear(3, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.fill_(0.5); _ = model[1].weight.fill_(-2.0)
    >>> H, n_eff = path_entropy(netgraph.from_torch(model, (2,)))
    >>> round(n_eff, 6)  # 6 unit paths of equal weight
    6.0
    """
    mg = as_masked(graph, masks)
    flows = path_flows(graph, "abs", mg)
    logZ = flows.log_R
    if not math.isfinite(logZ):
        return -math.inf, 0.0  # no path: zero effective paths, not one
    acc = 0.0
    for e in graph.edges():
        if isinstance(e, Layer):  # over the bundles that carry weight only: O(kept bundles)
            v, u, _ = mg.kept_bundles(e)
            a = mg.bundle_values("abs", e)
            if e.out_scale is not None:
                a = a * e.out_scale[v]
            if e.in_scale is not None:
                a = a * e.in_scale[u]
            live = a > 0
            if not live.all():  # (a kept bundle of zero weights adds nothing: 0 log 0 = 0)
                v, u, a = v[live], u[live], a[live]
            t = float(np.dot(flows.backward[e.dst][v] * flows.forward[e.src][u], a * np.log(a)))
        else:
            if e.scale is None:
                continue
            s = e.scale
            ls = np.log(np.where(s > 0, s, 1.0))
            f = flows.forward[e.src][e.src_units]
            t = float((f * s * ls * flows.backward[e.dst][e.dst_units]).sum())
        acc += t * math.exp(flows.forward_scale[e.src] + flows.backward_scale[e.dst] - logZ)
    H = float(logZ - acc)
    return H, math.exp(H) if H < 709 else math.inf
