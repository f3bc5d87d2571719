"""Zero padding: how far the unit graph's SynFlow is from the pixel-level network.

    python benchmarks/zero_padding.py            # writes docs/figures/zero_padding/

On torchvision's resnet18 (seeded init) at 32, 64 and 224 px: the graph's log10 R against
the pixel-level one (autograd on the real model, float64, all-ones input) and the overlap
of the top 1% of SynFlow scores of the two. Output: ``zero_padding.md`` (the table quoted
in ``docs/data-model.md``), ``zero_padding.json`` and ``zero_padding.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def study(sizes=(32, 64, 224), density: float = 0.01, seed: int = 0) -> list:
    import torch
    import torchvision

    import netgraph
    from netgraph import flows
    from netgraph.sparsifiers._pixel import pixel_scores

    rows = []
    for px in sizes:
        torch.manual_seed(seed)  # torchvision's initialisers draw from the global generator
        model = torchvision.models.resnet18(weights=None)
        g = netgraph.from_torch(model, (3, px, px))
        unit = flows.synflow_scores(g, log=True)
        log_r_pixel, pix = pixel_scores(model, (3, px, px), g.param_names)
        u = np.concatenate([unit[p].ravel() for p in g.param_names])
        with np.errstate(divide="ignore"):
            v = np.log(np.concatenate([pix[p].ravel() for p in g.param_names]))
        k = int(round(density * u.size))
        top_u, top_v = np.argpartition(-u, k)[:k], np.argpartition(-v, k)[:k]
        r_unit = flows.log10_synflow_R(g)
        rows.append({"px": px, "log10_R_unit": r_unit, "log10_R_pixel": log_r_pixel / math.log(10),
                     "difference": r_unit - log_r_pixel / math.log(10),
                     "top1_overlap": np.intersect1d(top_u, top_v).size / k})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "figures", "zero_padding"))
    args = ap.parse_args()
    rows = study()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "zero_padding.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| input | log10 R, unit graph | log10 R, pixel level | difference | top-1% scores shared |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['px']} px | {r['log10_R_unit']:.2f} | {r['log10_R_pixel']:.2f} | {r['difference']:+.2f} | "
              f"{100 * r['top1_overlap']:.1f}% |" for r in rows]
    with open(os.path.join(args.out, "zero_padding.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    px = [r["px"] for r in rows]
    a1.plot(px, [r["difference"] for r in rows], "o-")
    a1.set(xscale="log", xlabel="input size (px)", ylabel="log10 R: graph - pixel level",
           title="R overestimated by the graph")
    a2.plot(px, [100 * r["top1_overlap"] for r in rows], "o-")
    a2.set(xscale="log", xlabel="input size (px)", ylabel="% of top-1% scores shared", title="top-1% SynFlow scores")
    for a in (a1, a2):
        a.set_xticks(px, [str(p) for p in px])
        a.grid(True, alpha=0.3)
    fig.suptitle("resnet18 (torchvision): unit graph vs pixel-level SynFlow", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "zero_padding.png"), dpi=110)


if __name__ == "__main__":
    main()
