"""Independent float64 autograd reference of a network *linearised* by the documented rules.

The real model is copied to float64 in eval mode and its modules are substituted:

* Linear/Conv weights -> ``|w| ** p`` (or the 0/1 mask for path counting), biases -> 0;
* BatchNorm (module, or any module with a ``running_var`` buffer read through
  ``F.batch_norm``) -> per-channel ``(|gamma| / sqrt(var + eps)) ** p``, shift 0;
* LayerNorm, GroupNorm, timm's ``LayerNorm2d`` and modules tagged
  ``linearise = "channel_scale"`` -> per-channel ``|gamma| ** p`` (frozen statistics: no
  centring, no division); InstanceNorm the same, or with running statistics (eval)
  ``(|gamma| / sqrt(running_var + eps)) ** p``;
* activation modules (ReLU6, Hardswish, GELU, SiLU, Sigmoid, ..., and timm's own
  ``timm.layers.activations`` classes) -> identity;
* parameters named ``gamma``, ``gamma_*`` or ``layer_scale`` (layer scale: timm, CaiT/EdgeNeXt,
  torchvision ConvNeXt) and buffers named ``factor`` -> ``|.| ** p``;
* modules tagged ``linearise = "gate"`` (``x * act(...)``) and timm's ``SqueezeExcite``
  (``SEModule``: ``x * gate(...)``) -> the
  per-channel scale ``|act output| ** p`` recorded when the *real* model reads an
  all-ones input (their own weights are off-path: no gradient is taken for them).

* timm's ``Attention`` -> ``proj(mean over tokens of V(x))`` (:class:`TimmValueOnly`);
  position embeddings and class tokens (additive constants) -> 0;
* torchvision MaxViT's ``RelativePositionalMultiHeadAttention`` -> ``merge(V(x))``
  (:class:`MaxvitValueOnly`);
* torchvision's ``ShiftedWindowAttention`` (V1, V2) -> ``proj(V(x))`` (:class:`WindowValueOnly`);
* timm's Swin ``WindowAttention`` (V1, V2) -> ``proj(V(x))`` (:class:`TimmWindowValueOnly`), TinyViT's
  ``Attention`` -> ``proj(mean over tokens of V(norm(x)))`` per head (:class:`TinyVitValueOnly`);
* ``nn.MultiheadAttention`` -> ``out_proj(V(x))`` (:class:`ValueOnly`: the attention
  probabilities are uniform at identical tokens, so attention is the identity on the
  value vectors), the value rows of ``in_proj_weight`` -> ``|w| ** p``; the query/key
  rows are off-path (never used: their gradient is zero);

then an all-ones input is pushed through and ``R = sum(output)`` is differentiated with
respect to the substituted weights. Nothing here reads the unit graph.
"""

import copy

import torch
import torch.nn as nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
               nn.Hardtanh, nn.LeakyReLU, nn.Mish, nn.ELU, nn.Dropout)


class ChannelScale(nn.Module):
    """Multiply channel ``dim`` by a fixed vector."""

    def __init__(self, s, dim):
        super().__init__()
        self.register_buffer("s", s)
        self.dim = dim

    def forward(self, x):
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.s.reshape(shape)


class ValueOnly(nn.Module):
    """Self-attention with uniform probabilities: ``out_proj(mean over tokens of x @ W_v.T)``."""

    def __init__(self, mha):
        super().__init__()
        self.mha = mha

    def forward(self, query, key=None, value=None, **kwargs):
        m = self.mha
        e = m.embed_dim
        w_v = m.in_proj_weight[2 * e:] if m._qkv_same_embed_dim else m.v_proj_weight
        v = query @ w_v.T
        return m.out_proj(v.mean(1, keepdim=True).expand_as(v)), None


