"""Build the unit graph of a PyTorch model by tracing its dataflow with ``torch.fx``.

The tracer interprets the fx graph symbolically. Each tensor value is a set of units (the
channel dimension, or the features of a flat tensor) plus either

* a *unit group* that already exists in the graph, with an optional per-unit scale to
  apply when the value is read, or
* *pending* incoming edges (the output of a layer, or a residual sum of layer outputs and
  shortcuts) that have not been given a unit group yet.

A pending value becomes a unit group when a layer reads it, when it is used by more than
one operation, or at the output. This is what merges the two branches of a residual add
into one set of units (an identity shortcut becomes an edge of weight 1 into the units the
main branch writes), and it lets BatchNorm be a per-unit scale on the edges that cross it.

Supported operations (anything else raises :class:`~netgraph.errors.UnsupportedModelError`
naming the module or function):

* ``nn.Linear``; ``nn.Conv1d/2d/3d``, also grouped and depthwise (any kernel shape,
  stride, padding, dilation, groups);
* ``nn.BatchNorm1d/2d/3d``: per-unit scale ``|gamma| / sqrt(running_var + eps)``;
* elementwise activations (ReLU, LeakyReLU, GELU, SiLU, Sigmoid, Tanh, ...), dropout,
  identity; multiplication or division by a Python number (a uniform scale);
* max, average and adaptive pooling; flatten (``nn.Flatten``, ``torch.flatten``,
  ``x.view(x.size(0), -1)``, ``reshape``), global mean over spatial dimensions;
* residual ``+`` of two tensors with the same units (identity or projection shortcuts);
  adding a constant (a bias) leaves the graph unchanged;
* softmax / log-softmax as the very last operation (the graph's outputs are the logits).

Flatten keeps channel granularity: the linear layer after it gets one edge bundle per
(channel, output neuron) holding all the columns that read the channel. When the input
itself is flattened before any conv reads it (an MLP on images), the input units are the
input features instead of the input channels.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import InvalidInputError, UnsupportedModelError
from .graph import Layer, NetGraph, Shortcut, UnitGroup

SUPPORTED = (
    "Linear, Conv1d/Conv2d/Conv3d (also grouped/depthwise), BatchNorm1d/2d/3d, elementwise activations "
    "(ReLU, LeakyReLU, GELU, SiLU, Sigmoid, Tanh, ...), Dropout, max/avg/adaptive pooling, "
    "flatten/view/reshape to (batch, features), mean over spatial dims, residual add, "
    "multiplication by a number, and softmax/log_softmax as the last operation"
)

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.LogSigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
)
_BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)

_ELEMENTWISE_FUNCTIONS = {
    F.relu, torch.relu, torch.relu_, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.softplus, F.softsign, F.logsigmoid, F.dropout, F.dropout1d,
    F.dropout2d, F.dropout3d, F.alpha_dropout, torch.dropout,
}
_POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, torch.max_pool2d,
    torch.avg_pool1d, torch.adaptive_avg_pool1d,
}
_ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "detach",
    "float", "double", "to",
}
_SOFTMAX_CALLS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, "softmax", "log_softmax"}
_ADD_CALLS = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__"}
_MUL_CALLS = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIV_CALLS = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_FLATTEN_CALLS = {torch.flatten, "flatten", "view", "reshape"}
_MEAN_CALLS = {torch.mean, "mean"}


def _mul(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a * b


@dataclass
class _Term:
    """A pending incoming edge: a layer (``layer`` set) or an identity shortcut."""

    src: int
    scale: np.ndarray | None = None  # destination-side scale
    layer: dict | None = None
    in_scale: np.ndarray | None = None

    def scaled(self, s):
        return _Term(self.src, _mul(self.scale, s), self.layer, self.in_scale)


@dataclass
class _Value:
    """Symbolic value of a tensor: units plus a group or pending terms."""

    n: int
    spatial: tuple
    flat_k: int = 1
    group: int | None = None
    terms: list | None = None
    scale: np.ndarray | None = None
    last_only: bool = False  # produced by softmax: may only feed the output

    def with_(self, **kw):
        d = dict(n=self.n, spatial=self.spatial, flat_k=self.flat_k, group=self.group,
                 terms=self.terms, scale=self.scale, last_only=self.last_only)
        d.update(kw)
        return _Value(**d)


@dataclass
class _Builder:
    input_shape: tuple
    groups: list = field(default_factory=list)
    layers: list = field(default_factory=list)  # (fx order, Layer)
    shortcuts: list = field(default_factory=list)
    input_fixed: bool = False
    order: int = 0

    def new_group(self, name, size):
        g = UnitGroup(index=len(self.groups), name=name, size=size)
        self.groups.append(g)
        return g.index

    def materialize(self, v: _Value, name: str) -> _Value:
        """Give a pending value a unit group (the pending scale goes onto its edges)."""
        if v.group is not None:
            return v
        names = [t.layer["name"] for t in v.terms if t.layer is not None]
        g = self.new_group("+".join(names) if names else name, v.n)
        for t in v.terms:
            scale = _mul(t.scale, v.scale)
            if t.layer is not None:
                spec = t.layer
                self.layers.append((spec["order"], Layer(
                    index=-1, name=spec["name"], kind=spec["kind"], param=spec["param"],
                    param_shape=spec["param_shape"], src=t.src, dst=g, weight=spec["weight"],
                    in_scale=t.in_scale, out_scale=scale, groups=spec.get("groups", 1))))
            else:
                self.shortcuts.append(Shortcut(index=len(self.shortcuts), src=t.src, dst=g,
                                               size=v.n, scale=scale))
        return v.with_(group=g, terms=None, scale=None)

    def terms_of(self, v: _Value) -> list:
        if v.group is None:
            return [t.scaled(v.scale) for t in v.terms]
        if v.group == 0:
            self.input_fixed = True
        return [_Term(src=v.group, scale=v.scale)]


def _describe(node, modules) -> str:
    if node.op == "call_module":
        m = modules[node.target]
        return f"module '{node.target}' of type {type(m).__name__}"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)} (at '{node.name}')"
    if node.op == "call_method":
        return f"tensor method .{node.target}() (at '{node.name}')"
    return f"{node.op} '{node.target}'"


def _shape(node):
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape)


def _check_input_shape(input_shape) -> tuple:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"input_shape must be a sequence of positive integers such as (3, 32, 32), got {input_shape!r}"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise InvalidInputError(
            f"input_shape must be a non-empty sequence of positive integers such as (3, 32, 32) "
            f"(one sample, no batch dimension), got {input_shape!r}"
        )
    return shape


def from_torch(model: nn.Module, input_shape, *, model_spec: dict | None = None) -> NetGraph:
    """Build the unit-level DAG of a PyTorch model.

    Parameters
    ----------
    model : torch.nn.Module
        The network. Its dataflow is traced with ``torch.fx``; the model is run once in
        eval mode (training mode is restored afterwards) to learn tensor shapes.
    input_shape : sequence of int
        Shape of one input sample without the batch dimension, e.g. ``(3, 32, 32)``.
    model_spec : dict, optional
        How the model was made (zoo name, seed...), stored on the graph and in masks.

    Returns
    -------
    NetGraph

    Raises
    ------
    UnsupportedModelError
        If the model uses an operation the unit graph cannot represent; the message names
        the module (or function) and its type and lists what is supported.
    InvalidInputError
        If ``input_shape`` is malformed or the model fails on it, or a weight contains NaN
        or infinite values.

    Notes
    -----
    Concatenation, attention, recurrent layers, LayerNorm/GroupNorm and weight sharing are refused.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ...                             torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> g = netgraph.from_torch(model, (4,))
    >>> [grp.size for grp in g.groups], g.num_weights
    ([4, 3, 2], 18)
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape)
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors
        raise UnsupportedModelError(
            f"torch.fx could not trace {type(model).__name__}: {exc}. The forward pass must be "
            "traceable (no control flow that depends on tensor values)."
        ) from exc
    modules = dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(
            f"the model's forward takes {len(placeholders)} inputs; only models with one input tensor are supported"
        )
    try:
        dtype = next(model.parameters()).dtype
    except StopIteration:
        raise UnsupportedModelError("the model has no parameters") from None
    was_training = model.training
    model.eval()
    try:
        _propagate_shapes(gm, shape, dtype)
    except Exception as exc:
        raise InvalidInputError(
            f"running {type(model).__name__} on one input of shape {shape} failed: {exc}"
        ) from exc
    finally:
        model.train(was_training)

    b = _Builder(shape)
    b.new_group("input", shape[0])
    env: dict = {}
    out_value = None

    def fail(node, why=""):
        raise UnsupportedModelError(
            f"cannot build the unit graph: {_describe(node, modules)} is not supported"
            f"{' (' + why + ')' if why else ''}. Supported: {SUPPORTED}."
        )

    def val(a):
        return env.get(a) if isinstance(a, torch.fx.Node) else None

    for node in gm.graph.nodes:
        b.order += 1
        if node.op == "placeholder":
            env[node] = _Value(n=shape[0], spatial=shape[1:], group=0)
            continue
        if node.op == "get_attr":
            env[node] = None
            continue
        if node.op == "output":
            args = node.args[0]
            v = val(args)
            if v is None:
                raise UnsupportedModelError(
                    "the model must return a single tensor (tuples, lists and dicts of outputs are not supported)"
                )
            out_value = v
            continue

        tensor_args = [val(a) for a in (*node.args, *node.kwargs.values())]
        signals = [v for v in map(val, node.all_input_nodes) if isinstance(v, _Value)]
        if not signals:
            env[node] = None  # shape arithmetic such as x.size(0)
            continue
        if any(v.last_only for v in signals):
            raise UnsupportedModelError(
                f"softmax/log_softmax is supported only as the last operation; {_describe(node, modules)} follows it"
            )
        if (node.op == "call_method" and node.target in ("size", "dim", "numel")) or (
            node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim", "dtype", "device")
        ):
            env[node] = None  # a query about the tensor, not a tensor
            continue
        x = val(node.args[0]) if node.args else signals[0]
        out_shape = _shape(node)
        target = node.target
        mod = modules.get(target) if node.op == "call_module" else None
        call = target if node.op in ("call_function", "call_method") else None

        if mod is not None and isinstance(mod, (nn.Linear, *_CONV_MODULES)):
            env[node] = _layer(b, node, mod, x, out_shape, fail)
        elif mod is not None and isinstance(mod, _BN_MODULES):
            env[node] = _batchnorm(b, node, mod, x, fail)
        elif (mod is not None and isinstance(mod, _ELEMENTWISE_MODULES)) or call in _ELEMENTWISE_FUNCTIONS \
                or (node.op == "call_method" and call in _ELEMENTWISE_METHODS):
            if len(signals) != 1:
                fail(node, "an elementwise operation between two tensors")
            env[node] = x
        elif (mod is not None and isinstance(mod, _POOL_MODULES)) or call in _POOL_FUNCTIONS:
            env[node] = _pool(node, x, out_shape, fail)
        elif (mod is not None and isinstance(mod, nn.Flatten)) or call in _FLATTEN_CALLS:
            env[node] = _flatten(b, node, x, out_shape, fail)
        elif call in _MEAN_CALLS:
            env[node] = _pool(node, x, out_shape, fail)
        elif call in _ADD_CALLS:
            env[node] = _add(b, node, [v for v in tensor_args if isinstance(v, _Value)], fail)
        elif call in _MUL_CALLS or call in _DIV_CALLS:
            env[node] = _scalar_scale(node, x, signals, call in _DIV_CALLS, fail)
        elif (mod is not None and isinstance(mod, _SOFTMAX_MODULES)) or call in _SOFTMAX_CALLS:
            env[node] = x.with_(last_only=True)
        else:
            why = ""
            if call in (torch.cat, torch.concat, torch.stack):
                why = "concatenation of tensors"
            elif mod is not None and getattr(mod, "groups", 1) != 1:
                why = "grouped convolution"
            fail(node, why)

        v = env[node]
        if v is not None and v.group is None and len(node.users) != 1:
            # Used by several operations (or by none): give it its own units now, so
            # that every pending edge lands in exactly one unit group.
            env[node] = b.materialize(v, node.name)

    if out_value is None:
        raise UnsupportedModelError("the traced model has no output")
    out_value = out_value.with_(last_only=False)
    if out_value.group is not None:
        read = {layer.src for _, layer in b.layers} | {s.src for s in b.shortcuts}
        if out_value.scale is not None or out_value.group in read or out_value.group != len(b.groups) - 1:
            out_value = _Value(n=out_value.n, spatial=out_value.spatial, flat_k=out_value.flat_k,
                               terms=b.terms_of(out_value))
    out_value = b.materialize(out_value, "output")
    if not b.layers:
        raise UnsupportedModelError("the model has no Linear or Conv layer between its input and its output")
    groups = b.groups
    for grp in groups[1:]:
        grp.kind = "hidden"
    groups[0].kind = "input"
    groups[-1].kind = "output"
    if out_value.group != len(groups) - 1:  # pragma: no cover - guarded above
        raise UnsupportedModelError("internal error: output is not the last unit group")
    layers = [layer for _, layer in sorted(b.layers, key=lambda t: t[0])]
    for i, layer in enumerate(layers):
        layer.index = i
    spec = dict(model_spec or {})
    spec.setdefault("name", type(model).__name__)
    spec.setdefault("input_shape", list(shape))
    return NetGraph(groups=groups, layers=layers, shortcuts=b.shortcuts, input_shape=shape,
                    model_spec=spec)


