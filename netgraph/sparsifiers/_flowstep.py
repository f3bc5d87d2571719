"""One pruning step of iterative SynFlow over every layer's state (:mod:`._flowprune`): the
bracket of the global threshold from a strided sample, the layers' walks, the exact threshold
from the candidates, ties kept in position order, the layers' updates."""

from __future__ import annotations

import math

import numpy as np

from ._workers import map_sized

#: Kept elements sampled (every kept element of every n-th bundle) to bracket each iteration's
#: threshold (a miss costs one more walk, on the miss's side).
SAMPLE_SIZE = 1 << 15
#: After a miss, the threshold's side of the bracket is bounded by a bracket this many times as
#: wide, from the same sample (a bundle's elements are sampled together, so their scores are
#: correlated and the binomial margin is sometimes too narrow: vgg16 misses about once in 100 iterations).
WIDER = 8.0


def _sample(states, cs, form: str, pool) -> tuple:
    """The scores of every kept element of every n-th tracked bundle (about :data:`SAMPLE_SIZE`;
    the layers' samples taken in ``pool``) and the number of kept elements."""
    valid = sum(s.kept for s in states)
    stride = max(1, valid // SAMPLE_SIZE)
    sizes = [s.m.size // stride for s in states]
    return np.concatenate(map_sized(pool, lambda sc: sc[0].sample(sc[1], stride, form), zip(states, cs), sizes)), valid


def _bracket(sample: np.ndarray, valid: int, keep_count: int, widen: float = 1.0):
    """A bracket ``(lo, hi)`` around the ``keep_count``-th largest score from ``sample`` (``widen``
    times the margin of 6 binomial standard deviations and 16 elements)."""
    n = sample.size
    if n == 0:
        return -np.inf, np.inf
    q = keep_count / valid * n
    margin = widen * (6.0 * math.sqrt(max(q * (1 - q / n), 1.0)) + 16)
    ia, ib = int(q + margin), int(q - margin)  # ranks in descending order: n - 1 - rank ascending
    kth = [n - 1 - i for i, ok in ((ia, q + margin < n - 1), (ib, q - margin >= 1)) if ok]
    part = np.partition(sample, kth) if kth else sample  # the order statistics of a full sort
    lo = part[n - 1 - ia] if q + margin < n - 1 else -np.inf
    hi = part[n - 1 - ib] if q - margin >= 1 else np.inf
    return lo, hi


def prune_step(states, cs, keep_count: int, form: str, pool) -> None:
    """Keep exactly ``keep_count`` elements overall (the top scores; ties by position).

    The walks run with the sampled bracket; after a miss, on the threshold's side of it (above
    ``hi``: ``(hi, wider hi)``; below ``lo``: ``(wider lo, lo)``), then unbounded, which always
    holds it. A layer's walk comes in parts (``(above, parts)``: the kept elements scoring above
    ``hi``, and the records of consecutive bundle ranges, each indexed from its own candidates),
    so a large layer walked in ranges is never copied into one set of records."""
    sample, valid = _sample(states, cs, form, pool)
    lo, hi = _bracket(sample, valid, keep_count)
    for attempt in range(3):
        walks = type(states[0]).walk_all(states, cs, lo, hi, form, pool)
        need = keep_count - sum(above for above, _ in walks)
        cand = np.concatenate([p["rs"] for _, parts in walks for p in parts])
        if 1 <= need <= cand.size:
            cand.partition(cand.size - need)  # (in place: a copy of every record's score less at the peak)
            tau = cand[cand.size - need]
            break
        if need == 0:
            tau = np.inf
            break
        if attempt == 1:  # missed twice
            lo, hi = -np.inf, np.inf
            continue
        wlo, whi = _bracket(sample, valid, keep_count, WIDER)
        if need < 0:  # more than keep_count score above hi: the threshold is above it
            lo, hi = hi, (whi if whi > hi else np.inf)
        else:  # fewer than keep_count score lo or more: the threshold is below it
            lo, hi = (wlo if wlo < lo else -np.inf), lo
    else:  # pragma: no cover - the unbounded bracket always holds the threshold
        raise RuntimeError("threshold selection failed")
    del cand  # (before the updates: not held at their peak)
    keeps = [[p["rs"] > tau for p in parts] for _, parts in walks]
    need -= sum(int(kp.sum()) for kps in keeps for kp in kps)
    for s, (_, parts), kps in zip(states, walks, keeps):  # ties at tau, in position order
        if need <= 0:
            break
        ties = [np.flatnonzero(p["rs"] == tau) for p in parts]
        if any(t.size for t in ties):
            which = np.repeat(np.arange(len(parts)), [t.size for t in ties])  # the part of each tie
            t = np.concatenate(ties)
            rank = np.concatenate([s.k - 1 - p["rp"][tp] for p, tp in zip(parts, ties)])  # 0 = largest |w|
            bundle = np.concatenate([s.bundle_ids(p["act"][p["ri"][tp]]) for p, tp in zip(parts, ties)])
            first = np.lexsort((bundle, rank))[:need]
            for j, kp in enumerate(kps):
                kp[t[first[which[first] == j]]] = True
            need -= first.size
    map_sized(pool, lambda a: a[0].apply_parts(a[1][1], a[2]), zip(states, walks, keeps),
              [sum(p["act"].size for p in w[1]) for w in walks])