class WindowValueOnly(nn.Module):
    """torchvision's Swin window attention with uniform probabilities: ``proj(V(x))``
    (all positions are alike, so the mean over a window of identical values is the value)."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x):
        e = x.shape[-1]
        return self.attn.proj(x @ self.attn.qkv.weight[2 * e:].T)


class TimmValueOnly(nn.Module):
    """timm's ``Attention`` with uniform probabilities: ``proj(mean over tokens of V(x))``."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x, attn_mask=None, is_causal=False):
        a = self.attn
        v = x @ a.qkv.weight[2 * (a.qkv.out_features // 3):].T
        return a.proj(v.mean(1, keepdim=True).expand_as(v))


class TimmWindowValueOnly(nn.Module):
    """timm's Swin ``WindowAttention`` (V1, V2) with uniform probabilities: ``proj(V(x))``
    (the value rows ``[2a, 3a)`` of ``qkv``; the shift mask keeps each row summing to 1)."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x, mask=None):
        a = self.attn
        return a.proj(x @ a.qkv.weight[2 * (a.qkv.out_features // 3):].T)


class TinyVitValueOnly(nn.Module):
    """TinyViT's ``Attention`` with uniform probabilities: ``proj(mean over tokens of V(norm(x)))``,
    the value rows of ``qkv`` per head (``view(.., heads, 2 * key_dim + val_dim)``)."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x):
        a = self.attn
        w = a.qkv.weight.view(a.num_heads, 2 * a.key_dim + a.val_dim, -1)[:, 2 * a.key_dim:]
        v = a.norm(x) @ w.reshape(a.num_heads * a.val_dim, -1).T
        return a.proj(v.mean(1, keepdim=True).expand_as(v))


class MaxvitValueOnly(nn.Module):
    """torchvision MaxViT's attention with uniform probabilities: ``merge(mean over P of V(x))``."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x):
        a = self.attn
        v = x @ a.to_qkv.weight[2 * (a.to_qkv.out_features // 3):].T
        return a.merge(v.mean(2, keepdim=True).expand_as(v))


def _gate_values(m, input_shape) -> dict:
    """Per-channel ``|gate|`` of every module tagged ``linearise = "gate"`` (its ``act``
    output) when the real model reads an all-ones input, averaged over positions."""
    found, hooks = {}, []
    for name, mod in m.named_modules():
        is_timm_se = type(mod).__name__ in ("SEModule", "SqueezeExcite") and hasattr(mod, "gate")
        if getattr(mod, "linearise", None) == "gate" or is_timm_se:
            def hook(_, __, out, name=name):
                found[name] = out.detach().abs().transpose(0, 1).reshape(out.shape[1], -1).mean(1)
            hooks.append((mod.gate if is_timm_se else mod.act).register_forward_hook(hook))
    if hooks:
        with torch.no_grad():
            m(torch.ones((1, *input_shape), dtype=torch.double))
        for h in hooks:
            h.remove()
    return found


def _replace(root, name, new):
    parent = root
    *path, last = name.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, last, new)


def linearised_flow(model, input_shape, power=1, masks=None, count=False):
    """``(R, {param: dR/dv}, {param: v})`` of the linearised network (see module docstring)."""
    m = copy.deepcopy(model).double().eval()
    masks = masks or {}
    p = 0 if count else power
    vs = {}
    subs = []
    gates = _gate_values(m, input_shape)
    with torch.no_grad():
        for name, mod in list(m.named_modules()):
            if any(name.startswith(g + ".") for g in gates):
                continue
            if name in gates:
                subs.append((name, ChannelScale(gates[name] ** p, 1)))
            elif type(mod).__name__ == "WindowAttention" and type(mod).__module__.startswith("timm."):
                subs.append((name, TimmWindowValueOnly(mod)))
            elif type(mod).__module__ == "timm.models.tiny_vit" and type(mod).__name__ == "Attention":
                subs.append((name, TinyVitValueOnly(mod)))
            elif type(mod).__name__ == "Attention" and type(mod).__module__.startswith("timm."):
                subs.append((name, TimmValueOnly(mod)))
            elif type(mod).__name__ == "RelativePositionalMultiHeadAttention":
                subs.append((name, MaxvitValueOnly(mod)))
            elif type(mod).__name__ in ("ShiftedWindowAttention", "ShiftedWindowAttentionV2"):
                subs.append((name, WindowValueOnly(mod)))  # qkv and proj: Linear, substituted below
            elif isinstance(mod, nn.MultiheadAttention):
                pname = f"{name}.in_proj_weight" if mod._qkv_same_embed_dim else f"{name}.v_proj_weight"
                w = getattr(mod, pname.rsplit(".", 1)[1])
                mask = masks.get(pname)
                mask = torch.ones_like(w) if mask is None else mask.to(torch.double)
                w.copy_(mask.clone() if count else w.abs() ** power * mask)
                vs[pname] = w
                subs.append((name, ValueOnly(mod)))
            elif isinstance(mod, LAYERS):
                pname = f"{name}.weight"
                mask = masks.get(pname)
                mask = torch.ones_like(mod.weight) if mask is None else mask.to(torch.double)
                v = mask.clone() if count else mod.weight.abs() ** power * mask
                mod.weight.copy_(v)
                if mod.bias is not None:
                    mod.bias.zero_()
                vs[pname] = mod.weight
            elif isinstance(mod, nn.modules.instancenorm._InstanceNorm):  # per channel, dimension 1
                n = mod.num_features
                gamma = mod.weight.detach().abs() if mod.weight is not None else torch.ones(n, dtype=torch.double)
                if mod.track_running_stats:  # eval: the running statistics, as an eval BatchNorm
                    gamma = gamma / torch.sqrt(mod.running_var + mod.eps)
                subs.append((name, ChannelScale(gamma ** p, 1)))
            elif getattr(mod, "running_var", None) is not None:
                root = torch.sqrt(mod.running_var + mod.eps)
                gamma = mod.weight.abs() if mod.weight is not None else torch.ones_like(root)
                mod.weight.copy_((gamma / root) ** p * root)
                mod.bias.zero_()
                mod.running_mean.zero_()
            elif isinstance(mod, (nn.LayerNorm, nn.GroupNorm)) or getattr(mod, "linearise", None) == "channel_scale":
                gamma = mod.weight.detach().abs().flatten() if mod.weight is not None else None
                n = gamma.numel() if gamma is not None else mod.normalized_shape[0]
                s = gamma ** p if gamma is not None else torch.ones(n, dtype=torch.double)
                channels_first = isinstance(mod, nn.GroupNorm) or getattr(mod, "linearise", None) \
                    or type(mod).__name__ == "LayerNorm2d"
                dim = 1 if channels_first else -1
                subs.append((name, ChannelScale(s, dim)))
            elif isinstance(mod, ACTIVATIONS) or type(mod).__module__ == "timm.layers.activations":
                subs.append((name, nn.Identity()))
            for pn, prm in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                if pn in ("gamma", "layer_scale", "factor") or pn.startswith("gamma_"):  # also CaiT/EdgeNeXt gamma_1, gamma_xca
                    prm.copy_(prm.abs() ** p)
                elif pn in ("pos_embed", "pos_embedding", "cls_token", "class_token", "reg_token"):
                    prm.zero_()  # additive constants: biases
    for name, new in reversed(subs):  # children first (a substitute may hold its original)
        _replace(m, name, new)
    x = torch.ones((1, *input_shape), dtype=torch.double)
    R = m(x).sum()
    R.backward()
    vs = {n: v for n, v in vs.items() if v.grad is not None}  # off-path (V2's cpb_mlp): unused
    grads = {n: v.grad.detach().clone() for n, v in vs.items()}
    return R.item(), grads, {n: v.detach().clone() for n, v in vs.items()}


def reference(model, input_shape, masks=None):
    """SynFlow ``R`` and scores, ``R2`` and the path-kernel trace, and the path count."""
    R, g1, v1 = linearised_flow(model, input_shape, 1, masks)
    scores = {n: (g1[n] * v1[n]).numpy() for n in g1}
    R2, g2, _ = linearised_flow(model, input_shape, 2, masks)
    trace = 0.0
    for n, g in g2.items():
        mk = masks.get(n) if masks else None
        trace += float(g.sum() if mk is None else (g * mk.to(g.dtype)).sum())
    Rc, _, _ = linearised_flow(model, input_shape, masks=masks, count=True)
    return {"R": R, "scores": scores, "R2": R2, "trace": trace, "paths": Rc}
