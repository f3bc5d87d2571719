r"""NPB's per-layer programme solved exactly without a MILP solver (``solver="exact"``).

The programme of :mod:`.npb` depends on the bundle counts ``x_b`` only through the number
of kept elements per source unit, ``e_u = sum_{b at u} x_b``:

* the path term is :math:`\frac{\alpha}{c} \sum_u p_u e_u`;
* source ``u`` is active iff ``e_u >= 1``;
* group ``g`` of the layer (all of it unless the conv is grouped or depthwise) has
  ``group_out`` destination units, each reading only the group's ``n_in`` sources; at most
  :math:`\min(\text{group\_out}, E_g)` of them can be active, :math:`E_g = \sum_{u \in g} e_u`,
  and that many are, when source ``u`` uses ``min(e_u, group_out)`` bundles with the
  destinations taken round-robin across the group's sources (each bundle then holds 1 to
  ``k`` elements, as :math:`e_u \le \text{group\_out}\, k`).

So the optimum is that of

.. math::

    \max_e \sum_u \Big(\frac{\alpha}{c} p_u e_u + \beta [e_u \ge 1]\Big)
      + \sum_g \beta \min(\text{group\_out}, E_g),
    \quad \sum_u e_u = c,\; 0 \le e_u \le \text{group\_out}\, k,

with :math:`\beta = (1 - \alpha) / (n_{src} + n_{dst})`. Write each source's elements as
items of value :math:`\frac{\alpha}{c} p_u + \beta` (its first) and
:math:`\frac{\alpha}{c} p_u` (the other ``group_out k - 1``); sort each group's items by
value and add :math:`\beta` to its first ``group_out``. Any ``c`` items of largest value
form an optimum: for any ``e``, the objective of group ``g`` is at most the sum of its
``E_g`` best items (its best base values plus :math:`\beta \min(\text{group\_out}, E_g)`),
and the ``c`` best items overall reach that bound (a source's first item outranks its
others). The items come in at most three runs of equal value per source, so the whole
solve is a few sorts over ``3 n_src`` runs.

Tie rules (the programme has many optima; these pick one, deterministically):

* items of equal value go to the sources with the fewest elements so far (water-filling),
  then to the lower source index; the same rule decides which tied items of a group get
  the :math:`\beta` of its first ``group_out``. So no source is favoured for its index
  (the three input channels of an image net share a tie equally).
* per-source counts become bundles with as few bundles and destinations as the active
  units need (:func:`bundle_counts`): whole kernels first, just enough bundles for the
  ``min(group_out, E_g)`` active destinations, round-robin over the first destinations
  of the group. So the tie rules add no balance of their own: with ``alpha = 1`` (paths
  only, no weight on active units) the mask concentrates on few units, as path counts
  reward, and with ``alpha < 1`` the units the objective pays for are active.
"""

from __future__ import annotations

import numpy as np


