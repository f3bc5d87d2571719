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
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

from ..data import as_batches
from ._select import check_scores, top_k_masks
from .base import Context, method


def _setup(ctx: Context, bn_mode: str):
    model = copy.deepcopy(ctx.model)
    model.train(bn_mode == "train")
    params = dict(model.named_parameters())
    weights = [params[l.param] for l in ctx.graph.layers]
    device = weights[0].device
    batches = [(x.to(device), y.to(device)) for x, y in as_batches(ctx.data, ctx.graph.input_shape)]
    return model, weights, batches


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
        F.cross_entropy(model(x), y).backward()
    scores = [(w.detach() * w.grad).abs().double().cpu().numpy() for w in weights]
    check_scores("snip", scores)
    return top_k_masks(_layer_shaped(ctx, scores), ctx.target)


@method(
    "grasp", options={"bn_mode": "train", "temperature": 200.0}, choices={"bn_mode": ("train", "eval")},
    needs_data=True,
    description="GraSP (Wang et al. 2020): score -w Hg (gradient flow); keep the lowest scores.",
)
@_seeded
def grasp_masks(ctx: Context, bn_mode: str = "train", temperature: float = 200.0) -> list:
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
        grads = torch.autograd.grad(F.cross_entropy(model(x) / T, y), weights)
        for acc, gr in zip(g, grads):
            acc += gr
    model.zero_grad()
    for x, y in batches:
        grads = torch.autograd.grad(F.cross_entropy(model(x) / T, y), weights, create_graph=True)
        z = sum((gr * gs).sum() for gr, gs in zip(grads, g))
        z.backward()
    hg = [(w.detach() * w.grad).double().cpu().numpy() for w in weights]  # w * Hg = -score
    check_scores("grasp", hg)
    ctx.info["score"] = "-w*Hg (kept: lowest)"
    return top_k_masks(_layer_shaped(ctx, hg), ctx.target)
