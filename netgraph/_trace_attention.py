"""Rules for attention: the attention probabilities are held at the linearisation point.

With an all-ones input every token is alike, so the queries are alike, the keys are alike
and the softmax over keys is uniform: each token's output is the mean of identical value
vectors, i.e. the value itself. On channel units the attention block is therefore
``out_proj(V(x))``: the value projection and the output projection are ordinary layers
(per head they are row/column ranges; the unit graph is per channel), and the query/key
weights only feed the probabilities: they are *off-path parameters* (no path crosses
them; SynFlow gives them exactly zero score), kept dense by the same policy as gate
weights. A fused query/key/value parameter becomes a layer over its value rows
(``Layer.rows``) plus off-path query/key rows. See ``docs/data-model.md``.
"""

from __future__ import annotations

import operator

import numpy as np
import torch

from ._trace_values import _Term, _Tuple, _Value


def _weight(c, node, t: torch.Tensor, param: str) -> np.ndarray:
    t = t.detach()
    if not torch.isfinite(t).all():
        c.fail(node, f"parameter {param!r} has NaN or infinite values")
    arr = t.cpu().numpy()
    return (arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)).copy()


def _linear_spec(c, node, name, param, full: torch.Tensor, rows=None) -> dict:
    """A linear layer spec over ``full[rows[0]:rows[1]]`` (the whole parameter if ``rows`` is None)."""
    part = full if rows is None else full[rows[0]:rows[1]]
    w = _weight(c, node, part, param)
    return dict(name=name, kind="linear", param=param, param_shape=tuple(full.shape),
                weight=w.reshape(w.shape[0], w.shape[1], 1), groups=1, order=c.b.order, rows=rows)


def _offpath(c, param, full, module, rows=None, role="attention query/key"):
    """List ``param`` (a tensor or its shape; only ``rows`` of it if given) as an off-path
    parameter of ``role``. A parameter listed twice, or also a layer's, is refused by
    :class:`~netgraph.graph.NetGraph` as shared weights."""
    shape = tuple(int(d) for d in (full.shape if isinstance(full, torch.Tensor) else full))
    numel = int(np.prod(shape)) if rows is None else (rows[1] - rows[0]) * int(np.prod(shape[1:]))
    entry = {"param": param, "shape": shape, "numel": int(numel), "role": role, "module": module}
    if rows is not None:
        entry["rows"] = tuple(rows)
    c.offpath.append(entry)


def value_path(c, node, x: _Value, v_spec: dict, o_spec: dict) -> _Value:
    """``o_spec(v_spec(x))`` per token of ``x``: the attention block under the linearisation
    (the caller lays the result out over the tokens)."""
    b = c.b
    if x.group == 0:
        b.input_fixed = True
    x = b.materialize(x.with_(spatial=(), channels_last=False), node.name)
    v = _Value(n=v_spec["weight"].shape[0], spatial=(), terms=[_Term(src=x.group, layer=v_spec, in_scale=x.scale)])
    v = b.materialize(v, f"{node.name}.value")
    n = o_spec["weight"].shape[0]
    return _Value(n=n, spatial=(), terms=[_Term(src=v.group, layer=o_spec)])


