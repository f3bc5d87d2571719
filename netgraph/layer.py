"""The edge bundles of one parameterised layer: :class:`Layer`.

A layer of a ``nn.Linear`` or ``nn.ConvNd`` connects the units of its source group to the
units of its destination group. The bundle of edge ``u -> v`` is the set of weight
elements joining them: the kernel ``W[v, j]`` of a conv, the single weight ``W[v, u]`` of a
linear layer, or, after a flatten, the ``k`` columns of the linear weight that read channel
``u``. Grouped and depthwise convolutions keep only their blocks (see
``docs/data-model.md``). The weights are stored as an array of shape ``(n_dst, n_in, k)``
that is a reshape of the parameter, so a mask of that shape reshapes straight to it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._numba import reads_in_place
from ._threads import workers
from .errors import InvalidInputError

#: Layers of at least this many weights sum their bundles over the threads when asked from the
#: main thread (vgg16's fc1: 0.22 s on one thread, 0.13-0.16 s on two).
PARALLEL_SUMS_FROM = 1 << 22
#: Whether this numpy adds a reduction without a cast in one pairwise summation, whatever its length (2.3
#: and later; before, a buffered reduction was cut into chunks of its buffer): where compiled sums that
#: follow numpy's order (:mod:`netgraph._sum_kernels`) give numpy's bits.
NUMPY_ONE_PAIRWISE = np.lib.NumpyVersion(np.__version__) >= "2.3.0"
#: numpy's buffer, in elements: a sum that casts (float32 weights summed in float64) is still added in
#: pieces of this many elements, the pieces' sums in order (numpy 2.4), so a longer float32 bundle keeps
#: numpy's own sums.
NUMPY_BUFFER = 8192


def _abs_sums_kernel(w: np.ndarray):
    """:func:`netgraph._sum_kernels.abs_sums` for weights it reads in place (C-contiguous float32 or
    float64), else None (numpy's sums); None too where numba cannot be imported, or numpy's order is
    another (:data:`NUMPY_ONE_PAIRWISE`; float32 bundles of more than :data:`NUMPY_BUFFER` elements)."""
    if not NUMPY_ONE_PAIRWISE or not reads_in_place(w):
        return None
    if w.dtype == np.float32 and w.shape[-1] > NUMPY_BUFFER:
        return None
    try:
        from ._sum_kernels import abs_sums
    except ImportError:
        return None
    return abs_sums


@dataclass(eq=False)
class Layer:
    """The edge bundles of one parameterised layer.

    Attributes
    ----------
    index : int
        Position among the graph's layers (topological order).
    name : str
        Qualified module name, as in ``model.named_modules()``.
    kind : {"conv", "linear"}
    param : str
        Name of the weight parameter, as in ``model.named_parameters()``.
    param_shape : tuple of int
        Shape of that parameter.
    src, dst : int
        Indices of the source and destination unit groups.
    weight : ndarray, shape (n_dst, n_in, k)
        The weights as bundles, a reshape of the parameter ``(C_out, C_in / groups, *kernel)``.
    in_scale, out_scale : ndarray or None
        Per-unit scales on the source side (length ``n_src``) and destination side
        (length ``n_dst``); ``None`` means all ones.
    groups : int
        Number of groups of a grouped conv (``in_channels`` for a depthwise conv, 1
        otherwise). Destination unit ``v`` reads only the ``n_in`` source units of its
        group, ``v // (n_dst / groups)``; the layer stores ``n_dst * n_in`` bundles, never
        a dense ``n_dst x n_src`` array.
    rows : tuple of int or None
        ``(start, stop)``: the layer is the row range ``param[start:stop]`` of its
        parameter (the value rows of a fused query/key/value projection; the other rows are
        off-path, see ``docs/data-model.md``); ``weight`` is a reshape of that range.
        ``None``: the whole parameter.
    """

    index: int
    name: str
    kind: str
    param: str
    param_shape: tuple
    src: int
    dst: int
    weight: np.ndarray
    in_scale: np.ndarray | None = None
    out_scale: np.ndarray | None = None
    groups: int = 1
    rows: tuple | None = None

    def __post_init__(self):
        g = int(self.groups)
        if g < 1 or self.weight.ndim != 3 or self.weight.shape[0] % g:
            raise InvalidInputError(
                f"layer {self.name!r}: {self.weight.shape[0] if self.weight.ndim else 0} destination units "
                f"cannot be split into groups={self.groups}"
            )
        self.groups = g
        if self.rows is not None:
            start, stop = (int(r) for r in self.rows)
            if not 0 <= start < stop <= self.param_shape[0]:
                raise InvalidInputError(f"layer {self.name!r}: rows {self.rows} outside {self.param_shape[0]} rows")
            self.rows = (start, stop)

    @property
    def rows_shape(self) -> tuple:
        """Shape of the layer's part of the parameter (``param_shape`` unless ``rows`` is set)."""
        if self.rows is None:
            return tuple(self.param_shape)
        return (self.rows[1] - self.rows[0], *self.param_shape[1:])

    def take(self, a):
        """The layer's rows of an array or tensor shaped like the whole parameter."""
        return a if self.rows is None else a[self.rows[0]:self.rows[1]]

    @property
    def n_dst(self) -> int:
        """Number of destination units."""
        return self.weight.shape[0]

    @property
    def n_in(self) -> int:
        """Number of source units each destination unit reads (``n_src / groups``)."""
        return self.weight.shape[1]

    @property
    def n_src(self) -> int:
        """Number of units of the source group (``n_in * groups``)."""
        return self.weight.shape[1] * self.groups

    @property
    def group_out(self) -> int:
        """Destination units per group (``n_dst / groups``)."""
        return self.weight.shape[0] // self.groups

    @property
    def num_bundles(self) -> int:
        """Number of ``(u, v)`` bundles: ``n_dst * n_in``."""
        return self.weight.shape[0] * self.weight.shape[1]

    @property
    def k(self) -> int:
        """Number of parameter elements in each edge bundle."""
        return self.weight.shape[2]

    @property
    def numel(self) -> int:
        return self.weight.size

    @cached_property
    def abs_sum(self) -> np.ndarray:
        """``sum |w|`` of each bundle, shape ``(n_dst, n_in)``, float64."""
        return self._bundle_sums(1)

    @cached_property
    def sq_sum(self) -> np.ndarray:
        """``sum w^2`` of each bundle, shape ``(n_dst, n_in)``, float64."""
        return self._bundle_sums(2)

    def sums(self, power: int, copy: bool = False, compiled: bool = False) -> np.ndarray:
        """:attr:`abs_sum` (``power=1``) or :attr:`sq_sum` (``power=2``) if cached, else the same
        values computed without filling the cache (for one-off readers: a 1B-weight graph keeps
        no 0.8 GB it won't reuse). Read only unless ``copy`` (then never the cache itself).
        ``compiled``: ``sum |w|`` of float32 or float64 weights by the compiled kernel
        (:mod:`netgraph._sum_kernels`, numba): the same sums bit for bit, several times faster;
        for callers that load numba anyway (PHEW on large graphs, SynFlow)."""
        cached = self.__dict__.get("abs_sum" if power == 1 else "sq_sum")
        if cached is None:
            return self._bundle_sums(power, compiled=compiled)
        return cached.copy() if copy else cached

    def fresh_sums(self, power: int, compiled: bool = False) -> np.ndarray:
        """:meth:`sums` as a new array (for callers that modify it, such as SynFlow's state)."""
        return self.sums(power, copy=True, compiled=compiled)

    def _bundle_sums(self, power: int, chunk: int = 1 << 16, compiled: bool = False) -> np.ndarray:
        """``sum |w|`` or ``sum w^2`` per bundle, by blocks of destination rows that stay in cache
        (``compiled``, ``power=1``: by the compiled kernel, numpy's sums in numpy's order, see
        :meth:`sums`). A one-element bundle's sum is the element itself (a float64 of a float32 is
        exact, so is its square): no reduction."""
        if self.k == 1:
            w = self.weight.reshape(self.weight.shape[:2]).astype(np.float64)
            return np.abs(w, out=w) if power == 1 else np.square(w, out=w)
        out = np.empty(self.weight.shape[:2])
        rows = max(1, chunk // max(1, self.n_in * self.k))
        kernel = _abs_sums_kernel(self.weight) if compiled and power == 1 else None

        def blocks(first, end):  # the blocks of rows from `first` (a multiple of `rows`) to `end`
            if kernel is not None:  # (one call: no GIL held)
                kernel(self.weight.reshape(-1), self.k, first * self.n_in, end * self.n_in, out.reshape(-1))
                return
            for s in range(first, end, rows):
                w = self.weight[s:min(s + rows, end)]
                if power == 1:
                    out[s:s + w.shape[0]] = np.abs(w).sum(axis=2, dtype=np.float64)
                else:
                    w = w.astype(np.float64)
                    out[s:s + w.shape[0]] = np.einsum("ijk,ijk->ij", w, w)

        n_blocks = -(-self.n_dst // rows)
        # over the threads from the main thread only: on a pool's thread (SynFlow's states, PHEW's tables) the pool
        # is the parallelism, and a pool in each of its threads would oversubscribe the cores
        main = threading.current_thread() is threading.main_thread()
        parts = min(workers(), n_blocks) if main and self.numel >= PARALLEL_SUMS_FROM else 1
        cuts = [min(self.n_dst, (n_blocks * i // parts) * rows) for i in range(parts + 1)]
        if parts < 2:
            blocks(0, self.n_dst)
        else:  # numpy's reductions release the GIL: the parts' blocks, the same as one thread's
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=parts) as pool:
                list(pool.map(blocks, cuts[:-1], cuts[1:]))
        return out

    def src_index(self) -> np.ndarray:
        """Source unit of every bundle: int array ``(n_dst, n_in)`` (cached, read-only).

        ``src_index()[v, j] = (v // group_out) * n_in + j``; for ``groups == 1`` every row
        is ``arange(n_src)``.

        Examples
        --------
        >>> import torch, netgraph
        >>> g = netgraph.from_torch(torch.nn.Sequential(torch.nn.Conv2d(4, 6, 1, groups=2)), (4, 3, 3))
        >>> g.layers[0].src_index().tolist()
        [[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [2, 3]]
        """
        idx = self.__dict__.get("_src_index")
        if idx is None:
            base = (np.arange(self.n_dst) // self.group_out) * self.n_in
            idx = base[:, None] + np.arange(self.n_in)[None, :]
            idx.flags.writeable = False
            self.__dict__["_src_index"] = idx
        return idx

    def nonzero_bundles(self, agg) -> tuple:
        """``(v, u, value)`` of the bundles whose aggregate ``agg`` is nonzero (``u``: the
        source unit): what per-bundle sums over a sparse mask need, in O(kept bundles)."""
        flat = np.asarray(agg).reshape(-1)
        nz = np.flatnonzero(flat)
        return *self.bundle_units(nz), flat[nz]

    def bundle_units(self, flat: np.ndarray) -> tuple:
        """``(v, u)`` of the bundles at flat indices ``flat`` of the ``(n_dst, n_in)`` bundle
        matrix: destination unit and source unit (:meth:`src_index` there), in ``flat``'s
        integer type."""
        v, j = np.divmod(flat, flat.dtype.type(self.n_in))
        return v, (j if self.groups == 1 else (v // self.group_out) * self.n_in + j)

    def gather(self, x: np.ndarray) -> np.ndarray:
        """Per-source-unit values ``x`` (length ``n_src``) laid out on the bundles.

        Returns an array broadcastable to ``(n_dst, n_in)`` whose entry ``[v, j]`` is
        ``x[src_index()[v, j]]`` (a ``(1, n_src)`` view when ``groups == 1``).
        """
        x = np.asarray(x)
        if self.groups == 1:
            return x[None, :]
        return np.repeat(x.reshape(self.groups, self.n_in), self.group_out, axis=0)

    def _blocks(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(self.groups, self.group_out, self.n_in)

    def push(self, agg: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Forward matrix-vector product: ``y[v] = sum_u agg[v, u] x[u]`` over this layer's bundles.

        ``agg`` has the shape of the bundle matrix (``weight.shape[:2]``), ``x`` one value
        per source unit; returns one value per destination unit. A grouped layer multiplies
        block by block (one einsum, no loop over groups).
        """
        if self.groups == 1:
            return agg @ x
        y = np.einsum("gdi,gi->gd", self._blocks(agg), x.reshape(self.groups, self.n_in))
        return y.reshape(self.n_dst)

    def pull(self, agg: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Backward product: ``x[u] = sum_v agg[v, u] y[v]`` (the transpose of :meth:`push`)."""
        if self.groups == 1:
            return agg.T @ y
        x = np.einsum("gdi,gd->gi", self._blocks(agg), y.reshape(self.groups, self.group_out))
        return x.reshape(self.n_src)

    def bundle_elements(self, v: int, u: int) -> tuple:
        """Indices into the parameter of the elements of bundle ``u -> v``.

        Returns a tuple of index arrays, usable as ``param[idx]``.

        Examples
        --------
        >>> import torch, netgraph
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(),
        ...                             torch.nn.Linear(3 * 4 * 4, 5))
        >>> g = netgraph.from_torch(model, (2, 6, 6))
        >>> conv, fc = g.layers
        >>> [len(i) for i in conv.bundle_elements(v=1, u=0)], conv.k
        ([9, 9, 9, 9], 9)
        >>> fc.bundle_elements(v=4, u=2)[1].tolist()  # columns reading channel 2
        [32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47]

        In a grouped conv, source unit ``u`` is input index ``u - group * n_in`` of the
        parameter:

        >>> dw = netgraph.from_torch(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=4)), (4, 5, 5)).layers[0]
        >>> [i.tolist() for i in dw.bundle_elements(v=5, u=2)][:2]
        [[5, 5, 5, 5, 5, 5, 5, 5, 5], [0, 0, 0, 0, 0, 0, 0, 0, 0]]
        """
        if not (0 <= v < self.n_dst and 0 <= u < self.n_src):
            raise IndexError(
                f"bundle ({u} -> {v}) outside layer {self.name!r} with {self.n_src} source "
                f"and {self.n_dst} destination units"
            )
        j = u - (v // self.group_out) * self.n_in
        if not 0 <= j < self.n_in:
            raise IndexError(
                f"no bundle ({u} -> {v}) in grouped layer {self.name!r} (groups={self.groups}): "
                f"unit {v} reads source units {u - j}..{u - j + self.n_in - 1}"
            )
        flat = (v * self.n_in + j) * self.k + np.arange(self.k)
        idx = np.unravel_index(flat, self.rows_shape)
        return idx if self.rows is None else (idx[0] + self.rows[0], *idx[1:])
