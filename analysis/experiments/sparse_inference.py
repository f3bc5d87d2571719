"""Inference time and weight memory of :func:`netgraph.export.to_sparse` against dense.

>>> rows = sparse_inference_table(sizes=(32, 16, 4), densities=(0.1,), batch=4, repeats=2)
>>> sorted(rows[0])[:3]
['batch', 'dense_bytes', 'dense_ms']
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from netgraph import export
from netgraph.masks import MaskSet


def _mlp(sizes, seed):
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen) / a ** 0.5)
            lin.bias.zero_()
        layers += [lin, nn.ReLU()] if i < len(sizes) - 2 else [lin]
    return nn.Sequential(*layers)


def _bytes(model) -> int:
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.layout == torch.sparse_csr:
            total += sum(x.numel() * x.element_size() for x in (t.values(), t.col_indices(), t.crow_indices()))
        else:
            total += t.numel() * t.element_size()
    return total


def _time(model, x, repeats) -> float:
    with torch.no_grad():
        model(x)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
    return best


def sparse_inference_table(sizes=(784, 4096, 4096, 10), densities=(0.1, 0.01, 0.001), batch: int = 64,
                           repeats: int = 20, seed: int = 0) -> list:
    """One row per density: best-of-``repeats`` forward time and weight bytes, dense vs sparse.

    Every linear weight of an MLP of ``sizes`` keeps a uniformly random ``density``
    fraction (seeded); the dense model multiplies the masked weights, the sparse one
    (:func:`~netgraph.export.to_sparse`) CSR weights. Bytes count parameters and buffers
    (CSR: values, column indices and row pointers).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, sizes[0], generator=gen)
    rows = []
    for d in densities:
        model = _mlp(sizes, seed)
        masks = MaskSet({n: torch.rand(p.shape, generator=gen) < d
                         for n, p in model.named_parameters() if n.endswith("weight")})
        masks.apply(model, how="multiply")
        sparse = export.to_sparse(model)
        td, ts = _time(model, x, repeats), _time(sparse, x, repeats)
        rows.append({"density": d, "batch": batch, "dense_ms": 1e3 * td, "sparse_ms": 1e3 * ts,
                     "speedup": td / ts, "dense_bytes": _bytes(model), "sparse_bytes": _bytes(sparse),
                     "max_abs_diff": _diff(model, sparse, x)})
    return rows


def _diff(a, b, x) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())
