"""timm modules traced as leaves, each with a linearisation rule of its own.

The tracer calls these modules as a whole (``is_leaf``) instead of tracing through them,
because their inside is not a sum over paths but the rule for the whole module is
simple (see ``docs/data-model.md``):

* polynomial activations (MetaFormer's ``StarReLU`` ``s * relu(x) ** 2 + b``,
  ``SquaredReLU``): an activation is the identity, the learned factor ``s`` a
  multiplication by a number (``|s|``), the bias nothing;
* ConvNeXt V2's ``GlobalResponseNorm`` ``x + gamma * x * N(x) + beta``: the response
  statistic frozen at ``N(x) = 1`` (as LayerNorm's statistics are frozen), i.e. the
  per-unit scale ``1 + |gamma|``;
* weight-standardised convolutions (``StdConv2d``, ``ScaledStdConv2d`` and their
  ``Same`` variants, NFNet and BiT): a conv layer holding the *effective* weight the
  network uses, standardised from the parameter when the graph is built;
* FastViT's ``Attention`` (timm's ViT attention on a ``(batch, C, H, W)`` map):
  ``proj(V(x))`` at every position, as for timm's ``Attention``;
* EfficientFormer's ``Attention`` (per-head ``q, k, v`` rows interleaved in ``qkv``, a
  learned position bias on the logits): ``proj(V(x))`` with one layer per head over its
  value rows; query/key rows and the position bias are off-path.
"""

from __future__ import annotations

import numpy as np
import torch

from ._trace_attention import _linear_spec, _offpath, value_path
from ._trace_values import _Term, _Value

_POLY_ACTS = ("StarReLU", "SquaredReLU")
_STD_CONVS = ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame")


def _timm(m, names, module="timm.") -> bool:
    return type(m).__name__ in names and type(m).__module__.startswith(module)


def _is_efficientformer_attention(m) -> bool:
    return _timm(m, ("Attention",), "timm.models.efficientformer") and \
        all(hasattr(m, a) for a in ("qkv", "proj", "key_dim", "val_dim", "num_heads", "attention_biases"))


def _is_fastvit_attention(m) -> bool:
    return _timm(m, ("Attention",), "timm.models.fastvit") and \
        isinstance(getattr(m, "qkv", None), torch.nn.Linear) and isinstance(getattr(m, "proj", None), torch.nn.Linear)


def _kind(m):
    if _timm(m, _POLY_ACTS):
        return poly_activation
    if _timm(m, ("GlobalResponseNorm",)):
        return global_response_norm
    if _timm(m, _STD_CONVS) and isinstance(m, torch.nn.Conv2d):
        return std_conv
    if _is_efficientformer_attention(m):
        return efficientformer_attention
    if _is_fastvit_attention(m):
        return fastvit_attention
    return None


def is_leaf(m) -> bool:
    """Whether the tracer calls module ``m`` as a whole (a timm module with a rule here)."""
    return _kind(m) is not None


def rule_for(node, mod):
    """The rule of an fx node calling one of these modules, else None."""
    return _kind(mod) if node.op == "call_module" else None


def _one_input(c, node):
    if len(node.args) + len(node.kwargs) != 1:
        c.fail(node, "called with more than one argument")


def poly_activation(c, node, x, sig):
    """``StarReLU``: per-unit ``|s|`` (``relu(x) ** 2`` is an activation: identity; ``+ b`` a
    bias); ``SquaredReLU``: identity."""
    _one_input(c, node)
    s = getattr(c.module(node), "scale", None)
    if s is None:
        return x
    if not isinstance(s, torch.Tensor) or s.numel() != 1:
        c.fail(node, "the activation's scale is not a single number")
    k = abs(float(s.detach().double()))
    if not np.isfinite(k):
        c.fail(node, "the activation's scale is NaN or infinite")
    return x.with_(scale=np.full(x.n, k) if x.scale is None else x.scale * k)


def global_response_norm(c, node, x, sig):
    """``x + gamma * x * N(x) + beta`` with ``N(x) = 1``: per-unit ``1 + |gamma|``."""
    _one_input(c, node)
    mod = c.module(node)
    last = mod.channel_dim == -1
    if x.flat_k != 1 or len(x.spatial) != 2 or x.channels_last != last:
        c.fail(node, f"GlobalResponseNorm (channels {'last' if last else 'first'}) of a tensor that is not "
                     f"(batch, {'H, W, channels' if last else 'channels, H, W'})")
    if mod.weight.numel() != x.n:
        c.fail(node, f"has {mod.weight.numel()} channels, the input has {x.n} units")
    s = 1.0 + mod.weight.detach().double().abs().cpu().numpy().reshape(-1)
    if not np.all(np.isfinite(s)):
        c.fail(node, "NaN or infinite weight")
    return x.with_(scale=s if x.scale is None else x.scale * s)


def effective_weight(mod) -> torch.Tensor:
    """The weight a weight-standardised conv uses, in float64: per output channel
    ``(w - mean) / sqrt(var + eps)`` (biased variance), times ``gain * scale`` if it has them."""
    w = mod.weight.detach().double().cpu()
    flat = w.reshape(w.shape[0], -1)
    var, mean = torch.var_mean(flat, dim=1, unbiased=False, keepdim=True)
    out = (flat - mean) / torch.sqrt(var + float(mod.eps))
    if getattr(mod, "gain", None) is not None:
        out = out * (mod.gain.detach().double().cpu().reshape(-1, 1) * float(mod.scale))
    return out.reshape(w.shape)


