"""Window attention: windows folded into the batch dimension, and the window-attention leaves.

Window attention (timm's Swin V1/V2, TinyViT) partitions a ``(batch, H, W, C)`` map into
windows and folds them into the batch dimension: ``(batch * windows, tokens, C)``. At the
linearisation point all positions are alike, so at the channel level the fold and the
unfold are rearrangements of positions only. Such a tensor is a value with ``lead > 1``
(the size of dimension 0 for one sample; channels last), recognised from its channel ids
like every rearrangement (:mod:`netgraph._trace_rearrange`). Only per-token operations may
read it (rearrangements, ``Linear`` on the channels, LayerNorm over the channels,
elementwise activations, scaling, residual add of two such values, and the attention
leaves below); anything that needs the batch (pooling or a mean over positions, flatten
into features, a conv, the output) is refused until a rearrangement restores
``(batch, ...)``.

The window-attention modules are traced as leaves (rules here): ``proj(V(x))`` per token,
as every attention rule (:mod:`netgraph._trace_attention`); the query/key rows, the
relative position bias (table, Swin V2's ``cpb_mlp``, TinyViT's ``attention_biases``) only
change probabilities, whose rows still sum to 1: off-path (V2's logit scale, a per-head
scalar rather than a weight, is not listed).
``F.pad`` of the spatial dimensions of a channels-last map is nothing (units map to
units), as for a channels-first map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import _trace_attention as attention
from . import _trace_ops as ops
from ._trace_values import _mul, _Term, _Tuple, _Value
from ._trace_vit_variants import token_layernorm


def _timm(m, name: str, module: str) -> bool:
    return type(m).__name__ == name and type(m).__module__ == f"timm.models.{module}"


def _is_swin_attention(m) -> bool:
    return (_timm(m, "WindowAttention", "swin_transformer") or _timm(m, "WindowAttention", "swin_transformer_v2")) \
        and isinstance(getattr(m, "qkv", None), torch.nn.Linear) and isinstance(getattr(m, "proj", None), torch.nn.Linear)


def _is_tiny_vit_attention(m) -> bool:
    return _timm(m, "Attention", "tiny_vit") and isinstance(getattr(m, "qkv", None), torch.nn.Linear) \
        and isinstance(getattr(m, "proj", None), torch.nn.Linear)


def is_leaf(m) -> bool:
    """Whether the tracer calls module ``m`` as a whole (an attention or window attention
    with a rule of its own)."""
    return attention.is_leaf(m) or _is_swin_attention(m) or _is_tiny_vit_attention(m)


# -- per-token rules on values with windows folded into the batch ------------------------------

def _per_token(rule, linear_only=False):
    """``rule`` on per-token values: the result keeps the inputs' folding (``lead``)."""
    def wrapped(c, node, x, sig):
        leads = {v.lead for v in sig}
        if len(leads) != 1:
            c.fail(node, "combines tensors with different foldings of windows into the batch dimension")
        if linear_only and not _reads_linear(c, node):
            c.fail(node, "a conv on windows folded into the batch dimension")
        lead, out = leads.pop(), rule(c, node, x, sig)
        if isinstance(out, _Tuple):  # nn.MultiheadAttention: (output, weights)
            return _Tuple([v.with_(lead=lead) if isinstance(v, _Value) else v for v in out.items])
        return out.with_(lead=lead)
    return wrapped


def _reads_linear(c, node) -> bool:
    if node.op == "call_module":
        return isinstance(c.module(node), torch.nn.Linear)
    return node.target is F.linear


def _needs_batch(c, node, x, sig):
    c.fail(node, "needs the batch dimension, but windows are folded into it (only per-token "
                 "operations may read them)")


def merged_rule(rule, linear_rules=()):
    """The rule for a node reading a value with windows folded into the batch (``lead > 1``):
    ``rule`` itself if it lays out its result, ``rule`` keeping the folding if it is per
    token, else a rule that refuses the node (it needs the batch dimension)."""
    if rule in (ops.rearrange, ops.getitem, ops.flatten, pad, swin_attention, tiny_vit_attention):
        return rule  # these lay out their result themselves
    if rule in (ops.identity, ops.scale, ops.layernorm, token_layernorm, ops.add, attention.timm_attention,
                attention.multihead_attention):
        return _per_token(rule)
    if rule in linear_rules:
        return _per_token(rule, linear_only=True)
    return _needs_batch


# -- rules -----------------------------------------------------------------------------------

def pad(c, node, x, sig):
    """``F.pad``: of the spatial dimensions of a channels-last map (Swin, TinyViT), nothing;
    channels-first maps as pooling (:func:`netgraph._trace_ops.pool`)."""
    if not (x.channels_last and x.spatial and x.flat_k == 1):
        return ops.pool(c, node, x, sig)
    shape = c.shape(node)
    if shape is None or len(shape) != x.ndim or shape[-1] != x.n or shape[0] != x.lead:
        c.fail(node, "pads the channel (or batch) dimension")
    return x.with_(spatial=tuple(shape[1:-1]))


