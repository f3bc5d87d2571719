"""Rules for the attention variants of timm's vision transformers (CaiT, EdgeNeXt).

Each variant is traced as a leaf module and, like self-attention
(:mod:`netgraph._trace_attention`), held at the linearisation point (all-ones input, ``|w|``,
zero biases), where every token is alike:

* EdgeNeXt's ``CrossCovarianceAttn`` (XCA) attends over the *channels* of a head: every
  channel's query (key) is a constant vector over the tokens, positive under ``|w|``, so
  after the L2 normalisation along tokens all queries and keys are equal and the softmax
  over the channels of a head is uniform. XCA becomes ``proj(M V(x))`` where ``M`` averages
  the ``d`` value channels of each head: fixed weight-``1/d`` edges from every value channel
  of a head to every channel of that head (``d`` index maps).
* CaiT's ``TalkingHeadAttn``: the logits are mixed over heads (``proj_l``) before the
  softmax, which stays uniform (the logits are constant over keys): ``proj_l`` is off-path.
  The probabilities are mixed over heads after it (``proj_w``), so a row of head ``h`` sums
  to ``t_h = sum_g W_w[h, g] + N b_w[h]`` (``N`` tokens), not 1: the block becomes
  ``proj(t V(x))`` with the per-channel scale ``|t_h|`` held at the real weights, like a
  gate, and ``proj_w`` off-path.
* CaiT's class-attention block ``LayerScaleBlockClassAttn(x, cls)``: the class token's query
  over ``[cls, x]`` is uniform, so the attention output is
  ``proj(V(mean token))`` with ``mean token = (norm1(cls) + N norm1(x)) / (N + 1)``; the
  class token then goes through the block's layer scales and MLP. The class token is a
  tensor of its own (its own units), the patch tokens are read, not changed.

Layers applied to constants (EdgeNeXt's Fourier position encoding) carry no path: their
weights are off-path (role ``"constant"``). See ``docs/data-model.md``.
"""

from __future__ import annotations

import numpy as np
import torch

from ._trace_attention import _linear_spec, _offpath
from ._trace_values import _Term, _Value


def _timm(m, name: str) -> bool:
    return type(m).__name__ == name and type(m).__module__.startswith("timm.")


def _tokens(c, node, x, n: int) -> None:
    if not isinstance(x, _Value) or not (x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n != n:
        c.fail(node, f"attention on a tensor that is not (batch, tokens, {n})")


def _only_input(c, node) -> None:
    if len(node.args) + len(node.kwargs) != 1:
        c.fail(node, "attention called with a mask or other arguments")


def _flat(c, node, x: _Value) -> _Value:
    """``x`` as a unit group read per token (its tokens are alike)."""
    if x.group == 0:
        c.b.input_fixed = True
    return c.b.materialize(x.with_(spatial=(), channels_last=False), node.name)


def _value_rows(c, node, t: str, qkv, n_qk: int, n_v: int) -> dict:
    """The value rows ``[n_qk, n_qk + n_v)`` of the fused ``qkv`` as a layer spec; the query/key
    rows ``[0, n_qk)`` are off-path."""
    param = f"{t}.qkv.weight"
    _offpath(c, param, qkv.weight, f"{t}.qkv", rows=(0, n_qk))
    return _linear_spec(c, node, f"{t}.qkv", param, qkv.weight, rows=(n_qk, n_qk + n_v))


def _layer_out(c, node, src: _Value, spec: dict, in_scale=None, out_scale=None) -> _Value:
    return _Value(n=spec["weight"].shape[0], spatial=(),
                  terms=[_Term(src=src.group, layer=spec, in_scale=in_scale, scale=out_scale)])


# -- EdgeNeXt: cross-covariance attention ---------------------------------------------------------

def head_mean(c, node, v: _Value, heads: int) -> _Value:
    """``M v`` with ``M`` averaging the channels of each head: ``d`` index maps of weight ``1/d``
    (map ``k`` joins channel ``h d + (j + k) % d`` to channel ``h d + j``)."""
    n = v.n
    d = n // heads
    dst = np.arange(n)
    head, j = np.divmod(dst, d)
    terms = [_Term(src=v.group, scale=np.full(n, 1.0 / d), src_units=head * d + (j + k) % d, dst_units=dst)
             for k in range(d)]
    return c.b.materialize(_Value(n=n, spatial=(), terms=terms), f"{node.name}.head_mean")


def xca(c, node, x, sig):
    """timm EdgeNeXt's ``CrossCovarianceAttn`` on ``(batch, tokens, C)``: ``proj(M V(x))``."""
    mod = c.module(node)
    _only_input(c, node)
    n, heads = mod.qkv.in_features, mod.num_heads
    _tokens(c, node, x, n)
    if mod.qkv.out_features != 3 * n or n % heads or mod.proj.in_features != n:
        c.fail(node, f"qkv/proj shapes do not fit {n} channels in {heads} heads")
    t = node.target
    v_spec = _value_rows(c, node, t, mod.qkv, 2 * n, n)
    o_spec = _linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", mod.proj.weight)
    v = c.b.materialize(_layer_out(c, node, _flat(c, node, x), v_spec), f"{node.name}.value")
    out = _layer_out(c, node, head_mean(c, node, v, heads), o_spec)
    return out.with_(spatial=x.spatial, channels_last=True)


# -- registration -----------------------------------------------------------------------------

_LEAVES = {"CrossCovarianceAttn": xca}


def is_leaf(m) -> bool:
    """Whether the tracer calls module ``m`` as a whole (a variant with a rule here)."""
    return any(_timm(m, name) for name in _LEAVES)


def rule_for(node, mod):
    """The rule of an fx node calling one of the variants above, else None."""
    if node.op != "call_module" or mod is None:
        return None
    return next((rule for name, rule in _LEAVES.items() if _timm(mod, name)), None)


def constant_layers(c, gm, layer_params) -> list:
    """Off-path entries for the Linear/Conv weights of modules called only on constants (EdgeNeXt's
    Fourier position encoding): their output is an additive constant, no path crosses them."""
    out, seen = [], set(layer_params) | {p["param"] for p in c.offpath}
    for n in gm.graph.nodes:
        if n.op != "call_module" or n in c.recorder.signal:
            continue
        mod = c.model_modules.get(n.target)
        w = getattr(mod, "weight", None)
        param = f"{n.target}.weight"
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)) and param not in seen:
            seen.add(param)
            out.append({"param": param, "shape": tuple(w.shape), "numel": w.numel(), "role": "constant",
                        "module": n.target})
    return out
