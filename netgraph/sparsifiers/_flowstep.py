"""One pruning step of iterative SynFlow over every layer's state (:mod:`._flowprune`): the
bracket of the global threshold from a strided sample, the layers' walks, the exact threshold
from the candidates, ties kept in position order, the layers' updates."""

from __future__ import annotations

import math

import numpy as np

from ._workers import map_sized

#: Kept elements sampled (every kept element of every n-th bundle) to bracket each iteration's
#: threshold (a miss only costs an exact second pass).
SAMPLE_SIZE = 1 << 15


def _bracket(states, cs, keep_count: int, form: str, pool):
    """A sampled bracket ``(lo, hi)`` around the ``keep_count``-th largest score (the layers'
    samples taken in ``pool``)."""
    valid = sum(s.kept for s in states)
    stride = max(1, valid // SAMPLE_SIZE)
    sizes = [s.m.size // stride for s in states]
    sample = np.concatenate(map_sized(pool, lambda sc: sc[0].sample(sc[1], stride, form), zip(states, cs), sizes))
    n = sample.size
    if n == 0:
        return -np.inf, np.inf
    q = keep_count / valid * n
    margin = 6.0 * math.sqrt(max(q * (1 - q / n), 1.0)) + 16
    ia, ib = int(q + margin), int(q - margin)  # ranks in descending order: n - 1 - rank ascending
    kth = [n - 1 - i for i, ok in ((ia, q + margin < n - 1), (ib, q - margin >= 1)) if ok]
    part = np.partition(sample, kth) if kth else sample  # the order statistics of a full sort
    lo = part[n - 1 - ia] if q + margin < n - 1 else -np.inf
    hi = part[n - 1 - ib] if q - margin >= 1 else np.inf
    return lo, hi


def prune_step(states, cs, keep_count: int, form: str, pool) -> None:
    """Keep exactly ``keep_count`` elements overall (the top scores; ties by position)."""
    for lo, hi in (_bracket(states, cs, keep_count, form, pool), (-np.inf, np.inf)):
        walks = type(states[0]).walk_all(states, cs, lo, hi, form, pool)
        need = keep_count - sum(w["above"] for w in walks)
        cand = np.concatenate([w["rs"] for w in walks])
        if 1 <= need <= cand.size:
            tau = np.partition(cand, cand.size - need)[cand.size - need]
            break
        if need == 0:
            tau = np.inf
            break
    else:  # pragma: no cover - the unbounded bracket always holds the threshold
        raise RuntimeError("threshold selection failed")
    keeps = [w["rs"] > tau for w in walks]
    need -= sum(int(kp.sum()) for kp in keeps)
    for s, w, kp in zip(states, walks, keeps):  # ties at tau, in position order
        if need <= 0:
            break
        t = np.flatnonzero(w["rs"] == tau)
        if t.size:
            rank = s.k - 1 - w["rp"][t]  # rank inside the bundle, 0 = largest |w|
            t = t[np.lexsort((s.bundle_ids(w["act"][w["ri"][t]]), rank))][:need]
            kp[t] = True
            need -= t.size
    map_sized(pool, lambda a: a[0].apply(a[1], a[2]), zip(states, walks, keeps), [w["act"].size for w in walks])
