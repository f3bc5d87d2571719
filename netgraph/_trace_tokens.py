"""Rules for token mixing (MLP-Mixer, ResMLP, gMLP): positions are held alike.

Units are channels, and at the linearisation point (all-ones input, ``|w|``, zero
biases) every position (token) of a channel carries the same value. A ``Linear`` applied
to a tensor whose *last* dimension is a position dimension (after a transpose: Mixer's
``mlp_tokens``, ResMLP's ``linear_tokens``, gMLP's spatial ``proj``) maps channel ``c`` to
channel ``c`` only; it is held at its "tokens alike" value, the uniform per-unit scale
``sum |W| / T_out`` (the mean row sum of ``|W|``: the total mass over tokens is
preserved), and its weight is an *off-path parameter* (role ``"token mixing"``). The
operation is recognised by the dimension index of the input's last dimension, never by
comparing sizes.

ResMLP's ``Affine`` (``torch.addcmul(beta, alpha, x)``) is the per-unit scale
``|alpha|``. timm's ``SpatialGatingUnit`` (gMLP: ``u * proj(norm(v))`` with ``u, v =
x.chunk(2, -1)``) is traced as a leaf: ``u`` is the path, the gate is held at its value
when the *real* network reads the all-ones input (as gates are), its ``proj`` weight is
off-path, and the rows of the preceding Linear that produce ``v`` feed only the gate:
they become off-path rows (``Layer.rows`` on the path rows). See ``docs/data-model.md``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ._trace_attention import _offpath
from ._trace_ops import _per_unit, _scaled
from ._trace_values import _mul, _Term, _Value


def token_linear(c, node, x: _Value, mod, shape) -> _Value:
    """A Linear over the last dimension of ``(batch, channels, *positions)``: it mixes
    positions (tokens) within each channel. Held at the tokens-alike value, the uniform
    scale ``sum |W| / out_features``; the weight is off-path (``"token mixing"``)."""
    if x.flat_k != 1 or not x.spatial or x.channels_last:
        c.fail(node, "a token-mixing Linear on a tensor that is not (batch, channels, *positions)")
    if x.group == 0:
        c.fail(node, "a Linear over the last dimension of the model's input would mix positions (the "
                     "input's dimension 1 is its channels); token mixing is supported after a layer reads channels")
    if x.spatial[-1] != mod.in_features:
        c.fail(node, f"expects {mod.in_features} positions, the input has {x.spatial[-1]}")
    w = mod.weight.detach()
    s = float(w.double().abs().sum()) / mod.out_features
    if not np.isfinite(s):
        c.fail(node, f"parameter '{node.target}.weight' has NaN or infinite values")
    _offpath(c, f"{node.target}.weight", w.shape, node.target, role="token mixing")
    spatial = tuple(shape[2:]) if shape is not None else (*x.spatial[:-1], mod.out_features)
    return _scaled(x, np.full(x.n, s)).with_(spatial=spatial)


def addcmul(c, node, x, sig):
    """``torch.addcmul(input, tensor1, tensor2, value=v)`` with one tensor input (ResMLP's
    ``Affine``: ``beta + alpha * x``): the per-unit scale ``|v * other factor|``; an
    additive constant ``input`` is a bias (zeroed)."""
    names = ["input", "tensor1", "tensor2"]
    a = dict(zip(names, node.args), **node.kwargs)
    on = [k for k in names if c.is_signal(a.get(k))]
    if len(on) != 1:
        c.fail(node, "addcmul of several input-dependent tensors (a product or sum of two tensors)")
    value = c.const(a.get("value", 1))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        c.fail(node, "addcmul with a value that is not a number")
    if on[0] == "input":
        return x  # input + constant * constant: a bias
    other = c.const(a["tensor2" if on[0] == "tensor1" else "tensor1"])
    if not isinstance(other, torch.Tensor):
        c.fail(node, "addcmul by a factor that is not a constant tensor")
    s = _per_unit(c, node, x, other, "the addcmul factor") * abs(float(value))
    return _scaled(x, s)


def is_spatial_gating(m) -> bool:
    """timm's gMLP ``SpatialGatingUnit`` (a ``norm`` and a token ``proj`` Linear)."""
    return (type(m).__name__ == "SpatialGatingUnit" and type(m).__module__.startswith("timm.")
            and isinstance(getattr(m, "proj", None), torch.nn.Linear)
            and isinstance(getattr(m, "norm", None), torch.nn.Module))


