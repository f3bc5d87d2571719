r"""Spectral (Ramanujan) measures of each layer's bipartite unit graph.

Hoang, Liu, Marculescu and Wang ("Revisiting pruning at initialization through the lens of
Ramanujan graphs", ICLR 2023) read a sparse layer as a bipartite graph and ask how close
it is to a Ramanujan (optimal expander) graph. Per layer we build the **bi-adjacency**
``A`` of shape ``(n_dst, n_src)`` (destination units x source units):

* **unweighted, kernel-count form**: ``A[v, u] = kept(u, v) / k``, the fraction of the
  bundle's ``k`` elements that the mask keeps (a linear layer: the 0/1 mask; a conv: the
  kept fraction of the kernel ``W[v, u]``; a linear layer after a flatten: the kept
  fraction of the columns reading channel ``u``). A dense layer is the all-ones matrix, so
  ``mu1 = sqrt(n_src n_dst)`` and ``mu2 = 0``, the issue's sanity check.
* **weighted form**: ``A_w[v, u] = sum of kept |w|`` of the bundle.

A grouped or depthwise conv is block diagonal (only its blocks are stored); its singular
values are those of the blocks together.

From ``A`` (singular values ``mu1 >= mu2``, the largest two), with ``E = sum A`` the
(kernel-fractional) edge count, ``d_L = E / n_src`` and ``d_R = E / n_dst`` the mean degrees
of the two sides and ``d = 2E / (n_src + n_dst)`` the mean degree:

* ``ramanujan_gap = 2 sqrt(d - 1) - mu2`` (>= 0: the layer meets the Ramanujan bound for its
  mean degree),
* ``biregular_gap = sqrt(d_L - 1) + sqrt(d_R - 1) - mu2`` (the bound of a bi-regular
  bipartite Ramanujan graph),
* ``weighted_gap = 1 - mu2_w / mu1_w`` (relative spectral gap of the weighted
  bi-adjacency; 0 for an empty layer).

``sqrt(x - 1)`` is taken as 0 for ``x < 1``. The two largest singular values come from
ARPACK (``scipy.sparse.linalg.eigsh`` on the smaller Gram operator, then a Rayleigh-Ritz
step) for large or sparse layers (a sparse mask's layer as a CSR matrix of its kept
bundles; on graphs of :data:`COMPILED_FROM` weights or more a compiled Lanczos solver,
:mod:`netgraph._lanczos`, on the CSR matrices), a dense Gram matrix for medium ones and the
dense ``svdvals`` for small ones; all agree with a dense ``numpy.linalg.svd`` to 1e-9 of ``mu1`` (tested).

>>> import torch, netgraph
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 9), torch.nn.ReLU(), torch.nn.Linear(9, 2))
>>> rows = layer_spectra(netgraph.from_torch(model, (4,)))
>>> round(rows[0]["mu1"], 9), round(rows[0]["mu2"], 9)  # sqrt(4 * 9) and 0
(6.0, 0.0)
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from netgraph._blas import one_blas_thread
from netgraph._numba import LOAD_FROM
from netgraph._threads import workers
from netgraph.masked import as_masked, csr_rows

#: Layers whose smaller side has at most this many units use a dense Gram eigensolver.
DENSE_LIMIT = 48
#: Layers whose smaller side has at most this many units (and are not large and sparse)
#: use a dense Gram matrix; the others ARPACK.
GRAM_LIMIT = 1024
#: Sparse layers of at least this many bundles take ARPACK on CSR even with both sides
#: within :data:`GRAM_LIMIT` (ViT-B/16's 768 x 768 layers at 1%: 9 ms, the Gram route 36 ms).
SPARSE_ARPACK_FROM = 1 << 19
#: Graphs from which :func:`layer_spectra` takes the compiled Lanczos solver on CSR matrices: PHEW's threshold
#: for its compiled kernels (numba's import and first load, about 0.7 s a process, cost a smaller graph more).
COMPILED_FROM = LOAD_FROM
#: With it, layers of this many bundles or more, under half nonzero, take it on CSR (vgg16's 512 x 512 convs
#: at 1%, a third nonzero: 15-20 ms, the Gram route 28-35 ms).
COMPILED_SPARSE_FROM = 1 << 18
#: The compiled solver's basis size (ARPACK's ``ncv`` is 40: here 20 took as many products or
#: fewer on vgg16's classifier at 1%, each cheaper to orthogonalise).
LANCZOS_NCV = 20
#: Products after which the compiled solver gives up and ARPACK runs instead.
LANCZOS_PRODUCTS = 5000


def bi_adjacency(layer, agg: np.ndarray, fmt: str = "csr"):
    """The ``(n_dst, n_src)`` bi-adjacency of a layer from its bundle matrix ``agg``.

    ``agg`` has the layer's bundle shape ``(n_dst, n_in)``; grouped convs are placed
    block-diagonally with :meth:`netgraph.Layer.src_index`. Returns a ``scipy.sparse``
    matrix (``fmt``) or, with ``fmt="dense"``, an ndarray.

    Examples
    --------
    >>> import torch, netgraph
    >>> dw = netgraph.from_torch(torch.nn.Sequential(torch.nn.Conv2d(2, 4, 1, groups=2)), (2, 3, 3)).layers[0]
    >>> bi_adjacency(dw, np.ones((4, 1)), fmt="dense").tolist()
    [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    """
    if layer.groups == 1:
        return np.asarray(agg, dtype=np.float64) if fmt == "dense" else sp.csr_matrix(agg).asformat(fmt)
    rows = np.repeat(np.arange(layer.n_dst), layer.n_in)
    cols = layer.src_index().ravel()
    m = sp.csr_matrix((np.asarray(agg, dtype=np.float64).ravel(), (rows, cols)), shape=(layer.n_dst, layer.n_src))
    return m.toarray() if fmt == "dense" else m.asformat(fmt)


def _large_sparse(shape, nnz: int, compiled: bool = False) -> bool:
    size = shape[0] * shape[1]
    return (compiled and size >= COMPILED_SPARSE_FROM and nnz < 0.5 * size) or (
        nnz < 0.25 * size and (max(shape) > GRAM_LIMIT or size >= SPARSE_ARPACK_FROM))


def _sparse_route(shape, groups: int, nnz: int, k: int, compiled: bool = False) -> bool:
    """Whether :func:`top_singular_values` takes ARPACK on a CSR matrix: a layer with
    ``groups == 1``, both sides above :data:`DENSE_LIMIT`, under a quarter of its bundles
    nonzero and large (a side above :data:`GRAM_LIMIT` or :data:`SPARSE_ARPACK_FROM`
    bundles; with the compiled solver, :data:`COMPILED_SPARSE_FROM` under half): O(kept bundles) a product."""
    return groups == 1 and min(shape) > max(DENSE_LIMIT, k + 1) and nnz > 0 and _large_sparse(shape, nnz, compiled)


def _csr(shape, nonzero: np.ndarray, vals: np.ndarray):
    """The CSR matrix of ``shape`` holding ``vals`` at the ascending flat indices ``nonzero``
    (zeros dropped)."""
    live = vals != 0
    rows, cols = np.divmod(nonzero[live], shape[1])
    return csr_rows(rows, cols, vals[live].astype(np.float64), shape)


def top_singular_values(layer, agg, k: int = 2, compiled: bool = False) -> np.ndarray:
    """The ``k`` largest singular values (descending) of the layer's bi-adjacency.

    Layers with a small side (at most :data:`DENSE_LIMIT` units) use the dense
    ``scipy.linalg.svdvals`` (backward stable: absolute error about ``1e-16 * mu1``);
    medium ones the top eigenvectors of the dense smaller Gram matrix (``eigh`` with
    ``subset_by_index``); large ones, or large sparse ones (under a quarter of the bundles
    nonzero, see :data:`SPARSE_ARPACK_FROM`), ARPACK (``scipy.sparse.linalg.eigsh``) on the
    smaller Gram operator (CSR when sparse). The last two finish with a
    Rayleigh-Ritz step (singular values of ``A V``), accurate to about ``1e-15 * mu1``. Grouped layers take the SVD of all
    blocks at once (batched ``numpy.linalg.svd``). Missing values (fewer than ``k`` units) are 0.
    ``agg`` may also be given as a ``scipy.sparse`` matrix (a large sparse ungrouped layer built
    from a mask's kept bundles, :func:`_layer_inputs`): ARPACK on it, the run the dense matrix
    of the same values takes, so the same values bit for bit. ``compiled=True`` takes the compiled
    Lanczos solver (:mod:`netgraph._lanczos`) instead of ARPACK on sparse matrices: the same
    stopping rule and final step, so the same values to about ``1e-15 * mu1``, in a fraction of
    the time and without the GIL (what :func:`layer_spectra` does on large graphs).
    """
    out = np.zeros(k)
    route = _route(layer, agg, k, compiled)
    if route == "zero":
        return out
    if route == "arpack-csr":
        out[:] = _top_sv_arpack(agg, k, compiled)
        return out
    agg = np.asarray(agg, dtype=np.float64)
    if route == "constant":  # a dense layer: rank one, exactly
        out[0] = abs(agg.flat[0]) * np.sqrt(agg.shape[0] * agg.shape[1])
    elif route == "blocks":  # block diagonal: the union of the blocks' spectra
        blocks = agg.reshape(layer.groups, layer.group_out, layer.n_in)
        sv = np.sort(np.linalg.svd(blocks, compute_uv=False).ravel())[::-1][:k]
        out[: sv.size] = sv
    elif route == "svd":
        sv = scipy.linalg.svdvals(agg, check_finite=False)[:k]
        out[: sv.size] = sv
    elif route == "gram":
        out[:] = _top_sv_gram(agg, k)
    else:
        out[:] = _top_sv_arpack(sp.csr_matrix(agg) if route == "arpack-sparse" else agg, k, compiled)
    return out


def _route(layer, agg, k: int, compiled: bool = False) -> str:
    """How :func:`top_singular_values` computes ``agg``'s values: ``"zero"`` (no nonzero),
    ``"constant"`` (a dense layer, rank one), ``"blocks"`` (grouped: batched SVD of the blocks),
    ``"svd"`` (a small side), ``"gram"`` (the dense Gram matrix), or ARPACK on a CSR matrix
    (``"arpack-csr"`` when given as one, ``"arpack-sparse"`` when a dense ``agg`` is under a
    quarter nonzero) or on the dense matrix (``"arpack-dense"``)."""
    if sp.issparse(agg):
        return "arpack-csr" if agg.nnz else "zero"
    agg = np.asarray(agg)
    if not agg.any():
        return "zero"
    if layer.groups > 1:
        return "blocks"
    if (agg == agg.flat[0]).all():
        return "constant"
    if min(agg.shape) <= max(DENSE_LIMIT, k + 1):
        return "svd"
    sparse = _large_sparse(agg.shape, np.count_nonzero(agg), compiled)
    if min(agg.shape) <= GRAM_LIMIT and not sparse:
        return "gram"
    return "arpack-sparse" if sparse else "arpack-dense"


def _top_sv_gram(a: np.ndarray, k: int) -> np.ndarray:
    """Top ``k`` singular values from the top eigenvectors of the smaller Gram matrix
    (``scipy.linalg.eigh`` with ``subset_by_index``), then Rayleigh-Ritz on ``a``."""
    right = a.shape[1] <= a.shape[0]
    gram = a.T @ a if right else a @ a.T
    n = gram.shape[0]
    _, vecs = scipy.linalg.eigh(gram, subset_by_index=[n - k, n - 1], check_finite=False)
    return scipy.linalg.svdvals(a @ vecs if right else a.T @ vecs)[:k]


def _top_sv_arpack(mat, k: int, compiled: bool = False) -> np.ndarray:
    """Top ``k`` singular values: ARPACK on the smaller Gram operator, then Rayleigh-Ritz.

    ``eigsh`` finds the top right (or left) singular subspace ``V``; the singular values
    of ``mat @ V`` are then accurate to about ``1e-15 * mu1`` even when ``mu2`` is 0 (a
    square root of Gram eigenvalues would only give ``1e-8 * mu1`` there). With ``compiled``,
    a sparse ``mat`` (as CSR) takes :func:`netgraph._lanczos.gram_top` instead of ``eigsh``
    (ARPACK when it has not met the rule within :data:`LANCZOS_PRODUCTS` products, or when ``k``
    is not below its basis size).
    """
    m, n = mat.shape
    right = n <= m
    size = n if right else m
    # a CSR matrix and its transpose made once as CSR: ``mat.T`` per product costs as much again
    # (a CSC view each call); the sums run in the same order, so the same values bit for bit
    a, at = (mat, mat.T.tocsr()) if sp.issparse(mat) else (mat, mat.T)
    v0 = np.random.default_rng(0).standard_normal(size)  # fixed start: same answer every run
    # tol 1e-10 on the Gram residual bounds the error of each singular value by 0.5e-10 of itself
    # (|theta - lambda| <= ||r|| <= tol theta); the Rayleigh-Ritz step then does far better
    vecs = None
    if compiled and sp.issparse(mat) and k < min(size, LANCZOS_NCV):
        from netgraph import _lanczos

        rows = (a if right else at).tocsr()  # G = rows^T rows
        # scaled by a power of two (exact) so that the largest entry lies in [0.5, 1): the stopping
        # rule's floor and the norms' squares then neither under- nor overflow at any scale
        peak = np.abs(rows.data).max() if rows.nnz else 0.0
        data = np.ldexp(rows.data.astype(np.float64, copy=False), -np.frexp(peak)[1]) if peak > 0 else rows.data
        found, ok, _ = _lanczos.gram_top(rows.indptr, rows.indices, data, v0, k, min(size, LANCZOS_NCV),
                                         1e-10, LANCZOS_PRODUCTS)
        vecs = found.T if ok else None
    if vecs is None:
        if right:
            gram = spla.LinearOperator((n, n), matvec=lambda x: at @ (a @ x), dtype=np.float64)
        else:
            gram = spla.LinearOperator((m, m), matvec=lambda x: a @ (at @ x), dtype=np.float64)
        _, vecs = spla.eigsh(gram, k=k, which="LA", v0=v0, ncv=min(size, 40), tol=1e-10)
    proj = a @ vecs if right else at @ vecs
    return scipy.linalg.svdvals(np.asarray(proj))[:k]


def _half_bound(d: float) -> float:
    return math.sqrt(d - 1.0) if d > 1.0 else 0.0


def _fractions(layer, count: np.ndarray) -> np.ndarray:
    """The kept kernel fractions ``count / k`` (the count itself for one-element bundles)."""
    return count if layer.k == 1 else count / layer.k


def layer_spectrum(layer, count: np.ndarray, abs_sum: np.ndarray, sv=None, fractions=None, edges=None) -> dict:
    """Spectral measures of one layer from its kept-count and ``sum |w|`` bundle matrices.

    ``sv`` (optional) are the precomputed top-2 singular values ``((mu1, mu2), (w1, w2))``;
    ``fractions`` (optional) the precomputed ``count / layer.k``; ``edges`` (optional, with
    ``sv``) the sum of the fractions, in which case ``count`` and ``abs_sum`` are not read.
    """
    if edges is None or sv is None:
        a = _fractions(layer, count) if fractions is None else fractions
        (mu1, mu2), (w1, w2) = sv if sv is not None else (top_singular_values(layer, a),
                                                          top_singular_values(layer, abs_sum))
        E = float(a.sum())
    else:
        (mu1, mu2), (w1, w2) = sv
        E = float(edges)
    dl, dr = E / layer.n_src, E / layer.n_dst
    d = 2.0 * E / (layer.n_src + layer.n_dst)
    ram = 2.0 * _half_bound(d)
    bireg = _half_bound(dl) + _half_bound(dr)
    return {
        "layer": layer.name, "n_src": layer.n_src, "n_dst": layer.n_dst, "edges": E,
        "d_left": dl, "d_right": dr, "d_avg": d, "mu1": float(mu1), "mu2": float(mu2),
        "ramanujan_bound": ram, "ramanujan_gap": ram - float(mu2),
        "biregular_bound": bireg, "biregular_gap": bireg - float(mu2),
        "mu1_w": float(w1), "mu2_w": float(w2),
        "weighted_gap": 0.0 if w1 <= 0 else 1.0 - float(w2) / float(w1),
    }


def _layer_inputs(mg, layer) -> tuple:
    """``(fractions, abs_sum, edges)`` of one layer for :func:`layer_spectra`: the two
    matrices as CSR when the layer is sparse (kept indices) and takes the CSR route (built
    from the kept bundles, no dense aggregate), else the dense aggregates."""
    idx, compiled = None if mg.dense else mg.kept()[layer.index], _compiled(mg.graph)
    if idx is not None and layer.groups == 1:
        nz = mg.kept_bundles(layer)[2]
        f, a = mg.bundle_values("count", layer), mg.bundle_values("abs", layer)
        f = _fractions(layer, f)
        shape = layer.weight.shape[:2]
        if _sparse_route(shape, 1, nz.size, 2, compiled):
            return (_csr(shape, nz, f), _csr(shape, nz, a) if _sparse_route(shape, 1, np.count_nonzero(a), 2, compiled)
                    else mg.aggregate("abs", layer), float(f.sum()))
    f = _fractions(layer, mg.aggregate("count", layer))
    return f, mg.aggregate("abs", layer), float(f.sum())


def layer_spectra(graph, masks=None) -> list:
    """Per-layer spectral measures of a mask (one dict per layer, in layer order).

    Keys: ``layer``, ``n_src``, ``n_dst``, ``edges`` (sum of kept kernel fractions),
    ``d_left``, ``d_right``, ``d_avg``, ``mu1``, ``mu2``, ``ramanujan_bound``,
    ``ramanujan_gap``, ``biregular_bound``, ``biregular_gap``, ``mu1_w``, ``mu2_w``,
    ``weighted_gap`` (definitions in the module docstring). Cached on the masked graph.

    Examples
    --------
    >>> import torch, netgraph
    >>> g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), (3, 5, 5))
    >>> r = layer_spectra(g)[0]
    >>> round(r["mu1"] ** 2), r["d_left"], r["d_right"]  # dense: mu1^2 = 3 * 4
    (12, 4.0, 3.0)
    """
    mg = as_masked(graph, masks)

    def compute():
        with one_blas_thread():
            return mg.cached(_STARTED, lambda: _Solves(graph, mg)).rows()

    return mg.cached("analysis.spectral", compute)


_STARTED = "analysis.spectral.started"


def _compiled(graph) -> bool:
    """Whether :func:`layer_spectra` takes the compiled solver: a graph of :data:`COMPILED_FROM` weights or more."""
    return graph.num_weights >= COMPILED_FROM


def _all_on_pool(graph) -> bool:
    """Whether every solve of :func:`layer_spectra` runs on the pool: the compiled solver, two threads or more."""
    return _compiled(graph) and workers() > 1


class _Solves:
    """The top singular values of every layer's two matrices (:func:`layer_spectra`), being found.

    On a pool of every thread but the caller's, each layer's two as soon as its matrices are made,
    the layers with the most bundles first, while the caller makes the others (then the metric
    table's other metrics); :meth:`rows` collects them and solves itself those not begun (the
    smallest): never more solves at once than threads. LAPACK, BLAS and the compiled solver (large
    graphs) hold no GIL; ARPACK's short steps on CSR do, so two on two threads wait on each other
    (ViT-B/16 at 1%: 2.6-3.1 s, 1.2 s on one): without the compiled solver those run in
    :meth:`rows`. One BLAS thread per worker (the caller's ``one_blas_thread``, held until
    :meth:`close` returns: vgg16 took 3 to 37 s instead of 0.3 s on 2 busy cores with threaded
    BLAS). Kept in the masked graph's cache until collected or closed (a failed solve is not kept:
    the next call solves again).
    """

    def __init__(self, graph, mg):
        self.graph, self.mg = graph, mg
        self.compiled, threads = _compiled(graph), workers()
        self.inputs, self.futures, self.here = [None] * len(graph.layers), {}, []
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads - 1))  # (the caller solves too: rows())
        try:  # each layer's solves start once its matrices are made, the layers with the most bundles first
            for layer in sorted(graph.layers, key=lambda l: -l.n_src * l.n_dst):
                self.inputs[layer.index] = _layer_inputs(mg, layer)
                for i in (2 * layer.index, 2 * layer.index + 1):
                    if threads < 2 or (sp.issparse(self._job(i)[1]) and not self.compiled):  # (ARPACK: rows())
                        self.here.append(i)
                    else:
                        self.futures[i] = self.pool.submit(top_singular_values, *self._job(i), 2, self.compiled)
        except BaseException:  # (no solve outlives a failed start: the caller's BLAS limit ends with it)
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise

    def _job(self, i: int) -> tuple:
        """``(layer, matrix)`` of solve ``i``: layer ``i // 2``'s fractions (even) or ``sum |w|``."""
        return self.graph.layers[i // 2], self.inputs[i // 2][i % 2]

    def rows(self) -> list:
        """:func:`layer_spectra`'s rows: the pool's solves collected (then closed, the inputs let go)."""
        try:
            done = {i: top_singular_values(*self._job(i), 2, self.compiled) for i in self.here}
            for i, f in reversed(self.futures.items()):  # the smallest last: those not begun are solved here
                done[i] = top_singular_values(*self._job(i), 2, self.compiled) if f.cancel() else f.result()
        finally:
            self.close()
        return [layer_spectrum(layer, None, None, (done[2 * i], done[2 * i + 1]), edges=E)
                for i, (layer, (_, _, E)) in enumerate(zip(self.graph.layers, self.inputs))]

    def close(self) -> None:
        """Drop the solves not begun, wait for the running ones (under the caller's BLAS limit) and
        leave the masked graph's cache: a later :func:`layer_spectra` solves afresh."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.mg.drop(_STARTED)


def start_layer_spectra(graph, masks=None):
    """Start :func:`layer_spectra`'s solves where all run on the pool (:func:`_all_on_pool`) and
    return them, else None: the metric table computes its other metrics meanwhile, and
    :func:`layer_spectra` collects them (the same values). Its caller holds one BLAS thread
    (``netgraph._blas.one_blas_thread``) until they are collected or it calls their ``close()``."""
    mg = as_masked(graph, masks)
    if not _all_on_pool(graph) or mg.has("analysis.spectral"):
        return None
    return mg.cached(_STARTED, lambda: _Solves(graph, mg))


def spectral_summary(graph, masks=None) -> dict:
    """Net-level summaries of :func:`layer_spectra` (the metric table's entries).

    ``ramanujan_gap_mean`` / ``ramanujan_gap_min`` (over layers), ``biregular_gap_mean``,
    ``weighted_gap_mean``, ``ramanujan_layers`` (fraction of layers with
    ``ramanujan_gap >= 0``). An empty layer (no kept weight) is no expander: it does not
    meet the bound (``mu2 = 0`` equals its bound 0 only vacuously) and its gaps, undefined,
    are left out of the means and the minimum (NaN when every layer is empty).
    """
    rows = layer_spectra(graph, masks)
    kept = np.array([r["edges"] > 0 for r in rows])
    ram = np.array([r["ramanujan_gap"] for r in rows])

    def over_kept(key, reduce=np.mean):
        vals = np.array([r[key] for r in rows])[kept]
        return float(reduce(vals)) if vals.size else math.nan

    return {
        "ramanujan_gap_mean": over_kept("ramanujan_gap"),
        "ramanujan_gap_min": over_kept("ramanujan_gap", np.min),
        "biregular_gap_mean": over_kept("biregular_gap"),
        "weighted_gap_mean": over_kept("weighted_gap"),
        "ramanujan_layers": float(np.mean(kept & (ram >= 0))),
    }