def _propagate_shapes(gm, shape, dtype):
    """Record every node's output shape: on fake tensors (no arithmetic, so a 224 px VGG
    costs milliseconds), on a real all-zeros input if fake tensors fail on some operation."""
    from torch.fx.passes.shape_prop import ShapeProp

    x = torch.zeros((1, *shape), dtype=dtype)
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode

        ShapeProp(gm, fake_mode=FakeTensorMode(allow_non_fake_inputs=True)).propagate(x)
        return
    except Exception:  # an operation without a fake-tensor rule: run it for real (errors surface there)
        pass
    with torch.no_grad():
        ShapeProp(gm).propagate(x)


def _weight_array(node, mod, param_name):
    """The weight as a numpy array that *views* the parameter's memory (a CPU float32/64
    tensor); other dtypes and devices are copied to float32. Finiteness is checked on the
    sum (NaN and inf propagate), counting the bad entries only when it fails."""
    w = mod.weight.detach()
    if not bool(torch.isfinite(w.sum())) and not bool(torch.isfinite(w).all()):
        bad = int((~torch.isfinite(w)).sum())
        raise InvalidInputError(
            f"parameter {param_name!r} contains {bad} NaN or infinite values; weights must be finite"
        )
    if w.device.type != "cpu" or w.dtype not in (torch.float32, torch.float64) or not w.is_contiguous():
        return w.to("cpu", torch.float32).contiguous().numpy()
    arr = w.numpy()
    arr.flags.writeable = False  # the library never writes through the view
    return arr


