"""The benchmark cases of issue 13: one function per case, run in a fresh process each.

Every case returns a flat dict of numbers. Time references are measured in the same run:
``autograd_pass`` is one forward + backward pass of the model (batch 1, all-ones input,
eval mode), the unit the issue counts in; SynFlow on vgg19 is compared with the original
algorithm, ``level="pixel"`` (autograd on the model, 100 iterations).
"""

from __future__ import annotations

import resource
import time



def rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _torchvision(name: str):
    import torch
    import torchvision

    torch.manual_seed(0)  # torchvision's initialisers draw from the global generator
    return getattr(torchvision.models, name)(weights=None)


def autograd_pass(model, shape, repeat: int = 3) -> float:
    """Seconds of one forward + backward pass (best of ``repeat``)."""
    import torch

    m = model.eval()
    x = torch.ones((1, *shape))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        m.zero_grad()
        m(x).sum().backward()
        best = min(best, time.perf_counter() - t)
    m.zero_grad(set_to_none=True)
    return best


def case_trace(name: str, px: int = 224) -> dict:
    import netgraph

    model = _torchvision(name)
    shape = (3, px, px)
    netgraph.from_torch(model, shape)  # warm-up: imports, torch.fx
    times = []
    for _ in range(3):
        t = time.perf_counter()
        g = netgraph.from_torch(model, shape)
        times.append(time.perf_counter() - t)
    return {"seconds": min(times), "weights": g.num_weights, "autograd_pass": autograd_pass(model, shape)}


def _vgg16_graph():
    import netgraph

    model = _torchvision("vgg16")
    g = netgraph.from_torch(model, (3, 224, 224))
    return model, g


#: Timed runs of a job within its case. The figure is the fastest (timeit's convention: this
#: shared machine's noise only ever adds time, up to 2x between runs of the same work); each
#: run is on a freshly traced graph (no cache carried over) and every run's seconds are kept.
REPEAT = 3


def fastest(job, graphs, repeat: int = REPEAT) -> tuple:
    """``(fastest seconds, every run's seconds, last result)`` of ``job(graph)``, which returns
    ``(seconds, result)``, on ``repeat`` graphs from ``graphs()``."""
    runs, out = [], None
    for _ in range(repeat):
        sec, out = job(graphs())
        runs.append(sec)
    return min(runs), runs, out


def _timed(fn, *args, **kwargs) -> tuple:
    """``(wall seconds, CPU seconds, fn(*args, **kwargs))``: CPU is what other processes' load leaves out."""
    t, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, time.process_time() - cpu, out


def case_phew_vgg16(density: float = 0.01) -> dict:
    import netgraph

    model, g = _vgg16_graph()
    before = rss_mib()
    first = [g]

    def job(g):
        sec, cpu, ms = _timed(netgraph.sparsify, g, "phew", density, seed=0)
        return sec, (cpu, ms)

    sec, runs, (cpu, ms) = fastest(job, lambda: first.pop() if first else netgraph.from_torch(model, (3, 224, 224)))
    return {"seconds": sec, "runs": runs, "cpu_seconds": cpu, "kept": ms.num_kept,
            "walks": ms.meta["details"]["walks"], "rss_before_mib": before, "weight_mib": g.num_weights * 4 / 2**20,
            "autograd_pass": autograd_pass(model, (3, 224, 224))}


def case_metrics_vgg16(density: float = 0.01) -> dict:
    import netgraph
    from analysis.summary import measure

    model = _torchvision("vgg16")

    def job(g):  # PHEW's mask (untimed), then every metric of it
        ms = netgraph.sparsify(g, "phew", density, seed=0)
        sec, cpu, _ = _timed(measure, g, ms)
        return sec, (g, ms, cpu)

    sec, runs, (g, ms, cpu) = fastest(job, lambda: netgraph.from_torch(model, (3, 224, 224)))
    t = time.perf_counter()
    measure(g, ms, max_flow=False)
    return {"seconds": sec, "runs": runs, "seconds_without_max_flow": time.perf_counter() - t, "cpu_seconds": cpu,
            "autograd_pass": autograd_pass(model, (3, 224, 224))}


def warm_synflow() -> None:
    """Import numba and load SynFlow's compiled kernels (compiled once per install, then read
    from numba's cache) on a tiny net with layers of multi-element (3x3) and one-element
    (linear) bundles, pruned until every layer has compacted twice, so that a timed SynFlow
    measures the pruning, not this one-time set-up (about a second when the cache is warm)."""
    import torch.nn as nn

    import netgraph

    net = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16),
                        nn.ReLU(), nn.Linear(16, 2))
    g = netgraph.from_torch(net, (2, 5, 5))
    for method in ("synflow", "synflow-l2"):
        netgraph.sparsify(g, method, 0.05, seed=0, iterations=6)