def multihead_attention(c, node, x, sig):
    """``nn.MultiheadAttention`` as self-attention on ``(batch, tokens, features)`` (batch_first)."""
    mod = c.module(node)
    names = ["query", "key", "value", "key_padding_mask", "need_weights", "attn_mask"]
    a = dict(zip(names, node.args), **node.kwargs)
    if not (a.get("query") is a.get("key") is a.get("value")):
        c.fail(node, "attention whose query, key and value are not the same tensor (only self-attention)")
    if not mod.batch_first:
        c.fail(node, "MultiheadAttention with batch_first=False (tokens first)")
    if mod.bias_k is not None or mod.add_zero_attn:
        c.fail(node, "MultiheadAttention with add_bias_kv or add_zero_attn (an extra key/value token)")
    if a.get("attn_mask") is not None or a.get("key_padding_mask") is not None:
        c.fail(node, "MultiheadAttention with an attention mask")
    if not (x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n != mod.embed_dim:
        c.fail(node, f"MultiheadAttention on a tensor that is not (batch, tokens, {mod.embed_dim})")
    for u in node.users:  # the attention weights (if asked for) are not a tensor of units
        if u.op == "call_function" and u.target is operator.getitem and u.args[1] != 0 and u.users:
            c.fail(node, "the attention weights are used")
    t, e = node.target, mod.embed_dim
    if not mod._qkv_same_embed_dim:  # kdim/vdim differ from embed_dim: never self-attention
        c.fail(node, "MultiheadAttention with separate key/value dimensions")
    param = f"{t}.in_proj_weight"
    v_spec = _linear_spec(c, node, t, param, mod.in_proj_weight, rows=(2 * e, 3 * e))
    _offpath(c, param, mod.in_proj_weight, t, rows=(0, 2 * e))
    o_spec = _linear_spec(c, node, f"{t}.out_proj", f"{t}.out_proj.weight", mod.out_proj.weight)
    out = value_path(c, node, x, v_spec, o_spec).with_(spatial=x.spatial, channels_last=True)
    return _Tuple([out, None])


_SWIN_ARGS = ["input", "qkv_weight", "proj_weight", "relative_position_bias", "window_size", "num_heads",
              "shift_size", "attention_dropout", "dropout", "qkv_bias", "proj_bias", "logit_scale", "training"]


def _module_weight(c, node, arg, what):
    """``(module name, weight)`` of a Linear whose ``weight`` the fx node ``arg`` reads."""
    if not (isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and arg.target.endswith(".weight")):
        c.fail(node, f"the {what} is computed, not a Linear's own weight")
    qual = arg.target[: -len(".weight")]
    mod = c.model_modules.get(qual)
    if mod is None or getattr(mod, "weight", None) is None or mod.weight.dim() != 2:
        c.fail(node, f"the {what} {arg.target!r} is not the weight of a Linear")
    return qual, mod.weight


def shifted_window_attention(c, node, x, sig):
    """torchvision's Swin window attention (V1 and V2): ``proj(V(x))`` at every position.

    Window partition, cyclic shift and padding to whole windows are rearrangements of
    positions, which are all alike under the linearisation; the shift's attention mask
    keeps every row of probabilities summing to 1 (mass preserving). The relative position
    bias (its table, V2's ``cpb_mlp``) and the logit scale only change probabilities:
    off-path.
    """
    a = dict(zip(_SWIN_ARGS, node.args), **node.kwargs)
    if not (x.channels_last and len(x.spatial) == 2 and x.flat_k == 1):
        c.fail(node, "window attention on a tensor that is not (batch, H, W, channels)")
    qkv_name, qkv = _module_weight(c, node, a.get("qkv_weight"), "qkv weight")
    proj_name, proj = _module_weight(c, node, a.get("proj_weight"), "projection weight")
    e = x.n
    if tuple(qkv.shape) != (3 * e, e) or tuple(proj.shape) != (e, e):
        c.fail(node, f"qkv/projection weights {tuple(qkv.shape)}/{tuple(proj.shape)} do not fit {e} channels")
    param = f"{qkv_name}.weight"
    v_spec = _linear_spec(c, node, qkv_name, param, qkv, rows=(2 * e, 3 * e))
    _offpath(c, param, qkv, qkv_name, rows=(0, 2 * e))
    owner = qkv_name.rsplit(".", 1)[0] if "." in qkv_name else ""
    attn = c.model_modules.get(owner)
    if attn is not None and owner:
        for n, p in attn.named_parameters():
            full = f"{owner}.{n}"
            if full not in (param, f"{proj_name}.weight") and p.dim() > 1 and \
                    (n.endswith("weight") or n.endswith("table")):
                _offpath(c, full, p, owner, role="attention position bias")
    o_spec = _linear_spec(c, node, proj_name, f"{proj_name}.weight", proj)
    return value_path(c, node, x, v_spec, o_spec).with_(spatial=x.spatial, channels_last=True)


def _is_timm_attention(m) -> bool:
    """timm's ViT ``Attention`` (a fused ``qkv`` Linear and a ``proj`` Linear); other timm
    classes named ``Attention`` (LeViT, EfficientFormer) are traced through instead."""
    return (type(m).__name__ == "Attention" and type(m).__module__.startswith("timm.")
            and isinstance(getattr(m, "qkv", None), torch.nn.Linear)
            and isinstance(getattr(m, "proj", None), torch.nn.Linear)
            and m.qkv.out_features == 3 * m.proj.in_features)  # q, k, v of equal sizes


def _is_maxvit_attention(m) -> bool:
    return type(m).__name__ == "RelativePositionalMultiHeadAttention" and \
        type(m).__module__.startswith("torchvision.")


def is_leaf(m) -> bool:
    """Whether the tracer calls module ``m`` as a whole (an attention with a rule of its own)."""
    return _is_timm_attention(m) or _is_maxvit_attention(m)


def maxvit_attention(c, node, x, sig):
    """torchvision MaxViT's ``RelativePositionalMultiHeadAttention`` on ``(batch, G, P, D)``:
    ``merge(V(x))`` with the value rows of ``to_qkv`` (``chunk(3, -1)``: rows ``[2D, 3D)``);
    query/key rows and the relative position bias table are off-path."""
    mod = c.module(node)
    d = mod.to_qkv.in_features
    if len(node.args) + len(node.kwargs) != 1 or not (x.channels_last and len(x.spatial) == 2) or x.n != d:
        c.fail(node, f"attention on a tensor that is not (batch, groups, positions, {d})")
    t, a = node.target, mod.to_qkv.out_features // 3
    param = f"{t}.to_qkv.weight"
    v_spec = _linear_spec(c, node, f"{t}.to_qkv", param, mod.to_qkv.weight, rows=(2 * a, 3 * a))
    _offpath(c, param, mod.to_qkv.weight, f"{t}.to_qkv", rows=(0, 2 * a))
    _offpath(c, f"{t}.relative_position_bias_table", mod.relative_position_bias_table, t, role="attention position bias")
    o_spec = _linear_spec(c, node, f"{t}.merge", f"{t}.merge.weight", mod.merge.weight)
    return value_path(c, node, x, v_spec, o_spec).with_(spatial=x.spatial, channels_last=True)


def timm_attention(c, node, x, sig):
    """timm's ``Attention``: a fused ``qkv`` Linear (rows ``q, k, v`` of ``heads * head_dim``
    each), attention (``F.scaled_dot_product_attention`` or softmax of ``q @ k^T``), then
    ``proj``: ``proj(V(x))`` on channel units; the query/key rows (and q/k norms) are off-path."""
    mod = c.module(node)
    extra = [a for a in (*node.args[1:], *node.kwargs.values()) if a is not None and a is not False]
    if extra:
        c.fail(node, "attention called with a mask or other arguments")
    if getattr(mod, "gate", None) is not None:
        c.fail(node, "gated attention (a sigmoid gate on the attention output)")
    if not isinstance(getattr(mod, "norm", torch.nn.Identity()), torch.nn.Identity):
        c.fail(node, "attention with scale_norm (a norm between the value and the projection)")
    if not (x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n != mod.qkv.in_features:
        c.fail(node, f"attention on a tensor that is not (batch, tokens, {mod.qkv.in_features})")
    t, a = node.target, mod.qkv.out_features // 3
    param = f"{t}.qkv.weight"
    v_spec = _linear_spec(c, node, f"{t}.qkv", param, mod.qkv.weight, rows=(2 * a, 3 * a))
    _offpath(c, param, mod.qkv.weight, f"{t}.qkv", rows=(0, 2 * a))
    o_spec = _linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", mod.proj.weight)
    return value_path(c, node, x, v_spec, o_spec).with_(spatial=x.spatial, channels_last=True)


def rule_for(node, mod):
    """The attention rule of an fx node (or torchvision's Swin patch merging), else None."""
    if node.op == "call_module":
        if isinstance(mod, torch.nn.MultiheadAttention):
            return multihead_attention
        if _is_maxvit_attention(mod):
            return maxvit_attention
        return timm_attention if _is_timm_attention(mod) else None
    name = getattr(node.target, "__name__", None) if node.op == "call_function" else None
    if name == "shifted_window_attention":  # fx-wrapped in torchvision's Swin (V1 and V2)
        return shifted_window_attention
    if name == "_patch_merging_pad":  # strided slices concatenated on channels: an index map
        return rearrange
    return None


from ._trace_rearrange import rearrange  # noqa: E402
