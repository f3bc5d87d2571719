"""Data-dependent baselines computed with torch autograd on caller-provided batches.

* SNIP (Lee et al. 2019): score ``|w * dL/dw|`` with cross-entropy gradients summed over
  the batches; keep the largest.
* GraSP (Wang et al. 2020): with ``g`` the gradient of the loss (logits divided by a
  temperature) and ``H g`` its Hessian-gradient product, the score is ``-w * Hg``;
  GraSP removes the *highest* scores, i.e. keeps the largest ``w * Hg``.

Both work on a copy of the model (the caller's model and its BatchNorm statistics are left
untouched). ``bn_mode="train"`` (default, as in the PHEW authors' code) normalises with
batch statistics; ``"eval"`` uses the running statistics (as the Synaptic-Flow code).
In train mode dropout is active; its draws come from torch's generator seeded with the
method's seed inside ``torch.random.fork_rng``, so the same seed gives the same mask and
the caller's random state is left as it was.

The data are checked where they enter: labels must be integer class indices in
``[0, outputs)`` of the shape the outputs need, floating inputs must have the model's
dtype, and GraSP's ``temperature`` must be finite and positive (one clear error each).
"""

from __future__ import annotations

import contextlib
import math
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F

from ..data import as_batches
from ..errors import InvalidInputError
from ..masks import copy_model
from ._select import check_scores, top_k_masks
from .base import Context, method


def _setup(ctx: Context, bn_mode: str):
    model = copy_model(ctx.model, plain=True)  # (a pruned model's weights as plain parameters)
    model.train(bn_mode == "train")
    params = dict(model.named_parameters())
    weights = [params[l.param].requires_grad_(True) for l in ctx.graph.layers]  # (frozen ones too: a copy)
    device, dtype = weights[0].device, weights[0].dtype
    batches = [_checked(x, y, dtype) for x, y in as_batches(ctx.data, ctx.graph.input_shape)]
    return model, weights, [(x.to(device), y.to(device)) for x, y in batches]


def _checked(x, y, dtype):
    """A batch whose labels are integer class indices (as int64) and whose floating inputs
    have the model's dtype; else one clear error."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InvalidInputError(
            f"data labels must be integer class indices (e.g. int64), got {str(y.dtype).removeprefix('torch.')} "
            "labels; convert them with labels.long()")
    if x.is_floating_point() and x.dtype != dtype:
        dt = str(dtype).removeprefix("torch.")
        raise InvalidInputError(
            f"data inputs are {str(x.dtype).removeprefix('torch.')} but the model's weights are {dt}: "
            f"give inputs of the model's dtype (inputs.to(torch.{dt})) or convert the model")
    return x, y.long()


def _logits(model, x, y):
    """``model(x)``, once the labels ``y`` are checked against it: class indices in
    ``[0, classes)`` of the shape the outputs need."""
    out = model(x)
    if isinstance(out, torch.Tensor) and out.dim() >= 2 and y.numel():
        want = (out.shape[0], *out.shape[2:])
        if tuple(y.shape) != want:
            raise InvalidInputError(
                f"data labels have shape {tuple(y.shape)}; the model's outputs {tuple(out.shape)} need "
                f"labels of shape {want}")
        lo, hi, n = int(y.min()), int(y.max()), out.shape[1]
        if lo < 0 or hi >= n:
            raise InvalidInputError(
                f"data labels must be class indices in [0, {n - 1}] (the model has {n} outputs), "
                f"got labels from {lo} to {hi}")
    return out


def _zeros_last(weights, scores) -> list:
    """``scores`` (tensors, one per weight) as float64 arrays, those of exact-zero weights
    ``-inf``: they rank below every other (a GraSP score can be negative; a SNIP score ties at
    0 where a gradient is 0), so that on a model pruned before (its pruned weights are zeros)
    the new mask keeps none of them while the density allows."""
    out = []
    for w, sc in zip(weights, scores):
        a = sc.double().cpu().numpy()
        a[(w.detach() == 0).cpu().numpy()] = -np.inf
        out.append(a)
    return out


def _layer_shaped(ctx, arrays):
    return [l.take(a).reshape(l.weight.shape) for a, l in zip(arrays, ctx.graph.layers)]


def _seeded(fn):
    """Run ``fn(ctx, ...)`` with torch's generator seeded by ``ctx.seed`` (dropout draws),
    restoring the caller's random state afterwards."""

    def wrapper(ctx: Context, *args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            return fn(ctx, *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@method(
    "snip", options={"bn_mode": "train"}, choices={"bn_mode": ("train", "eval")}, needs_data=True,
    description="SNIP (Lee et al. 2019): keep the largest |w dL/dw| on the given batches.",
)
@_seeded
def snip_masks(ctx: Context, bn_mode: str = "train") -> list:
    model, weights, batches = _setup(ctx, bn_mode)
    model.zero_grad()
    for x, y in batches:
        F.cross_entropy(_logits(model, x, y), y).backward()
    scores = _zeros_last(weights, [(w.detach() * w.grad).abs() for w in weights])
    check_scores("snip", scores)
    return top_k_masks(_layer_shaped(ctx, scores), ctx.target)


@method(
    "grasp", options={"bn_mode": "train", "temperature": 200.0}, choices={"bn_mode": ("train", "eval")},
    needs_data=True,
    description="GraSP (Wang et al. 2020): score -w Hg (gradient flow); keep the lowest scores.",
)
@_seeded
def grasp_masks(ctx: Context, bn_mode: str = "train", temperature: float = 200.0) -> list:
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not (
            math.isfinite(temperature) and temperature > 0):
        raise InvalidInputError(
            f"temperature of method 'grasp' must be a finite number > 0 (the logits are divided by it; "
            f"default 200.0), got {temperature!r}")
    model, weights, batches = _setup(ctx, bn_mode)
    # the fused CPU attention kernels and hardsigmoid (MobileNetV3's SE gates) have no double backward
    with _math_attention(), _twice_differentiable_hardsigmoid():
        return _grasp(ctx, model, weights, batches, float(temperature))


@contextlib.contextmanager
def _twice_differentiable_hardsigmoid():
    """``F.hardsigmoid`` (also behind ``nn.Hardsigmoid``) as ``clamp(x / 6 + 1/2, 0, 1)``: the
    same values, and twice differentiable (torch has no derivative of ``hardsigmoid_backward``)."""
    original = F.hardsigmoid
    F.hardsigmoid = lambda x, inplace=False: torch.clamp(x / 6 + 0.5, 0.0, 1.0)
    try:
        yield
    finally:
        F.hardsigmoid = original


def _math_attention():
    """Scaled dot-product attention through its plain (twice differentiable) implementation."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def _grasp(ctx, model, weights, batches, T):
    g = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(_logits(model, x, y) / T, y), weights)
        for acc, gr in zip(g, grads):
            acc += gr
    model.zero_grad()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(_logits(model, x, y) / T, y), weights, create_graph=True)
        z = sum((gr * gs).sum() for gr, gs in zip(grads, g))
        z.backward()
    hg = _zeros_last(weights, [w.detach() * w.grad for w in weights])  # w * Hg = -score
    check_scores("grasp", hg)
    ctx.info["score"] = "-w*Hg (kept: lowest)"
    return top_k_masks(_layer_shaped(ctx, hg), ctx.target)