def _synflow_job(density: float, iterations: int, **opts):
    """A :func:`fastest` job: unit-level SynFlow of a graph, timed."""
    import netgraph

    def job(g):
        t = time.perf_counter()
        netgraph.sparsify(g, "synflow", density, seed=0, iterations=iterations, **opts)
        return time.perf_counter() - t, None

    return job


def case_synflow_vgg16(density: float = 0.01, iterations: int = 100) -> dict:
    """Unit-level SynFlow on torchvision's vgg16 at 224 px, fastest of two runs; :func:`warm_synflow`
    first (the compiled kernels' one-time load is not timed)."""
    import netgraph

    model, g = _vgg16_graph()
    warm_synflow()
    before = rss_mib()
    first = [g]
    sec, runs, _ = fastest(_synflow_job(density, iterations),
                           lambda: first.pop() if first else netgraph.from_torch(model, (3, 224, 224)), repeat=2)
    peak = rss_mib()  # before the reference pass, whose activations would count otherwise
    ref = autograd_pass(model, (3, 224, 224))
    wb = g.num_weights * 4 / 2**20
    return {"seconds": sec, "runs": runs, "autograd_pass": ref, "weight_mib": wb, "rss_before_mib": before,
            "peak_over_weights": peak / wb, "added_over_weights": (peak - before) / wb}


def _circular(model):
    import torch.nn as nn

    for mod in model.modules():
        if isinstance(mod, nn.Conv2d) and any(p > 0 for p in mod.padding):
            mod.padding_mode = "circular"
    return model


def case_synflow_vgg19(density: float = 0.01, iterations: int = 100) -> dict:
    """Unit-level SynFlow on vgg19 (CIFAR), fastest of three runs, against the original algorithm
    (``level="pixel"``, one run) in the same process; agreement measured on the circular-padding
    twin, where both are exact. :func:`warm_synflow` first (the compiled kernels' one-time load
    is not timed)."""
    import netgraph
    from netgraph import zoo

    shape = zoo.input_shape("vgg19")
    model = zoo.build("vgg19", seed=0)
    warm_synflow()
    unit, runs, _ = fastest(_synflow_job(density, iterations), lambda: netgraph.from_torch(model, shape))
    circ = _circular(zoo.build("vgg19", seed=0))
    gc = netgraph.from_torch(circ, shape)
    a = netgraph.sparsify(gc, "synflow", density, seed=0, iterations=iterations)
    t = time.perf_counter()
    b = netgraph.sparsify(circ, "synflow", density, seed=0, iterations=iterations, level="pixel", graph=gc)
    pixel = time.perf_counter() - t
    both = sum(int((a[p] & b[p]).sum()) for p in gc.param_names)
    return {"seconds": unit, "runs": runs, "pixel_seconds": pixel, "speedup": pixel / unit,
            "agreement": both / a.num_kept, "kept": a.num_kept}


def case_modern(name: str, density: float = 0.01, iterations: int = 100) -> dict:
    """Trace (best of two), PHEW and every metric of its mask (each the fastest of three runs),
    SynFlow (100 iterations, fastest of two) on a torchvision model at 224 px. Layers that
    torchvision initialises to zero (ViT's classifier) are redrawn, as in the modern study; models
    with off-path parameters above the density (ViT's query/key rows) prune them by magnitude
    (``offpath="magnitude"``). SynFlow's timing follows :func:`warm_synflow` (the compiled kernels'
    one-time load is not timed)."""
    import netgraph
    from analysis.experiments.modern import redraw_zero_layers
    from analysis.summary import measure

    model = _torchvision(name)
    redraw_zero_layers(model, 0)
    shape = (3, 224, 224)
    times = []
    for _ in range(2):  # the first trace also pays for one-time imports (torch.fx): best of two
        t = time.perf_counter()
        g = netgraph.from_torch(model, shape)
        times.append(time.perf_counter() - t)
    out = {"trace_seconds": min(times), "weights": g.num_weights}
    off = sum(int(e["numel"]) for e in g.offpath)
    opts = {"offpath": "magnitude"} if off > density * (g.num_weights + off) else {}
    first, graphs = [g], lambda: first.pop() if first else netgraph.from_torch(model, shape)

    def phew(g):
        sec, _, ms = _timed(netgraph.sparsify, g, "phew", density, seed=0, **opts)
        return sec, ms

    def metrics(g):  # PHEW's mask (untimed), then every metric of it
        ms = netgraph.sparsify(g, "phew", density, seed=0, **opts)
        sec, _, _ = _timed(measure, g, ms)
        return sec, None

    out["phew_seconds"], out["phew_runs"], _ = fastest(phew, graphs)
    out["metrics_seconds"], out["metrics_runs"], _ = fastest(metrics, graphs)
    warm_synflow()
    out["synflow_seconds"], out["synflow_runs"], _ = fastest(_synflow_job(density, iterations, **opts), graphs,
                                                             repeat=2)
    out["autograd_pass"] = autograd_pass(model, shape)
    out["offpath"] = opts.get("offpath", "dense")
    return out
