"""A compiled maximum flow (numba, without the GIL): Dinic's algorithm on an edge list.

:func:`max_flow_value` stands in for ``scipy.sparse.csgraph.maximum_flow`` in the max-flow
metrics (:func:`analysis.connectivity.min_vertex_cut`, :func:`analysis.paths.edge_disjoint_paths`).
Both run Dinic's algorithm, and a flow's value is an integer, so both give the same answer
(``tests/netgraph/test_maxflow.py``); what changes is the set-up. scipy takes a CSR matrix,
which costs a sort of the edge list, a conversion to CSC to find each edge's reverse and
copies of both: two thirds of its time on vgg16 at 1% (about a million unit edges), where
Dinic's phases take a few milliseconds. Here the residual graph is implicit: the edges stay
where they are, indexed by tail and by head (two counting sorts: an int32 position each),
with one flow counter an edge. Vertex ``v``'s residual arcs are its out-edges with spare
capacity, then its in-edges carrying flow (walked backwards).

A phase finds the shortest-path levels from the source by breadth-first search and then a
blocking flow of the level graph by depth-first search with a current-arc pointer per vertex
(each arc is passed over at most once a phase), retreating after an augmentation to the tail
of the first arc it saturated.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba import watch_compiles

watch_compiles()  # (the notice of a first compile: netgraph._numba)


@njit(cache=True, nogil=True)
def _index(n, key, order):
    """``start``, and ``order`` filled: the positions ``i`` with ``key[i] == v`` are
    ``order[start[v]:start[v + 1]]``, ascending (a counting sort)."""
    start = np.zeros(n + 1, np.int64)
    for i in range(key.size):
        start[key[i] + 1] += 1
    for v in range(n):
        start[v + 1] += start[v]
    pos = start[:n].copy()
    for i in range(key.size):
        order[pos[key[i]]] = i
        pos[key[i]] += 1
    return start


@njit(cache=True, nogil=True)
def _arc(v, j, src, dst, cap, flow, out_start, out_order, in_start, in_order):
    """Vertex ``v``'s ``j``-th arc as ``(edge, far end, residual capacity)``: out-edges first
    (spare capacity), then in-edges (their flow, the edge given as ``~edge``)."""
    p = out_start[v] + j
    if p < out_start[v + 1]:
        e = np.int64(out_order[p])
        return e, dst[e], cap[e] - flow[e]
    e = np.int64(in_order[in_start[v] + p - out_start[v + 1]])
    return ~e, src[e], flow[e]


@njit(cache=True, nogil=True)
def _degree(v, out_start, in_start, busy):
    """Vertex ``v``'s count of arcs: its in-edges only while one of them carries flow."""
    return out_start[v + 1] - out_start[v] + (in_start[v + 1] - in_start[v] if busy[v] else 0)


def max_flow_value(n: int, src: np.ndarray, dst: np.ndarray, cap: np.ndarray, s: int, t: int) -> int:
    """The value of a maximum flow from ``s`` to ``t`` in the graph of ``n`` vertices with edges
    ``src[i] -> dst[i]`` of integer capacities ``cap[i] >= 0`` (parallel edges add; each at most
    ``(2**62 - 1) / len(cap)``, so that no flow overflows int64). Other input raises ValueError.

    >>> e = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3]), np.array([2, 1, 1, 5])
    >>> max_flow_value(4, *e, 0, 3)
    2
    """
    arrays = [np.asarray(x) for x in (src, dst, cap)]
    if any(x.ndim != 1 or x.size != arrays[0].size or (x.size and x.dtype.kind not in "iu") for x in arrays):
        raise ValueError("max_flow_value takes three 1-d integer arrays of one length (tails, heads, capacities)")
    if not (0 <= s < n and 0 <= t < n):
        raise ValueError(f"source {s} and sink {t} must be vertices 0 to {n - 1}")
    src, dst, cap = arrays
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise ValueError(f"edge ends must be vertices 0 to {n - 1}")
    if cap.size and (cap.min() < 0 or cap.max() > (2**62 - 1) // cap.size):  # (no flow can overflow int64)
        raise ValueError("capacities must be >= 0, and their sum below 2**62")
    ix = np.int32 if src.size < 2**31 else np.int64
    src, dst, cap = (np.ascontiguousarray(x, np.int64) for x in (src, dst, cap))
    return int(_dinic(n, src, dst, cap, s, t, np.empty(src.size, ix), np.empty(src.size, ix)))


@njit(cache=True, nogil=True)
def _dinic(n, src, dst, cap, s, t, out_order, in_order):
    """:func:`max_flow_value` (``out_order``, ``in_order``: room for the edges' indexes by tail
    and by head). ``busy[v]`` counts ``v``'s in-edges carrying flow (none: they are not read)."""
    if s == t:
        return 0
    out_start = _index(n, src, out_order)
    in_start = _index(n, dst, in_order)
    flow = np.zeros(src.size, np.int64)
    busy = np.zeros(n, np.int64)
    level = np.empty(n, np.int64)
    queue = np.empty(n, np.int64)
    it = np.empty(n, np.int64)  # each vertex's current arc
    path = np.empty(n, np.int64)  # the arcs (edges, ~edge backwards) from s to the current vertex
    total = 0
    while True:
        level[:] = -1  # breadth-first levels from s, up to t's
        level[s] = 0
        queue[0] = s
        qa, qb = 0, 1
        while qa < qb and level[t] < 0:
            v = queue[qa]
            qa += 1
            for j in range(_degree(v, out_start, in_start, busy)):
                e, w, r = _arc(v, j, src, dst, cap, flow, out_start, out_order, in_start, in_order)
                if r > 0 and level[w] < 0:
                    level[w] = level[v] + 1
                    queue[qb] = w
                    qb += 1
        if level[t] < 0:
            return total
        it[:] = 0
        depth, v = 0, s
        while True:
            if v == t:  # augment by the path's bottleneck, then retreat to its first saturated arc
                f = np.int64(-1)
                for i in range(depth):
                    e = path[i]
                    r = cap[e] - flow[e] if e >= 0 else flow[~e]
                    f = r if f < 0 else min(f, r)
                first = -1
                for i in range(depth):
                    e = path[i]
                    p = e if e >= 0 else ~e
                    was = flow[p] > 0
                    flow[p] += f if e >= 0 else -f
                    busy[dst[p]] += (flow[p] > 0) - was
                    if first < 0 and (cap[p] - flow[p] if e >= 0 else flow[p]) == 0:
                        first = i
                total += f
                depth = first
                if first == 0:
                    v = s
                else:
                    e = path[first - 1]
                    v = dst[e] if e >= 0 else src[~e]
                continue
            found = False
            while it[v] < _degree(v, out_start, in_start, busy):
                e, w, r = _arc(v, it[v], src, dst, cap, flow, out_start, out_order, in_start, in_order)
                if r > 0 and level[w] == level[v] + 1:
                    path[depth] = e
                    depth += 1
                    v = w
                    found = True
                    break
                it[v] += 1
            if found:
                continue
            if depth == 0:  # the source is stuck: the phase's flow is blocking
                break
            level[v] = -1  # a dead end for this phase: retreat
            depth -= 1
            e = path[depth]
            v = src[e] if e >= 0 else dst[~e]
            it[v] += 1
