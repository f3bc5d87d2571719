"""Rules for timm's LeViT: ``LinearNorm`` and its two attentions, traced as leaf modules.

* ``LinearNorm`` is a Linear on tokens followed by an eval ``BatchNorm1d`` over the flattened
  ``(batch * tokens, C)`` tensor: a layer with the per-unit scale
  ``|gamma| / sqrt(running_var + eps)``.
* ``Attention`` splits ``qkv`` per head into ``[q, k, v]`` rows (``key_dim, key_dim,
  val_dim``), so the value rows of the parameter are one range per head: one layer per head
  (``Layer.rows``), its units laid side by side by an index map. The attention biases are
  added to the logits: the probabilities are not uniform, but every row sums to 1 and the
  value vectors are alike, so the output is the value itself. Attention is
  ``proj(V(x))`` (``proj`` = activation, ``LinearNorm``); query/key rows and the attention
  biases are off-path.
* ``AttentionDownsample``: ``kv`` split per head into ``[k, v]``; the queries come from the
  subsampled tokens (``q``: off-path), so the output has fewer tokens, each
  ``proj(V(x))``.

See ``docs/data-model.md``.
"""

from __future__ import annotations

import numpy as np

from ._trace_attention import _linear_spec, _offpath
from ._trace_vit_common import _flat, _only_input, _tokens
from ._trace_values import _Term, _Value


def _bn_scale(c, node, bn, rows=None) -> np.ndarray:
    var = bn.running_var.detach().double().cpu().numpy()
    gamma = np.ones_like(var) if bn.weight is None else bn.weight.detach().double().abs().cpu().numpy()
    s = gamma / np.sqrt(var + bn.eps)
    if not np.all(np.isfinite(s)):
        c.fail(node, "NaN or infinite BatchNorm weight or running_var")
    return s if rows is None else s[rows[0]:rows[1]]


def _linear_norm(c, node, src: _Value, ln, name: str, rows=None, out_scale=None) -> _Value:
    """The pending output of ``LinearNorm`` ``ln`` (rows ``rows`` of its Linear) reading group ``src``."""
    spec = _linear_spec(c, node, name, f"{name}.weight", ln.linear.weight, rows=rows)
    if rows is not None:
        spec["name"] = f"{name}[{rows[0]}:{rows[1]}]"
    return _Value(n=spec["weight"].shape[0], spatial=(),
                  terms=[_Term(src=src.group, layer=spec, in_scale=src.scale, scale=_bn_scale(c, node, ln.bn, rows))])


def linear_norm(c, node, x, sig):
    """timm LeViT's ``LinearNorm`` on ``(batch, tokens, C)``: a layer with the eval BatchNorm's scale."""
    mod = c.module(node)
    _only_input(c, node)
    _tokens(c, node, x, mod.linear.in_features)
    out = _linear_norm(c, node, _flat(c, node, x), mod, f"{node.target}.linear")
    return out.with_(spatial=x.spatial, channels_last=True)


def _head_values(c, node, src: _Value, ln, name: str, heads: int, per_head: int, offset: int, val_dim: int) -> _Value:
    """The value rows ``[h per_head + offset, h per_head + offset + val_dim)`` of every head of a
    ``LinearNorm`` as one layer each, their units side by side (value channel ``h val_dim + j``);
    the rows before each head's value rows (its query/key rows) are off-path."""
    b = c.b
    if ln.linear.out_features != heads * per_head:
        c.fail(node, f"{name} has {ln.linear.out_features} rows, not {heads} heads of {per_head}")
    terms = []
    for h in range(heads):  # a few heads: one layer each
        start = h * per_head
        _offpath(c, f"{name}.linear.weight", ln.linear.weight, f"{name}.linear", rows=(start, start + offset))
        rows = (start + offset, start + offset + val_dim)
        g = b.materialize(_linear_norm(c, node, src, ln, f"{name}.linear", rows=rows), f"{node.name}.v{h}")
        terms.append(_Term(src=g.group, src_units=np.arange(val_dim), dst_units=h * val_dim + np.arange(val_dim)))
    return b.materialize(_Value(n=heads * val_dim, spatial=(), terms=terms), f"{node.name}.value")


def _attention(c, node, x, sig, kv, per_head: int, offset: int):
    mod = c.module(node)
    _only_input(c, node)
    if mod.use_conv:
        c.fail(node, "LeViT attention on convolutional layout (use_conv=True)")
    t = node.target
    _tokens(c, node, x, getattr(mod, kv).linear.in_features)
    v = _head_values(c, node, _flat(c, node, x), getattr(mod, kv), f"{t}.{kv}", mod.num_heads, per_head, offset,
                     mod.val_dim)
    _offpath(c, f"{t}.attention_biases", mod.attention_biases, t, role="attention position bias")
    if v.n != mod.proj.ln.linear.in_features:
        c.fail(node, "the values do not fit the output projection")
    return _linear_norm(c, node, v, mod.proj.ln, f"{t}.proj.ln.linear")


def levit_attention(c, node, x, sig):
    """timm LeViT's ``Attention``: ``proj(V(x))`` on every token."""
    mod = c.module(node)
    out = _attention(c, node, x, sig, "qkv", 2 * mod.key_dim + mod.val_dim, 2 * mod.key_dim)
    return out.with_(spatial=x.spatial, channels_last=True)


def levit_attention_downsample(c, node, x, sig):
    """timm LeViT's ``AttentionDownsample``: ``proj(V(x))`` on the subsampled tokens; the
    queries (``q``: subsampling and a ``LinearNorm``) are off-path."""
    mod = c.module(node)
    out = _attention(c, node, x, sig, "kv", mod.key_dim + mod.val_dim, mod.key_dim)
    _offpath(c, f"{node.target}.q.ln.linear.weight", mod.q.ln.linear.weight, f"{node.target}.q.ln.linear")
    shape = c.shape(node)
    return out.with_(spatial=(shape[1],), channels_last=True)


LEAVES = {"LinearNorm": linear_norm, "Attention": levit_attention, "AttentionDownsample": levit_attention_downsample}
