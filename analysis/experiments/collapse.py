"""Layer-collapse margin: the largest density at which a method's mask disconnects the net.

A method *collapses* a network at density ``d`` when its mask leaves no input-output path
(some layer keeps no effective weight). SynFlow's claim (Tanaka et al. 2020) is that it
never does before the trivial limit; magnitude pruning and SNIP collapse early on deep
nets. :func:`collapse_margin` finds, by bisection on ``log(density)``, the boundary
between the densities where the mask is disconnected and where it is connected:

* ``margin``: the largest density tried whose mask is disconnected (``None`` if even the
  smallest density, one weight per layer, stays connected: the method never collapses);
* ``upper``: the smallest density tried whose mask is connected.

The true boundary lies between them (``upper / margin <= 1 + rtol`` at the end). This
assumes one switch from disconnected to connected as the density grows, which holds for
the nested (iterative / top-k) methods and, per seed, approximately for random ones; the
evaluated points are returned so the assumption can be checked. It runs the method many
times, so it is an experiment, not a metric of one mask.

>>> import netgraph
>>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
>>> r = collapse_margin(g, "magnitude", rtol=0.05)
>>> r["margin"] < r["upper"] <= 1.05 * r["margin"]
True
"""

from __future__ import annotations

import math

from netgraph._validate import target_count
from netgraph.errors import InvalidInputError
from netgraph.masked import as_masked
from netgraph.sparsifiers import sparsify

from ..connectivity import connectivity


def sparsify_density(graph, density: float) -> float:
    """The ``density`` argument of :func:`netgraph.sparsify` that keeps ``density`` of the layers' weights.

    :func:`netgraph.sparsify` counts the off-path parameters (gate and attention query/key
    weights, kept dense) in the density it aims at; this inverts that policy so that the
    graph's layers keep ``target_count(density, graph.num_weights)`` weights, the density
    ``graph_density`` reports. Without off-path parameters it is ``density``.

    >>> import netgraph
    >>> g = netgraph.from_torch(netgraph.zoo.build("digits_mlp"), (1, 8, 8))
    >>> sparsify_density(g, 0.01)
    0.01
    """
    offpath = int(sum(p["numel"] for p in getattr(graph, "offpath", ())))
    if not offpath:
        return density
    return (target_count(density, graph.num_weights) + offpath) / (graph.num_weights + offpath)


def _connected(graph, method, density, seed, options, model=None, data=None) -> bool:
    try:
        ms = sparsify(graph if model is None else model, method, sparsify_density(graph, density), seed=seed,
                      graph=None if model is None else graph, data=data, **options)
    except InvalidInputError as exc:
        if "no input-output path" in str(exc):  # the method itself found the net disconnected
            return False
        raise
    return bool(connectivity(graph, as_masked(graph, ms))["connected"])


def collapse_margin(graph, method: str, seed: int = 0, rtol: float = 0.01, max_evals: int = 40,
                    lowest: float | None = None, *, model=None, data=None, known=(), **options) -> dict:
    """Bisection for the largest density at which ``method`` disconnects ``graph``.

    Densities are fractions of the graph's layer weights (off-path parameters, kept dense,
    are not counted; see :func:`sparsify_density`).

    Parameters
    ----------
    graph : NetGraph
    method : str
        A registered method; a data-dependent one needs ``model`` and ``data``.
    seed : int
    rtol : float
        Stop when ``upper / margin <= 1 + rtol``.
    max_evals : int
        At most this many new masks.
    lowest : float, optional
        Smallest density tried (default: one weight per layer, ``len(layers) / num_weights``).
    model : torch.nn.Module, optional
        The module of ``graph``, for data-dependent methods.
    data : optional
        Their pruning batch.
    known : iterable of (density, connected)
        Evaluations already made (e.g. the masks of a grid, same method and seed): they
        narrow the starting bracket and are not run again.
    **options
        Method options.

    Returns
    -------
    dict
        ``method``, ``seed``, ``margin``, ``upper``, ``evaluations`` (list of
        ``(density, connected)``, the new masks only).
    """
    lo = lowest if lowest is not None else min(1.0, len(graph.layers) / graph.num_weights)
    known = [(float(d), bool(c)) for d, c in known]
    hi = min([d for d, c in known if c], default=1.0)
    below = [d for d, c in known if not c and d < hi]
    evals = []

    def probe(d):
        c = _connected(graph, method, d, seed, options, model, data)
        evals.append((d, c))
        return c

    def result(margin, upper):
        return {"method": method, "seed": seed, "margin": margin, "upper": upper, "evaluations": evals}

    if below:
        lo = max(below)
    elif probe(lo):
        return result(None, lo)
    if hi == 1.0 and not any(c for _, c in known) and not probe(hi):
        return result(hi, None)
    while hi / lo > 1 + rtol and len(evals) < max_evals:
        mid = math.exp(0.5 * (math.log(lo) + math.log(hi)))
        if probe(mid):
            hi = mid
        else:
            lo = mid
    return result(lo, hi)


def collapse_margins(graph, methods, seeds=(0,), rtol: float = 0.01) -> list:
    """:func:`collapse_margin` for each method (a name or ``(name, options)``) and seed: a list of rows."""
    rows = []
    for m in methods:
        name, opts = (m, {}) if isinstance(m, str) else (m[0], dict(m[1]))
        for s in seeds:
            r = collapse_margin(graph, name, seed=s, rtol=rtol, **opts)
            r["model"] = graph.model_spec.get("name")
            r["options"] = opts
            rows.append(r)
    return rows
