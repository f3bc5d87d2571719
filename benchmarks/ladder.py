"""The scale ladder: generated deep conv nets and wide MLPs of 1M to 1B weights.

Each (family, size, job) runs in a fresh process: build the model from a seeded generator,
trace it, run the job, report seconds and the process's peak resident memory (torch, the
model and the graph included) against the weight bytes. Jobs: ``trace`` (``from_torch``),
``phew`` (1%), ``synflow`` (100 iterations) and ``metrics`` (every metric of a PHEW 1% mask).
The growth exponent is the least-squares slope of log(seconds) against log(weights).
"""

from __future__ import annotations

import math
import time

import numpy as np

SIZES = (10**6, 10**7, 10**8, 10**9)
FAMILIES = ("conv", "mlp")
JOBS = ("trace", "phew", "synflow", "metrics")
CONV_DEPTH = 16
MLP_DEPTH = 4


def build(family: str, weights: int, seed: int = 0):
    """A network of about ``weights`` prunable weights and its input shape.

    ``conv``: 16 3x3 convs of equal width (ReLU) on an 8x8 map of 3 channels, global average
    pooling, a linear head of 10. ``mlp``: 4 hidden layers of equal width on a flattened
    3x32x32 input, a linear head of 10. Kaiming-uniform-like weights from a seeded
    generator, no bias; the global RNG is untouched.
    """
    import torch
    import torch.nn as nn

    if family == "conv":
        c = max(4, int(round(math.sqrt(weights / (9 * (CONV_DEPTH - 1))))))
        layers, cin = [], 3
        for _ in range(CONV_DEPTH):
            layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.ReLU()]
            cin = c
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10, bias=False))
        shape = (3, 8, 8)
    elif family == "mlp":
        d_in = 3 * 32 * 32
        h = max(4, int(round((-d_in + math.sqrt(d_in**2 + 4 * (MLP_DEPTH - 1) * weights)) / (2 * (MLP_DEPTH - 1)))))
        sizes = [d_in] + [h] * MLP_DEPTH + [10]
        layers = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b, bias=False))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        shape = (3, 32, 32)
    else:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            bound = math.sqrt(6.0 / (p[0].numel()))
            p.uniform_(-bound, bound, generator=gen)
    return model, shape


def run_job(family: str, weights: int, job: str, progress: bool = False) -> dict:
    """One ladder cell (call in a fresh process: the peak memory is the process's)."""
    import netgraph
    from cases import rss_mib

    import torch

    netgraph.from_torch(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)), (3, 4, 4))  # warm-up: torch.fx, fake tensors
    model, shape = build(family, weights)
    t = time.perf_counter()
    g = netgraph.from_torch(model, shape)
    out = {"weights": g.num_weights, "weight_mib": g.num_weights * 4 / 2**20}
    if job == "trace":
        out["seconds"] = time.perf_counter() - t
    elif job in ("phew", "synflow"):
        if job == "synflow":  # the compiled kernels' one-time load is not timed (as in the cases)
            from cases import warm_synflow

            warm_synflow()
        t = time.perf_counter()
        netgraph.sparsify(g, job, 0.01, seed=0, progress=progress)
        out["seconds"] = time.perf_counter() - t
    elif job == "metrics":
        from analysis.summary import measure

        ms = netgraph.sparsify(g, "phew", 0.01, seed=0, progress=progress)
        t = time.perf_counter()
        measure(g, ms)
        out["seconds"] = time.perf_counter() - t
    else:
        raise ValueError(f"unknown job {job!r}; known: {JOBS}")
    out["peak_mib"] = rss_mib()
    out["peak_over_weights"] = out["peak_mib"] / out["weight_mib"]
    return out


def growth_exponent(rows: list) -> float | None:
    """Least-squares slope of log(seconds) on log(weights) (None with fewer than 2 points)."""
    pts = [(r["weights"], r["seconds"]) for r in rows if r.get("seconds")]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([max(p[1], 1e-6) for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def plot(results: dict, path: str) -> None:
    """Time and peak memory against weights, log-log, one line per (family, job)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for family in FAMILIES:
        for job in JOBS:
            rows = sorted((r for r in results.values() if r.get("family") == family and r.get("job") == job
                           and "seconds" in r), key=lambda r: r["weights"])
            if not rows:
                continue
            w = [r["weights"] for r in rows]
            style = "-o" if family == "conv" else "--s"
            a1.loglog(w, [r["seconds"] for r in rows], style, label=f"{job} ({family})")
            a2.loglog(w, [r["peak_mib"] / 1024 for r in rows], style, label=f"{job} ({family})")
    ws = np.array([1e6, 1e9])
    a2.loglog(ws, 2.5 * 4 * ws / 2**30, "k:", label="2.5x weight bytes")
    a1.set(xlabel="prunable weights", ylabel="seconds", title="time")
    a2.set(xlabel="prunable weights", ylabel="peak resident memory (GiB)", title="peak memory (process)")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
