"""Pixel-level SynFlow / SynFlow-L2: the original algorithm, by autograd on the real model.

This is ``level="pixel"`` of the ``synflow`` and ``synflow-l2`` methods (the default,
``level="unit"``, runs on the unit graph). Each iteration sets every conv and linear weight to
``|w|`` (``w^2`` for SynFlow-L2) times the current mask (biases and BatchNorm shifts zero,
BatchNorm a per-channel scale ``(|gamma| / sqrt(var + eps))^p``), sends an all-ones input
of one sample forward in eval mode and the summed output backward.
It runs on a float64 copy of the model (a dense VGG19 has about 4e40 paths, past float32),
so the caller's model is never modified. It sees zero padding at image borders, which the unit graph does not (see
``docs/data-model.md``: the two differ on padded conv nets, and agree exactly without
padding or with circular padding). Scores are float64; the global threshold keeps exactly
the scheduled count, ties in parameter order.
"""

from __future__ import annotations


import numpy as np

from ..errors import InvalidInputError
from ..masks import copy_model
from ._select import top_k_masks

def _linearised(model, power: int):
    """A float64 copy of ``model`` in eval mode, linearised for SynFlow; ``[(name, weight)]``.

    Biases and BatchNorm shifts become zero, BatchNorm a per-channel scale
    ``(|gamma| / sqrt(var + eps))^p``. The caller's model is never modified.
    """
    import torch
    import torch.nn as nn

    m = copy_model(model, plain=True).double().eval()
    weights = []
    with torch.no_grad():
        for name, mod in m.named_modules():
            if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)):
                weights.append((f"{name}.weight" if name else "weight", mod.weight))
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                root = torch.sqrt(mod.running_var + mod.eps)
                gamma = mod.weight.abs() if mod.weight is not None else torch.ones_like(root)
                s = (gamma / root) ** power
                if mod.weight is not None:
                    mod.weight.copy_(s * root)
                if mod.bias is not None:
                    mod.bias.zero_()
                mod.running_mean.zero_()
    for p in m.parameters():
        p.requires_grad_(False)
    return m, dict(weights)


def pixel_flow_pruning(model, input_shape, param_names, density: float, target: int, power: int, form: str,
                       iterations: int, progress: bool = False) -> dict:
    """Masks ``{param: bool ndarray}`` of the original iterative SynFlow (SynFlow-L2).

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : tuple
        One sample's shape (no batch dimension).
    param_names : list of str
        The prunable weights, in the graph's layer order (ties are broken in this order,
        then by flat index).
    density, target : float, int
        Final kept fraction and kept count; after iteration ``t`` of ``T`` the kept count
        is ``round(N * density ** (t / T))``, exactly ``target`` at the end.
    power : {1, 2}
    form : {"abs_grad", "w_grad"}
        Score ``|w| dR/d(|w|^p)`` or ``2 w^2 dR2/d(w^2)``.
    """
    import torch
    from tqdm.auto import tqdm

    if model is None:
        raise InvalidInputError("level='pixel' runs autograd on the torch model: pass the model, not a graph")
    net, params = _linearised(model, power)  # (a pruned model's weights under their own names)
    missing = [p for p in param_names if p not in params]
    if missing:
        raise InvalidInputError(f"level='pixel': the model has no parameters {missing[:3]}")
    originals = {p: params[p].detach().clone() for p in param_names}
    masks = {p: torch.ones_like(originals[p], dtype=torch.bool) for p in param_names}
    N = sum(m.numel() for m in masks.values())
    x = torch.ones((1, *input_shape), dtype=torch.float64)
    steps = tqdm(range(1, iterations + 1), desc=f"synflow{'-l2' if power == 2 else ''} (pixel)",
                 disable=not progress, leave=False)
    minus = torch.tensor(-1.0, dtype=torch.float64)
    for t in steps:
        keep = max(target, int(round(N * density ** (t / iterations))))
        if t == iterations:
            keep = target
        with torch.no_grad():
            for p in param_names:
                params[p].copy_(originals[p].abs() ** power * masks[p])
        for p in param_names:
            params[p].grad = None
            params[p].requires_grad_(True)
        net(x).sum().backward()
        scores = []
        for p in param_names:
            a = originals[p].abs()
            g = params[p].grad.detach()
            s = a * g if form == "abs_grad" else 2.0 * a * a * g
            scores.append(torch.where(masks[p], s, minus).reshape(-1))
        flat = torch.cat(scores).numpy()
        if not np.isfinite(flat).all():
            raise InvalidInputError("level='pixel': scores overflow float64 on this model; use level='unit'")
        new = top_k_masks([flat], keep)[0]  # exact count, ties in position order, O(N)
        off = 0
        for p in param_names:
            n = masks[p].numel()
            masks[p] = torch.from_numpy(new[off:off + n].reshape(masks[p].shape))
            off += n
    return {p: m.numpy() for p, m in masks.items()}


def pixel_scores(model, input_shape, param_names, power: int = 1) -> tuple:
    """One pixel-level pass: ``(log R, {param: |w| dR/d(|w|^p)})`` by autograd (float64).

    The dense network's SynFlow (``power=1``) or SynFlow-L2 (``power=2``) scores with zero
    padding seen, to compare with :func:`netgraph.flows.synflow_scores` (see
    ``benchmarks/zero_padding.py``).
    """
    import math

    import torch

    net, params = _linearised(model, power)
    originals = {p: params[p].detach().clone() for p in param_names}
    with torch.no_grad():
        for p in param_names:
            params[p].copy_(originals[p].abs() ** power)
    for p in param_names:
        params[p].requires_grad_(True)
    R = net(torch.ones((1, *input_shape), dtype=torch.float64)).sum()
    R.backward()
    return math.log(R.item()), {p: (originals[p].abs() * params[p].grad).numpy() for p in param_names}