def _layer(b: _Builder, node, mod, x: _Value, out_shape, fail) -> _Value:
    param = f"{node.target}.weight"
    if isinstance(mod, _CONV_MODULES):
        if x.flat_k != 1 or len(x.spatial) != mod.weight.dim() - 2:
            fail(node, "a conv applied to a tensor that is not a (batch, channels, *spatial) map")
        if x.n != mod.in_channels:
            fail(node, f"expects {mod.in_channels} input channels, the input has {x.n} units")
        w = _weight_array(node, mod, param)
        weight = w.reshape(w.shape[0], w.shape[1], -1)  # (C_out, C_in / groups, k): blocks only
        groups = int(mod.groups)
        kind = "conv"
        n_out = mod.out_channels
        spatial = tuple(out_shape[2:]) if out_shape else ()
    else:
        if x.spatial:
            fail(node, f"Linear applied to a tensor with extra dimensions {x.spatial}; "
                       "only (batch, features) inputs are supported: flatten first")
        if x.n * x.flat_k != mod.in_features:
            fail(node, f"expects {mod.in_features} features, the input has {x.n * x.flat_k}")
        w = _weight_array(node, mod, param)
        weight = w.reshape(w.shape[0], x.n, x.flat_k)
        groups = 1
        kind = "linear"
        n_out = mod.out_features
        spatial = ()
    if x.group == 0:
        b.input_fixed = True
    x = b.materialize(x, node.name)
    spec = dict(name=node.target, kind=kind, param=param, param_shape=tuple(w.shape),
                weight=weight, groups=groups, order=b.order)
    return _Value(n=n_out, spatial=spatial, terms=[_Term(src=x.group, layer=spec, in_scale=x.scale)])