def _tokens(c, node, x, dim, what):
    if not (x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n != dim:
        c.fail(node, f"{what} on a tensor that is not (batch * windows, tokens, {dim})")


def _position_bias(c, mod, owner, skip):
    """The attention's other weights (bias tables, ``cpb_mlp``): off-path position bias."""
    linears = {f"{n}.weight" for n, m in mod.named_modules() if isinstance(m, torch.nn.Linear)}
    for n, p in mod.named_parameters():
        if n in skip or p.dim() < 2 or not (n in linears or n.endswith("table") or n.endswith("biases")):
            continue
        attention._offpath(c, f"{owner}.{n}", p, owner, role="attention position bias")


def swin_attention(c, node, x, sig):
    """timm's Swin ``WindowAttention`` (V1 and V2, with or without a shift mask) on
    ``(batch * windows, tokens, C)``: ``proj(V(x))``, the value rows ``[2a, 3a)`` of the fused
    ``qkv`` (``reshape(.., 3, heads, -1)``)."""
    mod = c.module(node)
    if any(c.is_signal(a) for a in (*node.args[1:], *node.kwargs.values())):
        c.fail(node, "window attention with a mask computed from the input")
    _tokens(c, node, x, mod.qkv.in_features, "window attention")
    t, a = node.target, mod.qkv.out_features // 3
    param = f"{t}.qkv.weight"
    v_spec = attention._linear_spec(c, node, f"{t}.qkv", param, mod.qkv.weight, rows=(2 * a, 3 * a))
    attention._offpath(c, param, mod.qkv.weight, f"{t}.qkv", rows=(0, 2 * a))
    _position_bias(c, mod, t, {"qkv.weight", "proj.weight"})
    o_spec = attention._linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", mod.proj.weight)
    out = attention.value_path(c, node, x.with_(lead=1), v_spec, o_spec)
    return out.with_(spatial=x.spatial, channels_last=True, lead=x.lead)


def tiny_vit_attention(c, node, x, sig):
    """TinyViT's ``Attention``: LayerNorm, fused ``qkv`` viewed ``(.., heads, 2 * key_dim +
    val_dim)``, attention with ``attention_biases``, ``proj``. On channel units: the norm's
    ``|gamma|``, one value layer per head (its row range of ``qkv``), the heads side by side
    (an index map), then ``proj``; query/key rows and the bias table are off-path."""
    mod = c.module(node)
    if len(node.args) + len(node.kwargs) != 1:
        c.fail(node, "attention called with other arguments")
    if not isinstance(mod.norm, torch.nn.LayerNorm) or tuple(mod.norm.normalized_shape) != (x.n,):
        c.fail(node, "attention whose norm is not a LayerNorm over the channels")
    _tokens(c, node, x, mod.qkv.in_features, "attention")
    b, t, lead, spatial = c.b, node.target, x.lead, x.spatial
    heads, kd, vd = mod.num_heads, mod.key_dim, mod.val_dim
    per = 2 * kd + vd
    if mod.qkv.out_features != heads * per or mod.proj.in_features != heads * vd:
        c.fail(node, "qkv/proj sizes do not fit the heads")
    gamma = None if mod.norm.weight is None else mod.norm.weight.detach().double().abs().cpu().numpy()
    if x.group == 0:
        b.input_fixed = True
    x = x.with_(scale=_mul(x.scale, gamma), lead=1, spatial=(), channels_last=False)
    x = b.materialize(x, node.name)
    param, w = f"{t}.qkv.weight", mod.qkv.weight
    terms = []
    for h in range(heads):
        r0 = h * per + 2 * kd
        spec = attention._linear_spec(c, node, f"{t}.qkv.v{h}", param, w, rows=(r0, r0 + vd))
        vh = b.materialize(_Value(n=vd, spatial=(), terms=[_Term(src=x.group, layer=spec, in_scale=x.scale)]),
                           f"{node.name}.value{h}")
        terms.append(_Term(src=vh.group, src_units=np.arange(vd), dst_units=h * vd + np.arange(vd)))
        attention._offpath(c, param, w, f"{t}.qkv", rows=(h * per, r0))
    cat = b.materialize(_Value(n=heads * vd, spatial=(), terms=terms), f"{node.name}.heads")
    _position_bias(c, mod, t, {"qkv.weight", "proj.weight"})
    o_spec = attention._linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", mod.proj.weight)
    out = _Value(n=mod.proj.out_features, spatial=(), terms=[_Term(src=cat.group, layer=o_spec)])
    return out.with_(spatial=spatial, channels_last=True, lead=lead)


_FUNCTIONS = {"window_partition", "window_reverse"}  # timm's (fx-wrapped in some versions)


def rule_for(node, mod):
    """The rule of an attention or window-attention fx node (or a window partition, ``F.pad``),
    else None."""
    if node.op == "call_module":
        if _is_swin_attention(mod):
            return swin_attention
        if _is_tiny_vit_attention(mod):
            return tiny_vit_attention
    elif node.op == "call_function":
        if node.target is F.pad:
            return pad
        if getattr(node.target, "__name__", None) in _FUNCTIONS and \
                getattr(node.target, "__module__", "").startswith("timm."):
            return ops.rearrange
    return attention.rule_for(node, mod)
