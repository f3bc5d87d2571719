"""PHEW's walk biases: the weight of an element in a walker's draw, and the draw of a kernel tap.

:func:`element_weights` gives every element's weight in the weights' dtype (the tap stage),
:func:`element_values` the float64 bundle totals of one-element bundles (the tables of linear
layers), :func:`tap_draws` the tap a walker takes inside its kernel (compiled on large graphs:
:mod:`._compiled`).
"""

from __future__ import annotations

import numpy as np

from .._numba import reads_in_place
from ..errors import InvalidInputError
from ..graph import Layer
from ._compiled import for_walkers

#: Walk biases. ``inverse`` is the paper's inverse variant, in two stages: the next unit with
#: probability proportional to 1 / (L1 norm of the kernel joining it), then a kernel tap
#: proportional to 1 / |w|. ``inverse_element`` weights every element by 1 / |w| in both
#: stages (the kernel stage then uses the sum of 1 / |w| over the kernel; this was ``inverse``
#: before 0.2). The two differ on conv layers only.
BIASES = ("magnitude", "uniform", "inverse", "inverse_element", "square")
#: Kernels of up to this many taps draw a tap from all their running sums kept at once (same sums).
TAPS_KEPT = 16


def reciprocal(a: np.ndarray) -> np.ndarray:
    """``1 / a`` where ``a > 0``, 0 elsewhere, in ``a``'s dtype: the inverse biases' weight of a
    magnitude ``a`` (an exact zero is never drawn)."""
    with np.errstate(divide="ignore"):
        return np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), 0.0)


def element_weights(layer: Layer, bias: str, w: np.ndarray | None = None) -> np.ndarray:
    """Unnormalised probability of each element, shape ``(n_dst, n_in, k)``.

    ``w`` (default: the layer's weights) may be any slice of them, e.g. the kernels of the
    bundles a batch of walkers chose: walks never need the whole layer's array.
    """
    w = layer.weight if w is None else w
    if bias == "magnitude":
        return np.abs(w)
    if bias == "square":
        return np.square(w)
    if bias == "uniform":
        return np.ones_like(w)
    if bias in ("inverse", "inverse_element"):  # the tap stage of both inverse variants: 1 / |w|
        return reciprocal(np.abs(w)).astype(w.dtype)
    raise InvalidInputError(f"unknown bias {bias!r}; accepted: {', '.join(BIASES)}")


def element_values(bias: str, w: np.ndarray) -> np.ndarray:
    """The float64 bundle totals of one-element bundles ``w`` (any shape), exactly as
    :func:`netgraph.sparsifiers.phew._bundle_totals` gives them for ``k == 1``."""
    if bias == "uniform":
        return np.ones(w.shape)
    if bias == "inverse_element":  # element weights in the weights' dtype, then float64
        return reciprocal(np.abs(w)).astype(w.dtype).astype(np.float64)
    x = w.astype(np.float64)
    if bias == "square":
        return np.square(x, out=x)
    a = np.abs(x, out=x)
    if bias == "magnitude":
        return a
    if bias == "inverse":  # 1 / (L1 norm of the one-element kernel)
        return reciprocal(a)
    raise ValueError(f"unknown bias {bias!r}")


def tap_draws(layer: Layer, bias: str, v: np.ndarray, j: np.ndarray, r: np.ndarray, kernels=None) -> np.ndarray:
    """The kernel tap each walker takes inside bundle ``(v, j)`` (``j``: input index inside
    ``v``'s group) of a layer of ``k > 1`` taps, proportional to ``bias(w)``, with uniform
    numbers ``r``: the first tap whose float64 running sum exceeds ``r`` times the kernel's
    total (at most the last); an all-zero kernel draws ``int(r * k)``. ``kernels``
    (:func:`._compiled.load_kernels`): the compiled draw, the same taps."""
    k = layer.k
    if bias == "uniform":
        return np.minimum((r * k).astype(np.int64), k - 1)
    K = for_walkers(kernels, v.size) if reads_in_place(layer.weight) else None
    if K is not None:  # (the kernels read each walker's kernel in place: a row of the weights)
        out = np.empty(v.size, np.int64)
        W = layer.weight.reshape(-1, k)
        K.taps(W, v.astype(np.int64) * layer.n_in + j, K.BIAS_CODES[bias], W.dtype.type(1), r, out)
        return out
    # tap-major (k, n): the running sums are k contiguous adds, the same sequential sums as a cumsum
    W = element_weights(layer, bias, np.ascontiguousarray(layer.weight[v, j].T))
    if k <= TAPS_KEPT:  # every running sum kept (k x n float64): one pass of adds, one of compares
        acc = np.empty((k, v.size))
        acc[0] = W[0]
        for c in range(1, k):
            np.add(acc[c - 1], W[c], out=acc[c])
        tot = acc[k - 1]
        below = acc <= r * tot
        t = below[0].astype(np.int64)
        for c in range(1, k):
            t += below[c]
    else:  # the total first, then the running sums again (no k x n temporary)
        tot = W[0].astype(np.float64)
        for c in range(1, k):
            tot += W[c]
        target = r * tot
        acc = W[0].astype(np.float64)
        t = (acc <= target).astype(np.int64)
        for c in range(1, k - 1):  # the last running sum is tot itself
            acc += W[c]
            t += acc <= target
        t += tot <= target
    empty = tot <= 0
    if empty.any():
        t[empty] = (r[empty] * k).astype(np.int64)
    return np.minimum(t, k - 1)