def _batchnorm(b, node, mod, x: _Value, fail) -> _Value:
    if x.flat_k != 1:
        fail(node, "BatchNorm after flattening a feature map would scale features within a channel differently")
    n = x.n
    if mod.num_features != n:
        fail(node, f"has {mod.num_features} features, the input has {n} units")
    gamma = mod.weight.detach().double().abs().cpu().numpy() if mod.weight is not None else np.ones(n)
    var = mod.running_var.detach().double().cpu().numpy() if mod.running_var is not None else np.ones(n)
    scale = gamma / np.sqrt(var + mod.eps)
    if not np.all(np.isfinite(scale)):
        raise InvalidInputError(f"BatchNorm {node.target!r} has NaN or infinite weight or running_var")
    return x.with_(scale=_mul(x.scale, scale))


def _pool(node, x: _Value, out_shape, fail) -> _Value:
    if x.flat_k != 1 or not x.spatial:
        fail(node, "pooling over a flat tensor")
    if out_shape is None or len(out_shape) < 2 or out_shape[1] != x.n:
        fail(node, "the operation changes the number of channels")
    return x.with_(spatial=tuple(out_shape[2:]))


def _flatten(b: _Builder, node, x: _Value, out_shape, fail) -> _Value:
    if out_shape is None:
        fail(node)
    in_features = x.n * x.flat_k * int(np.prod(x.spatial, dtype=np.int64))
    if len(out_shape) == 2 + len(x.spatial) and out_shape[1] == x.n and tuple(out_shape[2:]) == x.spatial:
        return x  # a view that changes nothing
    if tuple(out_shape) != (1, in_features):
        fail(node, f"only reshapes to (batch, features) are supported; this one gives {tuple(out_shape)[1:]}")
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