def std_conv(c, node, x, sig):
    """A weight-standardised conv: a conv layer over its parameter holding the effective
    weight (statistics of the dense parameter, frozen when the graph is built)."""
    _one_input(c, node)
    mod = c.module(node)
    if x.flat_k != 1 or x.channels_last or len(x.spatial) != 2 or x.n != mod.in_channels:
        c.fail(node, f"a conv applied to a tensor that is not (batch, {mod.in_channels}, H, W)")
    if not bool(torch.isfinite(mod.weight.detach()).all()):
        c.fail(node, f"parameter '{node.target}.weight' has NaN or infinite values")
    w = effective_weight(mod)
    if not bool(torch.isfinite(w).all()):
        c.fail(node, "the standardised weight has NaN or infinite values")
    dtype = mod.weight.dtype if mod.weight.dtype in (torch.float32, torch.float64) else torch.float32
    arr = w.to(dtype).numpy()
    arr.flags.writeable = False
    b = c.b
    if x.group == 0:
        b.input_fixed = True
    x = b.materialize(x, node.name)
    spec = dict(name=node.target, kind="conv", param=f"{node.target}.weight", param_shape=tuple(arr.shape),
                weight=arr.reshape(arr.shape[0], arr.shape[1], -1), groups=int(mod.groups), order=b.order)
    shape = c.shape(node)
    return _Value(n=mod.out_channels, spatial=tuple(shape[2:]), terms=[_Term(src=x.group, layer=spec, in_scale=x.scale)])


def efficientformer_attention(c, node, x, sig):
    """EfficientFormer's ``Attention`` on ``(batch, tokens, dim)``: ``proj(V(x))``.

    ``qkv`` rows are per head ``[q (key_dim), k (key_dim), v (val_dim)]``; each head's value
    rows are a layer (``Layer.rows``) into its own units, concatenated (an index map) into
    the ``heads * val_dim`` units ``proj`` reads. The position bias is added to the logits:
    the probabilities are not uniform, but each row sums to 1 and every token's value is
    the same, so the output is the value whatever the bias (its gradient is exactly 0).
    """
    _one_input(c, node)
    mod = c.module(node)
    h, kd, vd = int(mod.num_heads), int(mod.key_dim), int(mod.val_dim)
    per = 2 * kd + vd
    qkv, proj = mod.qkv, mod.proj
    if not (x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n != qkv.in_features:
        c.fail(node, f"attention on a tensor that is not (batch, tokens, {qkv.in_features})")
    if qkv.out_features != h * per or proj.in_features != h * vd:
        c.fail(node, "qkv/proj sizes do not match heads * (2 key_dim + val_dim) and heads * val_dim")
    t, b, tokens = node.target, c.b, x.spatial
    param = f"{t}.qkv.weight"
    if x.group == 0:
        b.input_fixed = True
    x = b.materialize(x.with_(spatial=(), channels_last=False), node.name)
    terms, ar = [], np.arange(vd)
    for i in range(h):
        spec = _linear_spec(c, node, f"{t}.qkv.v{i}" if h > 1 else f"{t}.qkv", param, qkv.weight,
                            rows=(i * per + 2 * kd, (i + 1) * per))
        _offpath(c, param, qkv.weight, f"{t}.qkv", rows=(i * per, i * per + 2 * kd))
        v = b.materialize(_Value(n=vd, spatial=(), terms=[_Term(src=x.group, layer=spec, in_scale=x.scale)]),
                          f"{node.name}.value{i}")
        terms.append(_Term(src=v.group, src_units=ar, dst_units=i * vd + ar))
    _offpath(c, f"{t}.attention_biases", mod.attention_biases, t, role="attention position bias")
    if h > 1:
        v = b.materialize(_Value(n=h * vd, spatial=(), terms=terms), f"{node.name}.value")
    o_spec = _linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", proj.weight)
    return _Value(n=proj.out_features, spatial=tokens, channels_last=True, terms=[_Term(src=v.group, layer=o_spec)])


def fastvit_attention(c, node, x, sig):
    """FastViT's ``Attention`` on ``(batch, C, H, W)``: ``proj(V(x))`` at every position
    (value rows ``[2C, 3C)`` of ``qkv``; query/key rows off-path)."""
    _one_input(c, node)
    mod = c.module(node)
    e = mod.qkv.in_features
    if x.flat_k != 1 or x.channels_last or len(x.spatial) != 2 or x.n != e or mod.qkv.out_features != 3 * e:
        c.fail(node, f"attention on a tensor that is not (batch, {e}, H, W)")
    t = node.target
    param = f"{t}.qkv.weight"
    v_spec = _linear_spec(c, node, f"{t}.qkv", param, mod.qkv.weight, rows=(2 * e, 3 * e))
    _offpath(c, param, mod.qkv.weight, f"{t}.qkv", rows=(0, 2 * e))
    o_spec = _linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", mod.proj.weight)
    return value_path(c, node, x, v_spec, o_spec).with_(spatial=x.spatial, channels_last=False)
