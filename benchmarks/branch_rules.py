"""PHEW's branch rules compared: 'weighted' (default) vs the authors' rule.

    python benchmarks/branch_rules.py > docs/figures/branch_rules.md

Three seeds per cell (seed s initialises the model and drives the walks); mean values.
"""

import pandas as pd

import analysis
import netgraph
from netgraph import zoo


def main():
    print("| model | density | branch rule | log10 path-kernel trace | log10 paths | mean width | "
          "bottleneck | share of kept weights in projection shortcuts |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("resnet20", "resnet18"):
        rows = []
        for seed in range(3):
            g = netgraph.from_torch(zoo.build(name, seed=seed), zoo.input_shape(name))
            for d in (0.1, 0.02, 0.005):
                for rule in ("weighted", "authors"):
                    ms = netgraph.sparsify(g, "phew", d, seed=seed, branch=rule)
                    rec = analysis.measure(g, ms, max_flow=False)
                    sc = sum(int(ms[l.param].sum()) for l in g.layers if "shortcut" in l.name)
                    rows.append({"density": d, "rule": rule, "trace": rec["log10_path_kernel_trace"],
                                 "paths": rec["log10_paths"], "width": rec["mean_width_fraction"],
                                 "bottleneck": rec["bottleneck_width"], "shortcut": sc / ms.num_kept})
        df = pd.DataFrame(rows).groupby(["density", "rule"], sort=False).mean()
        for (d, rule), r in df.iterrows():
            print(f"| {name} | {d:g} | {rule} | {r.trace:.2f} | {r.paths:.2f} | {r.width:.3f} | "
                  f"{r.bottleneck:.1f} | {r.shortcut:.3f} |")


if __name__ == "__main__":
    main()
