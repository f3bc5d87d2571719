"""Performance benchmarks; results go to docs/benchmarks.md and benchmarks/results.json.

Each case runs in its own Python process so that its peak memory (ru_maxrss) is its own.
Targets come from the issues; the reference numbers of the authors' code and of
Synaptic-Flow were measured on this kind of machine (2 cores) and are quoted from
DESIGN.md.

    python benchmarks/run.py               # all cases
    python benchmarks/run.py --only phew   # cases whose name contains "phew"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _graph(name):
    import netgraph
    from netgraph import zoo

    model = zoo.build(name, seed=0)
    t = time.perf_counter()
    g = netgraph.from_torch(model, zoo.input_shape(name))
    return model, g, time.perf_counter() - t


def case_graph(name):
    _graph(name)  # warm-up: imports, torch.fx
    times = [_graph(name)[2] for _ in range(3)]
    return {"seconds": min(times)}


def case_phew(name, density):
    import netgraph

    _, g, _ = _graph(name)
    t = time.perf_counter()
    ms = netgraph.sparsify(g, "phew", density, seed=0)
    return {"seconds": time.perf_counter() - t, "kept": ms.num_kept, "target": ms.meta["target"],
            "walks": ms.meta["details"]["walks"]}


def case_synflow_vs_autograd(name, density):
    import torch

    import netgraph

    model, g, _ = _graph(name)
    t = time.perf_counter()
    ms = netgraph.sparsify(g, "synflow", density, seed=0, iterations=100)
    ours = time.perf_counter() - t
    from netgraph.zoo import input_shape

    m = model.eval()
    x = torch.ones((1, *input_shape(name)))
    t = time.perf_counter()
    for _ in range(100):
        m.zero_grad()
        m(x).sum().backward()
    autograd = time.perf_counter() - t
    return {"seconds": ours, "autograd_100_passes": autograd, "ratio": autograd / ours, "kept": ms.num_kept}


def case_metrics(name, density):
    import analysis
    import netgraph

    _, g, _ = _graph(name)
    out = {}
    for method in ("phew", "random"):
        ms = netgraph.sparsify(g, method, density, seed=0)
        t = time.perf_counter()
        analysis.measure(g, ms)
        out[f"{method}_seconds"] = time.perf_counter() - t
    out["seconds"] = max(out.values())
    return out


def case_sweep_throughput():
    import tempfile

    from analysis.experiments.sweep import load_config, run_sweep

    cfg = load_config({"name": "throughput", "models": ["resnet20"],
                       "methods": ["phew", "synflow", "synflow-l2", "random", "magnitude"],
                       "densities": [0.1, 0.05, 0.02, 0.01, 0.005], "seeds": 8, "save_masks": False})
    times = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            res = run_sweep(cfg, d, workers=workers, report=False)
            times[workers] = time.perf_counter() - t
            assert res.done == 200, res
    return {"seconds": times[2], "seconds_1_worker": times[1], "speedup": times[1] / times[2], "runs": 200}


CASES = {
    "graph vgg19": (case_graph, ("vgg19",), "build the unit DAG", 2.0),
    "graph resnet20": (case_graph, ("resnet20",), "build the unit DAG", None),
    "graph resnet18": (case_graph, ("resnet18",), "build the unit DAG", None),
    "phew vgg19 1%": (case_phew, ("vgg19", 0.01), "PHEW mask (authors' code: 272.7 s)", 1.0),
    "phew vgg19 10%": (case_phew, ("vgg19", 0.1), "PHEW mask", 5.0),
    "phew resnet20 10%": (case_phew, ("resnet20", 0.1), "PHEW mask (authors' code: 2.48 s)", 0.3),
    "phew resnet18 1%": (case_phew, ("resnet18", 0.01), "PHEW mask, Tiny-ImageNet shapes", 2.0),
    "synflow vgg19 1%": (case_synflow_vs_autograd, ("vgg19", 0.01),
                         "SynFlow, 100 iterations (Synaptic-Flow's code: 72 s); vs 100 autograd passes", ("ratio", 1.0)),
    "metrics vgg19 1%": (case_metrics, ("vgg19", 0.01), "all analysis metrics of one mask", 3.0),
    "sweep resnet20 200 runs": (case_sweep_throughput, (), "data-free sweep grid (5 methods x 5 densities x 8 "
                                "seeds), 2 local Dask workers vs 1", ("speedup", 1.6)),
}


def run_case(name):
    fn, args, _, _ = CASES[name]
    result = fn(*args)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    results = {}
    previous = os.path.join(HERE, "results.json")
    if args.only and os.path.exists(previous):  # a partial run updates the recorded results
        with open(previous) as f:
            results = {k: v for k, v in json.load(f).items() if k in CASES}
    for name in CASES:
        if args.only and args.only not in name:
            continue
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"benchmark {name!r} failed")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, results[name], flush=True)
    write_report({k: results[k] for k in CASES if k in results}, args.out)


def write_report(results, out):
    import numpy
    import torch

    lines = [
        "# Benchmarks",
        "",
        f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {numpy.__version__}, with `python benchmarks/run.py` (each case in "
        "a fresh process; peak memory is that process's maximum resident set, torch and the model included).",
        "Targets are the issues' acceptance limits. Reference times of the authors' PHEW code and of "
        "Synaptic-Flow are the ones DESIGN.md measured on this kind of machine.",
        "",
        "| case | what | seconds | target | peak MiB | details |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        _, _, what, target = CASES[name]
        details = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in r.items() if k not in ("seconds", "peak_mib"))
        if target is None:
            ok = ""
        elif isinstance(target, tuple):  # (result key, minimum)
            key, low = target
            ok = f"{key} >= {low} " + ("(met)" if r[key] >= low else "(MISSED)")
        else:
            ok = f"< {target} s " + ("(met)" if r["seconds"] < target else "(MISSED)")
        lines.append(f"| {name} | {what} | {r['seconds']:.3f} | {ok} | {r['peak_mib']:.0f} | {details} |")
    sf = results.get("synflow vgg19 1%")
    if sf:
        lines += ["", f"SynFlow with 100 iterations on vgg19 took {sf['seconds']:.2f} s; 100 autograd "
                      f"forward/backward passes of the same model in the same process took "
                      f"{sf['autograd_100_passes']:.2f} s: the graph version is {sf['ratio']:.2f}x faster."]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