def _waterfill(seg: np.ndarray, base: np.ndarray, cap: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Add ``amount[s]`` units to the entries of each segment ``s`` (at most ``cap`` each),
    equalising ``base + added``; the last units go to the earliest entries.

    ``seg`` (non-decreasing segment ids), ``base``, ``cap``: int arrays of one length;
    ``amount[s] <= cap`` summed over segment ``s``. Returns the added units (int64).
    """
    n = len(amount)
    base, cap = base.astype(np.int64), cap.astype(np.int64)
    lo = np.zeros(n, np.int64)
    hi = np.zeros(n, np.int64)
    np.maximum.at(hi, seg, base + cap)

    def filled(level):
        return np.bincount(seg, np.clip(level[seg] - base, 0, cap), minlength=n)

    while (lo < hi).any():  # largest level whose fill does not exceed the amount
        mid = (lo + hi + 1) // 2
        ok = filled(mid) <= amount
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid - 1)
    add = np.clip(lo[seg] - base, 0, cap)
    rest = amount - np.bincount(seg, add, minlength=n).astype(np.int64)
    more = (add < cap) & (base <= lo[seg])  # entries that take one unit at the next level
    rank = np.cumsum(more)
    first = np.searchsorted(seg, np.arange(n))
    before = np.r_[0, rank][first]
    return add + (more & (rank - before[seg] <= rest[seg]))


def element_counts(layer, count: int, p_src: np.ndarray, alpha: float) -> np.ndarray:
    """Optimal kept elements per source unit ``e`` (int64, length ``n_src``, sum ``count``)."""
    ns, go, ni = layer.n_src, layer.group_out, layer.n_in
    cap = go * layer.k
    a, beta = alpha / count, (1.0 - alpha) / (ns + layer.n_dst)
    src = np.arange(ns)
    grp = src // ni
    # base items of each group: every source's first element and its other cap - 1
    val = np.r_[a * p_src + beta, a * p_src]
    cnt = np.r_[np.ones(ns, np.int64), np.full(ns, cap - 1, np.int64)]
    s2, g2, later = np.r_[src, src], np.r_[grp, grp], np.r_[np.zeros(ns, bool), np.ones(ns, bool)]
    order = np.lexsort((s2, -val, g2))
    val, cnt, s2, g2, later = val[order], cnt[order], s2[order], g2[order], later[order]
    cum = np.cumsum(cnt)
    start = np.r_[0, cum][np.searchsorted(g2, np.arange(layer.groups))]
    t = val[np.searchsorted(cum, start + go)]  # value of each group's go-th best item
    above = val > t[g2]
    tied = (val == t[g2]) & (cnt > 0)
    rest = go - np.bincount(g2, cnt * above, minlength=layer.groups)
    bonus = np.where(above, cnt, 0)
    bonus[tied] = _waterfill(g2[tied], later[tied].astype(np.int64), cnt[tied], rest)
    first_in = np.zeros(ns, np.int64)
    later_in = np.zeros(ns, np.int64)
    first_in[s2[~later]] = bonus[~later]
    later_in[s2[later]] = bonus[later]
    # runs after the group bonus: (value, count) per source, three each
    rv = np.r_[a * p_src + beta + beta * first_in, a * p_src + beta, a * p_src]
    rc = np.r_[np.ones(ns, np.int64), later_in, cap - 1 - later_in]
    rs = np.r_[src, src, src]
    order = np.lexsort((rs, -rv))
    rv, rc, rs = rv[order], rc[order], rs[order]
    cum = np.cumsum(rc)
    thr = rv[np.searchsorted(cum, count)]
    taken = np.bincount(rs, np.where(rv > thr, rc, 0), minlength=ns).astype(np.int64)
    room = np.bincount(rs, np.where(rv == thr, rc, 0), minlength=ns).astype(np.int64)
    on = np.flatnonzero(room)
    taken[on] += _waterfill(np.zeros(len(on), np.int64), taken[on], room[on],
                            np.array([count - int(taken.sum())]))
    return taken


def objective(layer, x: np.ndarray, count: int, p_src: np.ndarray, alpha: float) -> float:
    """The programme's objective at bundle counts ``x`` ``(n_dst, n_in)``."""
    e = x.reshape(layer.groups, layer.group_out, layer.n_in).sum(axis=1).ravel()  # per source unit
    active = np.count_nonzero(e) + np.count_nonzero(x.any(axis=1))
    beta = (1.0 - alpha) / (layer.n_src + layer.n_dst)
    return float(alpha / count * np.dot(p_src, e) + beta * active)


def bundle_counts(layer, e: np.ndarray, spread: bool = True) -> np.ndarray:
    """Kept elements per bundle ``(n_dst, n_in)`` from per-source counts ``e``.

    Each group must reach ``D_g = min(group_out, E_g)`` active destinations (``0`` when
    ``spread`` is false, i.e. when the programme gives active units no weight). Source ``u``
    uses ``n_u = ceil(e_u / k)`` bundles (whole kernels), more (up to ``min(e_u,
    group_out)``, lower source indices first) where the group's ``n_u`` sum to less than
    ``D_g``. Destinations go round-robin through the group's first
    ``max(D_g, max n_u)`` destinations: its first source starts at the first, each next
    source continues after the last destination of the one before. Each of ``u``'s
    bundles keeps one element, and the rest fill its bundles to ``k`` in order.
    """
    go, ni, k, G = layer.group_out, layer.n_in, layer.k, layer.groups
    e = np.asarray(e, np.int64)
    grp = np.arange(layer.n_src) // ni
    n = -(-e // k)
    need = np.minimum(go, e.reshape(G, ni).sum(axis=1)) if spread else np.zeros(G, np.int64)
    room = np.minimum(e, go) - n
    deficit = np.maximum(need - n.reshape(G, ni).sum(axis=1), 0)
    before = (np.cumsum(room) - room) - np.repeat((np.cumsum(room) - room)[::ni], ni)
    n += np.clip(deficit[grp] - before, 0, room)
    width = np.maximum(need, n.reshape(G, ni).max(axis=1))
    excl = np.cumsum(n) - n
    start = excl - excl[grp * ni]
    u = np.repeat(np.arange(layer.n_src), n)
    i = np.arange(len(u)) - np.repeat(excl, n)
    v = grp[u] * go + (start[u] + i) % width[grp[u]]
    x = np.zeros((layer.n_dst, ni), np.int64)
    x[v, u % ni] = 1 + np.clip((e - n)[u] - i * (k - 1), 0, k - 1)
    return x


def solve(layer, count: int, p_src: np.ndarray, alpha: float):
    """Bundle counts ``(n_dst, n_in)`` and info of NPB's programme, solved exactly."""
    x = bundle_counts(layer, element_counts(layer, count, p_src, alpha), spread=alpha < 1)
    return x, {"status": 0, "gap": 0.0, "objective": objective(layer, x, count, p_src, alpha)}
