"""Rules of the unit-graph builder: one function per kind of operation.

Each rule gets the build context, the fx node and the symbolic values of its tensor inputs
and returns the symbolic value of its output (see :mod:`netgraph._trace_values`), or calls
``c.fail(node, why)``. The linearisation rules (what each operation becomes in the unit
graph, and why) are written in ``docs/data-model.md``.

Rearrangements (view, reshape, permute, transpose, flatten, squeeze, getitem, cat, split,
chunk, channel shuffle...) are not special-cased one by one: the operation is run on a
tensor holding each element's channel id, and the ids of the result say which channel of
which input every output channel is (an index map; concatenation, split and channel
permutation become weight-1 edges from the source units; see
:mod:`netgraph._trace_rearrange`).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._trace_values import _Tuple, _Value, _mul

# -- operation tables ------------------------------------------------------------------------

IDENTITY_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
IDENTITY_FUNCTIONS = {
    F.relu, torch.relu, torch.relu_, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.softplus, F.softsign, F.logsigmoid, F.dropout, F.dropout1d,
    F.dropout2d, F.dropout3d, F.alpha_dropout, torch.dropout, torch.clamp, torch.clip,
    torch.clamp_min, F.hardtanh_, F.leaky_relu_, F.elu_,
}
IDENTITY_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "detach",
    "float", "double", "to", "type_as", "clamp", "clamp_", "clamp_min", "clamp_min_", "clip",
    "clip_", "hardtanh", "hardtanh_",
}
IDENTITY_FUNCTION_NAMES = {"stochastic_depth", "drop_path"}  # torchvision.ops / timm, fx-wrapped
POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
)
POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, torch.max_pool2d,
    torch.avg_pool1d, torch.adaptive_avg_pool1d, torch.max_pool1d, torch.max_pool3d,
    F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear, F.pad,
}
BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
INSTANCE_NORM_MODULES = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)
SOFTMAX_CALLS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "softmax", "log_softmax"}
# a subtraction is an add whose second operand has weight -1: |-1| = 1 under the linearisation
SUB_CALLS = {operator.sub, operator.isub, torch.sub, torch.subtract, torch.rsub, "sub", "sub_", "subtract",
             "subtract_", "__sub__", "__rsub__"}
ADD_CALLS = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__"} | SUB_CALLS
MUL_CALLS = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
DIV_CALLS = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
FLATTEN_CALLS = {torch.flatten, "flatten", "view", "reshape"}
REDUCE_CALLS = {torch.mean: "mean", "mean": "mean", torch.sum: "sum", "sum": "sum",
                torch.amax: "max", "amax": "max"}
REARRANGE_CALLS = {
    torch.cat, torch.concat, torch.concatenate, torch.split, torch.chunk, torch.permute,
    torch.transpose, torch.swapaxes, torch.movedim, torch.squeeze, torch.unsqueeze, torch.narrow,
    torch.reshape, torch.unbind, torch.stack, torch.roll, torch.flip, operator.getitem,
    torch.channel_shuffle, F.pixel_shuffle, F.pixel_unshuffle, torch.unflatten,
    "permute", "transpose", "swapaxes", "movedim", "squeeze", "unsqueeze", "narrow", "split",
    "chunk", "unbind", "unflatten", "expand", "expand_as", "roll", "flip", "repeat",
}
REARRANGE_MODULES = (nn.Flatten, nn.Unflatten, nn.ChannelShuffle, nn.PixelShuffle, nn.PixelUnshuffle)
LAYER_SCALE_WARN = 1e-3
#: ``from_torch(layer_scale=...)``: keep layer-scale factors as they are, or score as if they were 1.
LAYER_SCALE_MODES = ("as_is", "one")


class Blocker(Exception):
    """An operation the unit graph cannot represent (collected, reported together)."""


class Ctx:
    """What the rules see: the builder, modules, recorded shapes/constants, ``fail``."""

    def __init__(self, b, modules, recorder, env, layer_scale="as_is"):
        self.b = b
        self.modules = modules
        self.recorder = recorder
        self.env = env
        self.small_scales: list = []
        self.layer_scale = layer_scale  # one of LAYER_SCALE_MODES

    def fail(self, node, why=""):
        raise Blocker(why)

    def module(self, node):
        return self.modules[node.target]

    def shape(self, node):
        return node.meta.get("ng_shape")

    def is_signal(self, a) -> bool:
        return isinstance(a, torch.fx.Node) and a in self.recorder.signal

    def val(self, a):
        return self.env.get(a) if isinstance(a, torch.fx.Node) else None

    def const(self, a):
        return torch.fx.node.map_arg(a, lambda n: n.meta.get("ng_value"))

    def bind(self, node, names, defaults):
        out = dict(defaults)
        out.update(zip(names, node.args))
        out.update(node.kwargs)
        return {k: (v if k == names[0] else self.const(v)) for k, v in out.items()}

    def value_shape(self, v: _Value) -> tuple:
        if v.flat_k != 1:
            return (1, v.n * v.flat_k)
        return (v.lead, *v.spatial, v.n) if v.channels_last else (v.lead, v.n, *v.spatial)


# -- helpers ---------------------------------------------------------------------------------

def _dims(arg, ndim) -> list:
    if arg is None:
        return list(range(ndim))
    if isinstance(arg, int):
        arg = [arg]
    return sorted({int(d) % ndim for d in arg})


def _per_unit(c, node, x: _Value, factor, what: str) -> np.ndarray:
    """The per-channel values of a constant tensor broadcast against ``x`` (refused otherwise)."""
    t = torch.as_tensor(factor).detach().double().cpu()
    shape = c.shape(node)
    in_shape = (1, x.n * x.flat_k) if x.flat_k != 1 else c.value_shape(x)
    if shape is None or tuple(shape) != tuple(in_shape):
        c.fail(node, f"{what} changes the tensor's shape by broadcasting")
    full = t.expand(shape) if t.dim() <= len(shape) else None
    if full is None:
        c.fail(node, f"{what} has more dimensions than the tensor")
    if x.flat_k != 1:
        per = full.reshape(x.n, x.flat_k)
    else:
        per = full.movedim(x.cdim, 0).reshape(x.n, -1)
    if per.shape[1] and not bool((per == per[:, :1]).all()):
        c.fail(node, f"{what} is not constant over each channel (not a per-unit scale)")
    s = per[:, 0].abs().numpy().copy()
    if not np.all(np.isfinite(s)):
        c.fail(node, f"{what} has NaN or infinite values")
    return s


def _scaled(x: _Value, s) -> _Value:
    return x.with_(scale=_mul(x.scale, s))


# -- rules -----------------------------------------------------------------------------------

def identity(c, node, x, sig):
    if len(sig) != 1:
        c.fail(node, "an elementwise operation between two tensors (gating is not supported)")
    return x


def softmax(c, node, x, sig):
    return x.with_(last_only=True)


def batchnorm(c, node, x, sig):
    """Eval BatchNorm (module or ``F.batch_norm``): per-unit ``|gamma| / sqrt(running_var + eps)``."""
    if node.op == "call_module":
        mod = c.module(node)
        weight, var, eps = mod.weight, mod.running_var, mod.eps
    else:
        a = c.bind(node, ["input", "running_mean", "running_var", "weight", "bias", "training",
                          "momentum", "eps"], {"weight": None, "bias": None, "training": False,
                                                "momentum": 0.1, "eps": 1e-5})
        weight, var, eps = a["weight"], a["running_var"], a["eps"]
        if a["training"]:
            c.fail(node, "batch_norm with training=True (batch statistics)")
    if x.flat_k != 1 or (x.channels_last and x.spatial):
        c.fail(node, "BatchNorm of a tensor whose channels are not dimension 1")
    return _scaled(x, _norm_scale(c, node, x.n, weight, var, eps))


def _norm_scale(c, node, n, weight, var, eps):
    """Per unit ``|gamma| / sqrt(var + eps)`` (``gamma``, ``var`` of ``n`` units or None: 1)."""
    if weight is not None and weight.numel() != n or var is not None and var.numel() != n:
        c.fail(node, f"has {var.numel() if var is not None else weight.numel()} features, the input has {n} units")
    gamma = weight.detach().double().abs().cpu().numpy() if weight is not None else np.ones(n)
    var = var.detach().double().cpu().numpy() if var is not None else np.ones(n)
    scale = gamma / np.sqrt(var + eps)
    if not np.all(np.isfinite(scale)):
        c.fail(node, "NaN or infinite weight or running_var")
    return scale


def instancenorm(c, node, x, sig):
    """InstanceNorm (module or ``F.instance_norm``): with running statistics in eval, an eval
    BatchNorm's scale; with the instance's own (the default), frozen-statistics ``|gamma|``."""
    if node.op == "call_module":
        mod = c.module(node)
        weight, eps = mod.weight, mod.eps
        var = mod.running_var if mod.track_running_stats else None
    else:
        a = c.bind(node, ["input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum",
                          "eps"], {"running_mean": None, "running_var": None, "weight": None, "bias": None,
                                   "use_input_stats": True, "momentum": 0.1, "eps": 1e-5})
        weight, eps = a["weight"], a["eps"]
        var = None if a["use_input_stats"] else a["running_var"]
    if x.flat_k != 1 or x.channels_last or not x.spatial:
        c.fail(node, "InstanceNorm of a tensor that is not (batch, channels, *spatial)")
    # the instance's statistics: frozen at mean 0, var 1, no eps (as LayerNorm, GroupNorm)
    return _scaled(x, _norm_scale(c, node, x.n, weight, var, eps if var is not None else 0.0))


def layernorm(c, node, x, sig):
    """LayerNorm over the channel dimension: frozen-statistics affine, per-unit ``|gamma|``."""
    if node.op == "call_module":
        mod = c.module(node)
        shape, weight = tuple(mod.normalized_shape), mod.weight
    else:
        a = c.bind(node, ["input", "normalized_shape", "weight", "bias", "eps"],
                   {"weight": None, "bias": None, "eps": 1e-5})
        shape, weight = tuple(a["normalized_shape"]), a["weight"]
    channel_last_dim = x.channels_last or not x.spatial
    if x.flat_k != 1 or not channel_last_dim or shape != (x.n,):
        c.fail(node, f"LayerNorm over {shape}: only over the channel dimension (last) is supported")
    return _scaled(x, None if weight is None else weight.detach().double().abs().cpu().numpy())


def groupnorm(c, node, x, sig):
    """GroupNorm: frozen-statistics affine, per-unit ``|gamma|``."""
    if node.op == "call_module":
        weight = c.module(node).weight
    else:
        weight = c.bind(node, ["input", "num_groups", "weight", "bias", "eps"],
                        {"weight": None, "bias": None, "eps": 1e-5})["weight"]
    if x.flat_k != 1 or x.channels_last:
        c.fail(node, "GroupNorm of a tensor whose channels are not dimension 1")
    return _scaled(x, None if weight is None else weight.detach().double().abs().cpu().numpy())


def pool(c, node, x, sig):
    out_shape = c.shape(node)
    if x.flat_k != 1 or not x.spatial or x.channels_last:
        c.fail(node, "pooling over a tensor that is not (batch, channels, *spatial)")
    if out_shape is None or len(out_shape) < 2 or out_shape[1] != x.n:
        c.fail(node, "the operation changes the number of channels")
    return x.with_(spatial=tuple(out_shape[2:]))


def reduce(c, node, x, sig):
    """Mean / max over non-channel dimensions, classified by the dimension index (never by size)."""
    kind = REDUCE_CALLS[node.target]
    a = c.bind(node, ["input", "dim", "keepdim"], {"dim": None, "keepdim": False})
    if x.flat_k != 1:
        c.fail(node, "a reduction over a flattened feature map")
    dims = _dims(a["dim"], x.ndim)
    if 0 in dims or x.cdim in dims:
        c.fail(node, f"{kind} over dimension(s) {dims} mixes the channel (or batch) dimension "
                     f"{x.cdim}; only reductions over spatial/token dimensions are supported")
    if kind == "sum":
        # a sum over positions multiplies the number of paths, not a weight: it would enter
        # R, R2 and path counts alike (power 1), which per-unit scales cannot express
        c.fail(node, "sum over spatial/token dimensions is not supported; use mean (or a pooling layer)")
    sizes = c.value_shape(x)
    keep = bool(a["keepdim"])
    spatial_dims = [d for d in range(x.ndim) if d not in (0, x.cdim)]
    spatial = tuple(1 if d in dims else sizes[d] for d in spatial_dims if keep or d not in dims)
    return x.with_(spatial=spatial, channels_last=x.channels_last and bool(spatial))


def flatten(c, node, x, sig):
    """Flatten to ``(batch, features)`` keeps channel units (bundles of ``H*W`` columns)."""
    b = c.b
    out_shape = c.shape(node)
    if x.raw is not None or x.channels_last or out_shape is None:
        return rearrange(c, node, x, sig)
    in_features = x.n * x.flat_k * int(np.prod(x.spatial, dtype=np.int64))
    if len(out_shape) == 2 + len(x.spatial) and out_shape[1] == x.n and tuple(out_shape[2:]) == x.spatial:
        return x  # a view that changes nothing
    if tuple(out_shape) != (1, in_features):
        return rearrange(c, node, x, sig)
    if not x.spatial:
        return x
    k = int(np.prod(x.spatial, dtype=np.int64))
    if x.group == 0 and not b.input_fixed and x.spatial == b.input_shape[1:]:
        # The input is flattened before anything reads its channels: use feature units.
        b.input_fixed = True
        b.groups[0].size = x.n * k
        scale = None if x.scale is None else np.repeat(x.scale, k)
        return _Value(n=x.n * k, spatial=(), flat_k=1, group=0, scale=scale)
    return x.with_(spatial=(), flat_k=x.flat_k * k)


def add(c, node, x, sig):
    """``a + b`` of two tensors: a residual merge (sum of paths). ``a - b`` is ``a + (-1) b``
    and becomes ``a + b`` (weights are ``|w|``); ``a +/- constant`` is a bias: nothing."""
    b = c.b
    sig = [c.val(a) for a in (*node.args, *node.kwargs.values()) if c.is_signal(a)]
    if len(sig) == 1:  # adding a constant (a bias) does not change paths; alpha scales the second operand
        alpha = c.const(node.kwargs.get("alpha", 1))
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            c.fail(node, f"add/sub with alpha={alpha!r} (only a number)")
        second = (len(node.args) > 1 and c.is_signal(node.args[1])) or c.is_signal(node.kwargs.get("other"))
        return _scaled(sig[0], np.full(sig[0].n, abs(float(alpha)))) if second and abs(alpha) != 1 else sig[0]
    if len(sig) != 2:
        c.fail(node)
    a, d = sig
    alpha = c.const(node.kwargs.get("alpha", 1))
    if isinstance(alpha, bool) or alpha not in (1, -1):
        c.fail(node, f"add/sub with alpha={alpha!r} (only 1 or -1)")
    if a is d:  # x + x
        return _scaled(a, np.full(a.n, 2.0))
    if (a.n, a.spatial, a.flat_k, a.channels_last) != (d.n, d.spatial, d.flat_k, d.channels_last):
        c.fail(node, f"adds tensors with different units ({a.n} and {d.n}) or shapes")
    return _Value(n=a.n, spatial=a.spatial, flat_k=a.flat_k, channels_last=a.channels_last,
                  terms=b.terms_of(a) + b.terms_of(d))


def scale(c, node, x, sig):
    """Multiplication or division by a number or by a constant per-channel tensor: ``|c|``."""
    divide = (node.target in DIV_CALLS)
    args = list(node.args)
    if len(sig) != 1:
        c.fail(node, "a product of two tensors (gating is not supported)")
    if len(args) != 2:
        c.fail(node)
    tensor_first = c.is_signal(args[0])
    other = c.const(args[1] if tensor_first else args[0])
    if divide and not tensor_first:
        c.fail(node, "division of a number by a tensor")
    if isinstance(other, bool) or not isinstance(other, (int, float, torch.Tensor)):
        c.fail(node, f"multiplication by {type(other).__name__}")
    if c.layer_scale == "one" and not divide and parameter_of(c, args[1] if tensor_first else args[0]):
        return x  # layer scale (a learnable factor: see parameter_of) scored as 1
    if isinstance(other, torch.Tensor) and other.numel() != 1:
        s = _per_unit(c, node, x, other, "the constant factor")
        if divide:
            if np.any(s == 0):
                c.fail(node, "division by zero")
            s = 1.0 / s
        if s.size and s.max() < LAYER_SCALE_WARN:
            c.small_scales.append(node)
        return _scaled(x, s)
    k = abs(float(other.detach() if isinstance(other, torch.Tensor) else other))
    if divide:
        if k == 0:
            c.fail(node, "division by zero")
        k = 1.0 / k
    if not math.isfinite(k):
        c.fail(node, "a non-finite factor")
    return _scaled(x, np.full(x.n, k))


def parameter_of(c, a) -> str | None:
    """The name of the one model parameter that ``a`` is computed from alone, through any chain
    of single-input operations (views, reshapes, transposes, elementwise functions, products
    with numbers: ``gamma``, ``w.t()``, ``log_scale.exp()``, ``2 * sigmoid(alpha)``); else None."""
    while isinstance(a, torch.fx.Node) and not c.is_signal(a):
        if a.op == "get_attr":
            path, _, attr = a.target.rpartition(".")
            return a.target if isinstance(getattr(c.modules.get(path), attr, None), nn.Parameter) else None
        inputs = a.all_input_nodes
        if a.op not in ("call_method", "call_function") or len(inputs) != 1:
            return None
        a = inputs[0]
    return None


def gate(c, node, x, sig):
    """``x * gate(x)``: the gate's value at the linearisation point is a per-unit scale.

    The gate is the real gate (real weights and biases, eval mode) on the all-ones input,
    averaged over positions per channel; its absolute value scales the gated channel. A
    gate without weights (``x * sigmoid(x)``, SiLU written out) is an activation: identity.
    """
    path, g, _ = c.gates[node]
    x = c.val(path)
    if not isinstance(x, _Value):
        c.fail(node, "the gated tensor is not a tensor of units")
    if not c.gate_params.get(node):
        return x  # no weights in the gate: an activation written out (x * sigmoid(x) is SiLU)
    value = g.meta.get("ng_value")
    shape = c.shape(node)
    if not isinstance(value, torch.Tensor) or shape is None or tuple(shape) != tuple(c.value_shape(x)):
        c.fail(node, "the gate changes the gated tensor's shape")
    t = value.detach().double().abs().expand(shape)
    per = t.reshape(x.n, x.flat_k) if x.flat_k != 1 else t.movedim(x.cdim, 0).reshape(x.n, -1)
    s = per.mean(dim=1).numpy().copy()
    if not np.all(np.isfinite(s)):
        c.fail(node, "the gate has NaN or infinite values")
    return _scaled(x, s)


def getitem(c, node, x, sig):
    v = c.val(node.args[0])
    if isinstance(v, _Tuple):
        idx = node.args[1]
        if not isinstance(idx, int):
            c.fail(node, "indexing a tuple of tensors with a non-constant index")
        return v.items[idx]
    return rearrange(c, node, x, sig)


from ._trace_rearrange import rearrange  # noqa: E402  (rules above call it)
