"""The sparsifier contract on full-size torchvision models at 224 px (slow: tens of minutes).

Every case: the method gives a mask set over every conv/linear weight; the exact methods
(all but PHEW) keep exactly ``round(d * total)``; every weight PHEW keeps lies on an
input-output path of kept weights; the masks apply to a copy of the torch model, which
still runs; ``analysis.measure`` returns a record (for the PHEW mask of each model, without
the max-flow metrics). Each model is traced once (the cases run model by model). SynFlow and SynFlow-L2 run ``SYNFLOW_ITERATIONS`` rounds instead of
the default 100 (time on a shared 2-core machine); the masks are still exact. Measured:
72 cases in 8.6 min with one torch thread (vit_b_16's PHEW case, trace and measure
included, is the longest: 114 s). The 32 cases of the newer methods (expander, npb,
synflow-schedule, phew-layerwise) add 5 min (phew-layerwise on vit_b_16: 73 s; npb at most
1.7 s per model).
"""

import copy
import time

import numpy as np
import pytest
import torch

import analysis
import netgraph
from netgraph import flows

torchvision = pytest.importorskip("torchvision")

pytestmark = pytest.mark.slow

MODELS = ["resnet50", "resnext50_32x4d", "mobilenet_v3_large", "efficientnet_b0", "densenet121", "convnext_tiny",
          "vit_b_16", "swin_t"]
SYNFLOW_ITERATIONS = 20
METHODS = [("phew", {}), ("synflow", {"iterations": SYNFLOW_ITERATIONS}),
           ("synflow-l2", {"iterations": SYNFLOW_ITERATIONS}), ("random", {}), ("random", {"distribution": "erk"}),
           ("magnitude", {}), ("snip", {}), ("grasp", {}),
           # the newer methods (issue 14)
           ("expander", {}), ("npb", {}), ("synflow-schedule", {"iterations": SYNFLOW_ITERATIONS}), ("phew-layerwise", {})]
DENSITY = 0.1  # with offpath="magnitude": below the dense off-path share of vit_b_16 (0.16)
SHAPE = (3, 224, 224)
_CURRENT: dict = {}  # the model of the running cases only (one full-size model in memory)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a shared, loaded machine two spinning threads made tracing up
    to 1000x slower than the coverage run (which also uses one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model_graph(name):
    if name not in _CURRENT:
        _CURRENT.clear()
        model = netgraph.zoo.build(f"torchvision:{name}", seed=0)
        if name == "vit_b_16":  # torchvision zero-initialises ViT's head: no path would carry flow
            w = model.heads.head.weight
            with torch.no_grad():
                w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 0.02)
        t0 = time.perf_counter()
        g = netgraph.from_torch(model, SHAPE)
        _CURRENT[name] = (model, g, time.perf_counter() - t0)
    return _CURRENT[name]


def _off_path_kept(g, ms) -> int:
    """Kept layer weights on no input-output path of kept weights (path counts)."""
    fl = flows.path_flows(g, "count", ms)
    off = 0
    for layer, m in zip(g.layers, g.layer_masks(ms)):
        live_dst = fl.backward[layer.dst] > 0
        live_src = layer.gather(fl.forward[layer.src] > 0)  # (n_dst, n_in): grouped convs too
        off += int((m & ~(live_dst[:, None] & live_src)[:, :, None]).sum())
    return off


CASES = [(name, method, opts, policy) for name in MODELS
         for method, opts, policy in [*[(m, o, "magnitude") for m, o in METHODS], ("random", {}, "dense")]]


@pytest.mark.parametrize("name,method,opts,policy", CASES,
                         ids=[f"{n}-{m}{'-erk' if o.get('distribution') else ''}-{p}" for n, m, o, p in CASES])
def test_contract_on_full_size_models(name, method, opts, policy):
    model, g, trace_s = _model_graph(name)
    d = DENSITY if policy == "magnitude" else 0.3
    data = None
    if method in ("snip", "grasp"):
        gen = torch.Generator().manual_seed(0)
        data = (torch.randn(2, *SHAPE, generator=gen), torch.randint(0, 1000, (2,), generator=gen))
    t0 = time.perf_counter()
    ms = netgraph.sparsify(model, method, d, seed=0, graph=g, data=data, offpath=policy, **opts)
    seconds = time.perf_counter() - t0
    total = g.num_weights + sum(p["numel"] for p in g.offpath)
    assert ms.num_total == total
    if method == "phew":
        assert ms.num_kept == round(d * total) + ms.meta["details"]["overshoot"]
        assert _off_path_kept(g, ms) == 0
    else:
        assert ms.num_kept == round(d * total)
    if method == "phew":  # one record per model (every metric but max-flow: minutes on this machine)
        rec = analysis.measure(g, ms, max_flow=False)
        assert rec["kept"] == ms.num_kept  # every masked parameter; the graph's layers:
        assert rec["graph_kept"] == ms.num_kept - ms.meta.get("offpath", {}).get("kept", 0)
        assert np.isfinite(rec["achieved_density"])
    net = copy.deepcopy(model)
    ms.apply(net)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, *SHAPE))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    print(f"\n{name} {method}{opts or ''} {policy}: trace {trace_s:.1f} s, method {seconds:.1f} s, "
          f"kept {ms.num_kept} of {total}")