def is_leaf(m) -> bool:
    """Whether the tracer calls module ``m`` as a whole (a token-mixing unit with its own rule)."""
    return is_spatial_gating(m)


def _gate_hook(found, name, m, args, out):
    x = args[0]
    u, v = x.chunk(2, dim=-1)
    g = m.proj(m.norm(v).transpose(-1, -2)).transpose(-1, -2)
    same = isinstance(out, torch.Tensor) and out.shape == u.shape and \
        torch.allclose(out, u * g, rtol=1e-9, atol=1e-12 * float(out.abs().max()))
    found[name] = g.abs().reshape(-1, g.shape[-1]).mean(dim=0).numpy().copy() if same else None


def _gate_values(c) -> dict:
    """``{module: per-channel mean over tokens of |gate|}`` of every spatial gating unit when
    the real network (real weights and biases, eval, float64 copy) reads the all-ones input;
    ``None`` for a unit whose forward is not ``u * proj(norm(v))``."""
    found = getattr(c, "token_gates", None)
    if found is not None:
        return found
    gm64 = copy.deepcopy(c.recorder.module).double()
    found, hooks = {}, []
    for name, m in gm64.named_modules():
        if is_spatial_gating(m):
            hooks.append(m.register_forward_hook(lambda m, a, o, name=name: _gate_hook(found, name, m, a, o)))
    try:
        with torch.no_grad():
            torch.fx.Interpreter(gm64).run(torch.ones((1, *c.b.input_shape), dtype=torch.float64))
    finally:
        for h in hooks:
            h.remove()
    c.token_gates = found
    return found


def _path_rows(c, node, x: _Value, half: int) -> _Value:
    """The first ``half`` channels of a pending Linear output, as that Linear's rows
    ``[0, half)``; its rows ``[half, n)`` feed only the gate: off-path rows."""
    if x.group is not None or not x.terms or any(t.layer is None for t in x.terms):
        c.fail(node, "the gated tensor is not the output of a Linear used only by the gating unit")
    terms = []
    for t in x.terms:
        spec = t.layer
        if spec["kind"] != "linear" or spec.get("rows") is not None or spec["weight"].shape[0] != x.n:
            c.fail(node, "the gated tensor is not the whole output of a Linear")
        new = dict(spec, weight=spec["weight"][:half], rows=(0, half))
        _offpath(c, spec["param"], spec["param_shape"], spec["name"], rows=(half, x.n), role="gate")
        terms.append(_Term(src=t.src, layer=new, in_scale=t.in_scale,
                           scale=None if t.scale is None else t.scale[:half]))
    return x.with_(n=half, terms=terms, scale=None if x.scale is None else x.scale[:half])


def spatial_gating(c, node, x, sig):
    """timm's ``SpatialGatingUnit``: ``u`` (the first half of the channels) times the gate
    held at its real value on the all-ones input (per channel, averaged over tokens)."""
    mod = c.module(node)
    if len(node.args) + len(node.kwargs) != 1:
        c.fail(node, "a spatial gating unit called with extra arguments")
    if not (isinstance(x, _Value) and x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n % 2:
        c.fail(node, "a spatial gating unit on a tensor that is not (batch, tokens, 2 * channels)")
    if x.spatial[0] != mod.proj.in_features:
        c.fail(node, f"the gate's proj expects {mod.proj.in_features} tokens, the input has {x.spatial[0]}")
    gate = _gate_values(c).get(node.target)
    if gate is None or gate.shape != (x.n // 2,) or not np.all(np.isfinite(gate)):
        c.fail(node, "a spatial gating unit whose forward is not u * proj(norm(v)).T with finite values")
    u = _path_rows(c, node, x, x.n // 2)
    _offpath(c, f"{node.target}.proj.weight", mod.proj.weight.shape, node.target, role="gate")
    return u.with_(scale=_mul(u.scale, gate))


def rule_for(node, mod):
    """The token-mixing rule of an fx node (spatial gating unit, ``addcmul``), else None."""
    if node.op == "call_module":
        return spatial_gating if is_spatial_gating(mod) else None
    if (node.op == "call_function" and node.target is torch.addcmul) or \
            (node.op == "call_method" and node.target == "addcmul"):
        return addcmul
    return None