def _add(b: _Builder, node, signals, fail) -> _Value:
    if len(signals) == 1:
        return signals[0]  # adding a constant (a bias) does not change paths
    if len(signals) != 2:
        fail(node)
    a, c = signals
    if a is c:  # x + x
        return a.with_(scale=_mul(a.scale, np.full(a.n, 2.0)))
    if (a.n, a.spatial, a.flat_k) != (c.n, c.spatial, c.flat_k):
        fail(node, f"adds tensors with different units ({a.n} and {c.n}) or shapes")
    if node.op == "call_function" and node.target is torch.add and node.kwargs.get("alpha", 1) != 1:
        fail(node, "torch.add with alpha != 1")
    return _Value(n=a.n, spatial=a.spatial, flat_k=a.flat_k, terms=b.terms_of(a) + b.terms_of(c))


def _scalar_scale(node, x: _Value, signals, divide: bool, fail) -> _Value:
    args = list(node.args)
    if len(signals) != 1 or len(args) != 2:
        fail(node, "a product of two tensors")
    tensor_first = isinstance(args[0], torch.fx.Node)
    other = args[1] if tensor_first else args[0]
    if isinstance(other, torch.fx.Node) or isinstance(other, bool) or not isinstance(other, (int, float)):
        fail(node, "multiplication by something other than a Python number")
    if divide and not tensor_first:
        fail(node, "division of a number by a tensor")
    x = signals[0]
    c = abs(float(other))
    if divide:
        if c == 0:
            fail(node, "division by zero")
        c = 1.0 / c
    if not math.isfinite(c):
        fail(node, "a non-finite factor")
    return x.with_(scale=_mul(x.scale, np.full(x.n, c)))
