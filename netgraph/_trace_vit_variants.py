"""Rules for the attention variants of timm's vision transformers (CaiT, EdgeNeXt, PiT), and
the registration of these and LeViT's (:mod:`netgraph._trace_levit`) as leaf modules.

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

* Tokens of different units (PiT's ``cat([fc(cls), x])``) read by a per-token layer or
  attention become the *mean token*: channel ``j`` gets an edge of weight
  ``(tokens holding the unit) / (tokens)`` from each unit in position ``j``
  (:func:`mean_token`); rearrangements and LayerNorm (:func:`token_layernorm`) keep the
  layout, so CaiT's final ``norm(cat([cls, x]))[:, 0]`` reads the class token only.

Layers applied to constants (EdgeNeXt's Fourier position encoding) carry no path: their
weights are off-path (role ``"constant"``). See ``docs/data-model.md``.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

from . import _trace_levit as levit
from ._trace_attention import _linear_spec, _offpath
from ._trace_vit_common import _flat, _layer_out, _only_input, _timm, _tokens, _value_rows
from ._trace_ops import layernorm, parameter_of
from ._trace_values import _Term, _Value


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


# -- CaiT: talking heads, class attention ---------------------------------------------------------

def talking_heads(c, node, x, sig):
    """timm CaiT's ``TalkingHeadAttn`` on ``(batch, N, C)``: ``proj(t V(x))``, ``t`` per head.

    ``proj_l`` mixes logits that are constant over the keys (the softmax stays uniform);
    ``proj_w`` mixes the uniform probabilities, so the rows of head ``h`` sum to
    ``t_h = sum_g W_w[h, g] + N b_w[h]``: held at the real weights, ``|t_h|`` scales the
    value channels of head ``h``. ``proj_l``, ``proj_w`` and the query/key rows are off-path.
    """
    mod = c.module(node)
    _only_input(c, node)
    n, heads = mod.qkv.in_features, mod.num_heads
    _tokens(c, node, x, n)
    if mod.qkv.out_features != 3 * n or n % heads:
        c.fail(node, f"qkv shape does not fit {n} channels in {heads} heads")
    t = node.target
    v_spec = _value_rows(c, node, t, mod.qkv, 2 * n, n)
    for mix in ("proj_l", "proj_w"):
        _offpath(c, f"{t}.{mix}.weight", getattr(mod, mix).weight, t, role="attention head mixing")
    w = mod.proj_w.weight.detach().double()
    bias = mod.proj_w.bias.detach().double() if mod.proj_w.bias is not None else torch.zeros(heads, dtype=torch.double)
    rows = (w.sum(1) + x.spatial[0] * bias).abs().cpu().numpy()
    if not np.all(np.isfinite(rows)):
        c.fail(node, "proj_w has NaN or infinite values")
    o_spec = _linear_spec(c, node, f"{t}.proj", f"{t}.proj.weight", mod.proj.weight)
    v = c.b.materialize(_layer_out(c, node, _flat(c, node, x), v_spec, out_scale=np.repeat(rows, n // heads)),
                        f"{node.name}.value")
    return _layer_out(c, node, v, o_spec).with_(spatial=x.spatial, channels_last=True)


def _gamma(c, node, mod, what) -> np.ndarray:
    norm = getattr(mod, what)
    if not isinstance(norm, torch.nn.LayerNorm) or norm.normalized_shape != (mod.attn.v.in_features,):
        c.fail(node, f"{what} is not a LayerNorm over the channels")
    return np.ones(norm.normalized_shape[0]) if norm.weight is None else \
        norm.weight.detach().double().abs().cpu().numpy()


def class_attention_block(c, node, x, sig):
    """timm CaiT's ``LayerScaleBlockClassAttn(x, cls)``: the class token's update.

    ``u = [cls, x]`` (``N + 1`` tokens); the class token's query over ``u`` is uniform, so
    ``attn(norm1(u)) = proj(V(m))`` with the mean token ``m = (norm1(cls) + N norm1(x)) / (N + 1)``
    (two edges of weight ``1/(N+1)`` and ``N/(N+1)``; the first block's class token is a
    constant: no edge). Then ``cls + gamma_1 attn``, ``+ gamma_2 mlp(norm2(.))``. The query
    and key weights are off-path.
    """
    mod = c.module(node)
    b = c.b
    attn, mlp = mod.attn, mod.mlp
    if type(attn).__name__ != "ClassAttn" or not all(isinstance(getattr(attn, k, None), torch.nn.Linear)
                                                     for k in ("q", "k", "v", "proj")):
        c.fail(node, "a class-attention block whose attention is not timm's ClassAttn")
    if not (isinstance(getattr(mlp, "fc1", None), torch.nn.Linear) and isinstance(getattr(mlp, "fc2", None), torch.nn.Linear)
            and isinstance(getattr(mlp, "norm", torch.nn.Identity()), torch.nn.Identity)):
        c.fail(node, "a class-attention block whose MLP is not fc1 - activation - fc2")
    n = attn.v.in_features
    _tokens(c, node, x, n)
    cls = c.val(node.args[1]) if len(node.args) > 1 else c.val(node.kwargs.get("x_cls"))
    if cls is not None and not (isinstance(cls, _Value) and cls.channels_last and cls.spatial == (1,) and cls.n == n):
        c.fail(node, f"the class token is not (batch, 1, {n})")
    t, tokens = node.target, x.spatial[0]
    g1, g2 = _gamma(c, node, mod, "norm1"), _gamma(c, node, mod, "norm2")
    for part in ("q", "k"):
        _offpath(c, f"{t}.attn.{part}.weight", getattr(attn, part).weight, f"{t}.attn.{part}")
    terms = [term.scaled(g1 * tokens / (tokens + 1)) for term in b.terms_of(_flat(c, node, x))]
    if cls is not None:
        cls = _flat(c, node, cls)
        terms += [term.scaled(g1 / (tokens + 1)) for term in b.terms_of(cls)]
    mean = b.materialize(_Value(n=n, spatial=(), terms=terms), f"{node.name}.mean_token")
    spec = {k: _linear_spec(c, node, f"{t}.{k}", f"{t}.{k}.weight", m.weight)
            for k, m in (("attn.v", attn.v), ("attn.proj", attn.proj), ("mlp.fc1", mlp.fc1), ("mlp.fc2", mlp.fc2))}
    v = b.materialize(_layer_out(c, node, mean, spec["attn.v"]), f"{node.name}.value")
    upd = _layer_out(c, node, v, spec["attn.proj"], out_scale=np.abs(mod.gamma_1.detach().double().cpu().numpy()))
    if cls is not None:
        upd = upd.with_(terms=upd.terms + b.terms_of(cls))
    upd = b.materialize(upd, f"{node.name}.cls")
    hidden = b.materialize(_layer_out(c, node, upd, spec["mlp.fc1"], in_scale=g2), f"{node.name}.mlp")
    out = _layer_out(c, node, hidden, spec["mlp.fc2"], out_scale=np.abs(mod.gamma_2.detach().double().cpu().numpy()))
    return out.with_(terms=out.terms + b.terms_of(upd), spatial=(1,), channels_last=True)


def token_layernorm(c, node, x, sig):
    """LayerNorm over the last dimension, also of tokens concatenated from different units (CaiT's
    ``cat([cls, x])`` before its final norm): per-unit ``|gamma|`` of the column each unit is in."""
    if x is None or x.raw is None:
        return layernorm(c, node, x, sig)
    mod = c.module(node)
    ids = x.raw.reshape(-1, x.raw.shape[-1]).long()
    if tuple(mod.normalized_shape) != (ids.shape[1],):
        c.fail(node, f"LayerNorm over {tuple(mod.normalized_shape)}: only over the channel dimension (last) is supported")
    col = torch.arange(ids.shape[1]).expand_as(ids)
    keep = ids >= 0
    where = torch.full((x.n,), -1, dtype=torch.long).scatter_(0, ids[keep], col[keep])
    if not bool((where[ids[keep]] == col[keep]).all()):
        c.fail(node, "LayerNorm of a layout where a unit sits in several channel positions")
    gamma = np.ones(ids.shape[1]) if mod.weight is None else mod.weight.detach().double().abs().cpu().numpy()
    s = np.where(where.numpy() >= 0, gamma[np.maximum(where.numpy(), 0)], 1.0)
    return x.with_(terms=[term.scaled(s) for term in x.terms])



# -- tokens of different units: the mean token ------------------------------------------------------

def _distinct_dst(src, dst, scale):
    """Split edges ``src -> dst`` into pieces whose destinations are distinct."""
    out = []
    while dst.size:
        _, first = np.unique(dst, return_index=True)
        out.append((src[first], dst[first], scale[first]))
        rest = np.ones(dst.size, bool)
        rest[first] = False
        src, dst, scale = src[rest], dst[rest], scale[rest]
    return out


def mean_token(v: _Value):
    """``v`` (tokens concatenated from different units, e.g. PiT's ``cat([cls, x])`` with a class
    token computed by a Linear) as one set of channel units holding the mean token, or None.

    A per-token layer or attention cannot read tokens of different units without sharing its
    weights between them, so the tokens are made alike: channel ``j`` of the result is the mean
    over the tokens of channel ``j``, an edge of weight ``(tokens holding the unit) / (tokens)``
    from each unit (constant tokens, such as a parameter class token, are left out as in ViT).
    """
    raw = v.raw
    if raw is None or raw.dim() != 3 or v.lead != 1:  # not with windows folded into the batch
        return None
    ids = raw[0].long()
    const = ids < 0
    if not bool((const.any(1) == const.all(1)).all()):
        return None
    ids = ids[~const.all(1)]
    if ids.shape[0] < 2 or ids.unique(dim=0).shape[0] < 2:
        return None
    owner = np.full(v.n, -1)
    for i, t in enumerate(v.terms):
        owner[t.dst_units[t.dst_units < v.n]] = i
    own = owner[ids.numpy()]
    if not bool((own == own[:, :1]).all()):
        return None  # a token must be one source's whole set of channels (channels last, not first)
    col = torch.arange(ids.shape[1]).expand_as(ids)
    where = torch.full((v.n,), -1, dtype=torch.long).scatter_(0, ids.flatten(), col.flatten())
    if not bool((where[ids] == col).all()):
        return None  # a unit in several channel positions: not a concatenation of token sequences
    weight = (torch.bincount(ids.flatten(), minlength=v.n).double() / ids.shape[0]).numpy()
    where = where.numpy()
    terms = []
    for t in v.terms:
        keep = weight[t.dst_units] > 0
        scale = weight[t.dst_units] * (1.0 if t.scale is None else t.scale)
        for su, du, sc in _distinct_dst(t.src_units[keep], where[t.dst_units[keep]], scale[keep]):
            terms.append(_Term(src=t.src, scale=sc, src_units=su, dst_units=du))
    return _Value(n=ids.shape[1], spatial=(raw.shape[1],), channels_last=True, terms=terms)


def raw_readers(ops) -> tuple:
    """The rules that read any layout (rearrangements; :func:`token_layernorm`)."""
    return ops.rearrange, ops.getitem, ops.flatten, ops.identity, token_layernorm


def merge_tokens(c, nodes, rule, ops) -> dict:
    """Before ``rule`` reads ``nodes``: if it cannot read a layout of tokens of different units
    (any rule but rearrangements and :func:`token_layernorm`), show it such a value as its
    mean token (:func:`mean_token`, one per node, cached); other layouts are left for the
    caller to refuse. Returns ``{node: value}`` to put back after the rule, so that the graph
    does not depend on the order of readers (a later rearrangement still reads the tokens)."""
    if rule is None or rule in raw_readers(ops):
        return {}
    cache, saved = c.__dict__.setdefault("mean_tokens", {}), {}
    for a in nodes:
        v = c.env.get(a)
        if isinstance(v, _Value) and v.raw is not None:
            if a not in cache:
                cache[a] = mean_token(v)
            if cache[a] is not None:
                saved[a], c.env[a] = v, cache[a]
    return saved


# -- registration -----------------------------------------------------------------------------

_LEAVES = {"CrossCovarianceAttn": xca, "TalkingHeadAttn": talking_heads,
           "LayerScaleBlockClassAttn": class_attention_block}


def _leaf_rule(m):
    if type(m).__module__ == "timm.models.levit":
        return levit.LEAVES.get(type(m).__name__)
    return next((rule for name, rule in _LEAVES.items() if _timm(m, name)), None)


def is_leaf(m) -> bool:
    """Whether the tracer calls module ``m`` as a whole (a variant with a rule here or in
    :mod:`netgraph._trace_levit`)."""
    return _leaf_rule(m) is not None


def rule_for(node, mod):
    """The rule of an fx node calling one of the variants above, else None."""
    if node.op != "call_module" or mod is None:
        return None
    if isinstance(mod, torch.nn.LayerNorm):
        return token_layernorm
    return _leaf_rule(mod)


#: Functional layers and the positions of their weight arguments (either operand of a product).
_FUNCTIONAL_WEIGHT = {F.linear: (1,), F.conv1d: (1,), F.conv2d: (1,), F.conv3d: (1,), operator.matmul: (0, 1),
                      torch.matmul: (0, 1), torch.mm: (0, 1), torch.bmm: (0, 1)}


def constant_layers(c, gm, layer_params) -> list:
    """Off-path entries for the weights of Linear/Conv modules, and for the parameters (2-D or
    more) of ``F.linear``/``F.convNd``/matrix products, called only on constants (EdgeNeXt's Fourier
    position encoding): their output is an additive constant, no path crosses them."""
    out, seen = [], set(layer_params) | {p["param"] for p in c.offpath}
    root = c.model_modules[""]
    for n in gm.graph.nodes:
        if n in c.recorder.signal:
            continue
        found = []
        if n.op == "call_module":
            mod = c.model_modules.get(n.target)
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
                found.append((f"{n.target}.weight", mod.weight, n.target))
        elif (n.op == "call_function" and n.target in _FUNCTIONAL_WEIGHT) or (
                n.op == "call_method" and n.target in ("matmul", "mm", "bmm", "__matmul__")):
            for i in _FUNCTIONAL_WEIGHT.get(n.target, (0, 1)):
                arg = n.args[i] if len(n.args) > i else n.kwargs.get("weight" if i == 1 else "input")
                param = parameter_of(c, arg)
                if param is not None and root.get_parameter(param).dim() >= 2:
                    found.append((param, root.get_parameter(param), param.rpartition(".")[0]))
        for param, w, where in found:
            if param not in seen:
                seen.add(param)
                out.append({"param": param, "shape": tuple(w.shape), "numel": w.numel(), "role": "constant",
                            "module": where})
    return out
