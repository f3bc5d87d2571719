"""Independent references computed with autograd on the real model.

These never touch the graph code: they copy the model, replace every conv/linear weight
by a function of itself (|w|, w^2, or the 0/1 mask), zero the biases and BatchNorm shifts,
feed an all-ones input and differentiate the summed output.
"""

import copy

import torch
import torch.nn as nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def autograd_flow(model, input_shape, power=1, masks=None, count=False):
    """Return ``(R, {param: dR/dv}, {param: v})`` where ``v`` is the substituted weight.

    power=1: v = |w| (SynFlow); power=2: v = w^2 (SynFlow-L2 / path kernel);
    count=True: v = mask (path counting). BatchNorm in eval mode becomes the per-unit
    scale (|gamma| / sqrt(var + eps)) ** power.
    """
    m = copy.deepcopy(model).double().eval()
    masks = masks or {}
    vs = {}
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, LAYERS):
                pname = f"{name}.weight"
                mask = masks.get(pname)
                mask = torch.ones_like(mod.weight) if mask is None else mask.to(torch.double)
                if count:
                    v = mask.clone()
                else:
                    v = mod.weight.abs() ** power * mask
                mod.weight.copy_(v)
                if mod.bias is not None:
                    mod.bias.zero_()
                vs[pname] = mod.weight
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                root = torch.sqrt(mod.running_var + mod.eps)
                s = (mod.weight.abs() / root) ** (0 if count else power)
                mod.weight.copy_(s * root)
                mod.bias.zero_()
                mod.running_mean.zero_()
    x = torch.ones((1, *input_shape), dtype=torch.double)
    R = m(x).sum()
    R.backward()
    grads = {n: v.grad.detach().clone() for n, v in vs.items()}
    return R.item(), grads, {n: v.detach().clone() for n, v in vs.items()}


def autograd_synflow_scores(model, input_shape, masks=None):
    """SynFlow scores |w| * dR/d|w| by autograd, and R."""
    R, grads, vs = autograd_flow(model, input_shape, 1, masks)
    return R, {n: (grads[n] * vs[n]).numpy() for n in grads}


def autograd_path_kernel_trace(model, input_shape, masks=None):
    """Tr(Pi) = sum over kept weights of dR2/d(w^2), and R2."""
    R2, grads, _ = autograd_flow(model, input_shape, 2, masks)
    total = 0.0
    for n, g in grads.items():
        mk = masks.get(n) if masks else None
        total += float(g.sum() if mk is None else (g * mk.to(g.dtype)).sum())
    return R2, total


def autograd_synflow_prune(model, input_shape, density, iterations, power=1, form="abs_grad"):
    """Iterative SynFlow (power=1) or SynFlow-L2 (power=2) by autograd, global threshold,
    exponential schedule. SynFlow-L2 scores: |w| dR2/d(w^2) ("abs_grad") or
    w dR2/dw = 2 w^2 dR2/d(w^2) ("w_grad").

    Ties are broken like the library (lower position in each layer's bundle order first)
    only up to what the test needs: with continuous random weights there are none.
    """
    params = [n for n, mod in model.named_modules() if isinstance(mod, LAYERS)]
    shapes = {f"{n}.weight": dict(model.named_parameters())[f"{n}.weight"].shape for n in params}
    masks = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    total = sum(m.numel() for m in masks.values())
    for t in range(1, iterations + 1):
        keep = int(round(total * density ** (t / iterations)))
        _, grads, _ = autograd_flow(model, input_shape, power, masks)
        params = dict(model.named_parameters())
        scores = {}
        for n, g in grads.items():
            w = params[n].detach().double().abs()
            scores[n] = (w * g if form == "abs_grad" else 2 * w * w * g).numpy()
        flat = torch.cat([torch.from_numpy(scores[n]).flatten().where(masks[n].flatten(), torch.tensor(-1.0, dtype=torch.double)) for n in masks])
        order = torch.argsort(flat, descending=True, stable=True)
        new = torch.zeros_like(flat, dtype=torch.bool)
        new[order[:keep]] = True
        off = 0
        for n in masks:
            k = masks[n].numel()
            masks[n] = new[off:off + k].reshape(shapes[n])
            off += k
    return masks


def random_masks(graph, density, seed):
    """A seeded random mask of every layer's parameter (``{param: bool tensor}``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {l.param: torch.from_numpy(rng.random(l.param_shape) < density) for l in graph.layers}


def close(a, b, rel):
    """``a`` and ``b`` agree to ``rel`` relative to the larger."""
    return abs(a - b) <= rel * max(abs(a), abs(b))



def randomise(model, seed=0, scale=0.5):
    """Every parameter of ``model`` redrawn from ``N(0, scale^2)`` with a seeded generator
    (signed weights, non-trivial norms and scales); returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model


def assert_matches_linearised(graph, linearised, input_shape, masks=(None,), rel=1e-9):
    """The graph's R, SynFlow scores, R2, path-kernel trace and path counts equal the
    autograd reference (``tests.linearised.reference``) of the network ``linearised``,
    under each mask of ``masks`` (``None``: dense)."""
    import numpy as np

    from netgraph import flows
    from tests.linearised import reference

    for m in masks:
        ref = reference(linearised, input_shape, m)
        assert close(10 ** flows.log10_synflow_R(graph, m), ref["R"], rel)
        ours = flows.synflow_scores(graph, m)
        for p, s in ref["scores"].items():
            np.testing.assert_allclose(ours[p], s, rtol=rel, atol=rel * np.abs(s).max())
        assert close(10 ** flows.log10_R2(graph, m), ref["R2"], rel)
        assert close(flows.path_kernel_trace(graph, m), ref["trace"], rel)
        assert close(10 ** flows.log10_num_paths(graph, m), ref["paths"], rel)
