"""Build the unit graph of a PyTorch model by tracing its dataflow with ``torch.fx``.

The tracer interprets the fx graph symbolically (values and builder: :mod:`._trace_values`;
generic rules: :mod:`._trace_ops`, :mod:`._trace_rearrange`; modules traced whole, in order:
:mod:`._trace_rules`; eval mode, optional arguments, control flow, gates: :mod:`._trace_fx`).
Each tensor value is a set of units (the channel dimension, or
the features of a flat tensor) plus either

* a *unit group* that already exists in the graph, with an optional per-unit scale to
  apply when the value is read, or
* *pending* incoming edges (the output of a layer, a residual sum of layer outputs and
  shortcuts, or the index map of a concatenation, split or channel permutation) that
  have not been given a unit group yet.

A pending value becomes a unit group when a layer reads it, when it is used by more than
one operation, or at the output. This is what merges the two branches of a residual add
into one set of units (an identity shortcut becomes an edge of weight 1 into the units the
main branch writes), and it lets BatchNorm be a per-unit scale on the edges that cross it.

Every supported operation and its linearisation rule is listed in ``docs/data-model.md``;
anything else is reported by :class:`~netgraph.errors.UnsupportedModelError`, which lists
every unsupported operation of the model at once, each with the module it lives in.

Flatten keeps channel granularity: the linear layer after it gets one edge bundle per
(channel, output neuron) holding all the columns that read the channel. An input flattened
before any conv reads it (an MLP on images) has the input features as its units.
"""

from __future__ import annotations

import contextlib
import io
import operator
import types
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _trace_fx as fx
from . import _trace_ops as ops
from . import _trace_rules as rules
from . import _trace_tokens as tokens
from . import _trace_vit_variants as vit_variants
from . import _trace_windows as windows
from ._trace_values import BAD, _Builder, _Term, _Value, stand_in
from ._validate import check_choice, check_input_shape, check_module
from .errors import InvalidInputError, UnsupportedModelError
from .graph import NetGraph
from .offpath import offpath_arrays

_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _linear_or_conv(c, node, x, sig, mod=None, shape=None):
    mod = c.module(node) if mod is None else mod
    shape = c.shape(node) if shape is None else shape
    fail = c.fail
    if isinstance(mod, nn.Linear) and x.channels_last and x.spatial:
        # a Linear on a channels-last tensor (tokens, ConvNeXt's MLP) is a 1x1 conv
        out = _layer(c.b, node, mod, x.with_(spatial=(), channels_last=False), shape, fail)
        return out.with_(spatial=x.spatial, channels_last=True)
    if isinstance(mod, nn.Linear) and x.spatial and not x.channels_last:  # the last dim is positions
        return tokens.token_linear(c, node, x, mod, shape)
    return _layer(c.b, node, mod, x, shape, fail)


_FUNCTIONAL_LAYERS = {F.linear: nn.Linear, F.conv1d: nn.Conv1d, F.conv2d: nn.Conv2d, F.conv3d: nn.Conv3d}


def _functional_layer(c, node, x, sig):
    """``F.linear``/``F.convNd`` called by a Linear/Conv subclass on its own ``weight`` (timm's
    ``Linear``, ``Conv2dSame``): the module's layer. A weight computed from the parameter
    (weight standardisation) is refused: the graph would hold the wrong weights."""
    a = c.bind(node, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"], {})
    w = node.kwargs.get("weight", node.args[1] if len(node.args) > 1 else None)
    if not (isinstance(w, torch.fx.Node) and w.op == "get_attr" and w.target.rpartition(".")[2] == "weight"):
        c.fail(node, "the weight is computed from parameters (e.g. weight standardisation), not a "
                     "module's own weight")
    qual = w.target.rpartition(".")[0]  # "": the model is itself a Linear or Conv
    mod = c.model_modules.get(qual)  # the model's own module (the traced copy holds only the weight)
    if not isinstance(mod, _FUNCTIONAL_LAYERS[node.target]) or mod.weight is not a["weight"]:
        c.fail(node, f"the weight {w.target!r} is not the weight of a {_FUNCTIONAL_LAYERS[node.target].__name__}")
    if "groups" in a and a["groups"] != getattr(mod, "groups", 1):
        c.fail(node, "called with another groups than its module's")
    shim = types.SimpleNamespace(target=qual, name=node.name)
    return _linear_or_conv(c, shim, x, sig, mod=mod, shape=c.shape(node))


def _rule(node, mod):
    """The rule for an fx node, or None if the operation is not supported."""
    if (rule := rules.rule_for(node, mod)) is not None:
        return rule
    if node.op == "call_module":
        if isinstance(mod, (nn.Linear, *_CONV_MODULES)):
            return _linear_or_conv
        for kinds, rule in ((ops.BN_MODULES, ops.batchnorm), ((nn.LayerNorm,), ops.layernorm),
                            ((nn.GroupNorm,), ops.groupnorm), (ops.INSTANCE_NORM_MODULES, ops.instancenorm),
                            (ops.IDENTITY_MODULES, ops.identity),
                            (ops.POOL_MODULES, ops.pool), (ops.SOFTMAX_MODULES, ops.softmax),
                            ((nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d), ops.pool),
                            ((nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
                              nn.ConstantPad1d, nn.ZeroPad1d, nn.CircularPad2d), ops.pool),
                            ((nn.Flatten,), ops.flatten), (ops.REARRANGE_MODULES, ops.rearrange)):
            if isinstance(mod, kinds):
                return rule
        return None
    if node.op not in ("call_function", "call_method"):
        return None
    t = node.target
    method = node.op == "call_method"
    if t in (ops.IDENTITY_METHODS if method else ops.IDENTITY_FUNCTIONS):
        return ops.identity
    if not method and getattr(t, "__name__", None) in ops.IDENTITY_FUNCTION_NAMES:
        return ops.identity
    table = [
        (ops.POOL_FUNCTIONS, ops.pool), (ops.FLATTEN_CALLS, ops.flatten), (ops.REDUCE_CALLS, ops.reduce),
        (ops.ADD_CALLS, ops.add), (ops.MUL_CALLS, ops.scale), (ops.DIV_CALLS, ops.scale),
        (ops.SOFTMAX_CALLS, ops.softmax), ({torch.nn.functional.batch_norm}, ops.batchnorm),
        ({torch.nn.functional.layer_norm}, ops.layernorm), ({torch.nn.functional.group_norm}, ops.groupnorm),
        ({torch.nn.functional.instance_norm}, ops.instancenorm),
        ({"__getitem__"}, ops.getitem),
    ]
    if t is operator.getitem:
        return ops.getitem
    if t in _FUNCTIONAL_LAYERS:
        return _functional_layer
    for calls, rule in table:
        if t in calls:
            return rule
    if t in ops.REARRANGE_CALLS:
        return ops.rearrange
    return None


def _why_unsupported(node, mod) -> str:
    if node.op == "call_function" and node.target in (torch.cat, torch.stack):
        return "concatenation"
    return ""


def from_torch(model: nn.Module, input_shape, *, model_spec: dict | None = None, layer_scale: str = "as_is") -> NetGraph:
    """Build the unit-level DAG of a PyTorch model.

    Parameters
    ----------
    model : torch.nn.Module
        The network. It is switched to eval mode (and back afterwards), traced with
        ``torch.fx`` and run once on zeros to learn tensor shapes. Optional ``forward``
        arguments are bound to their defaults.
    input_shape : sequence of int
        Shape of one input sample without the batch dimension, e.g. ``(3, 32, 32)``.
    model_spec : dict, optional
        How the model was made (zoo name, seed...), stored on the graph and in masks.
    layer_scale : {"as_is", "one"}
        ``"one"``: score as if every layer-scale factor (a product with a parameter: ConvNeXt,
        CaiT, initialised near 1e-6) were 1 (docs/data-model.md).

    Returns
    -------
    NetGraph

    Raises
    ------
    UnsupportedModelError
        If the model uses operations the unit graph cannot represent. The message lists
        every one of them, each with the module it lives in and its type, and what is
        supported; the list is also in the exception's ``blockers`` attribute.
    InvalidInputError
        If ``input_shape`` is not a sequence of positive ints (a string is refused) or the
        model fails on it, or a weight contains NaN or infinite values.

    Notes
    -----
    The rule each operation follows in the graph (the *linearisation*: all-ones input,
    absolute weights, zero biases, activations as identity, normalisation statistics
    frozen) is documented in ``docs/data-model.md``.

    Examples
    --------
    >>> import torch, netgraph
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ...                             torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> g = netgraph.from_torch(model, (4,))
    >>> [grp.size for grp in g.groups], g.num_weights
    ([4, 3, 2], 18)
    """
    check_module(model, "from_torch")
    shape = check_input_shape(input_shape)
    check_choice("layer_scale", layer_scale, ops.LAYER_SCALE_MODES)
    try:
        dtype = next(model.parameters()).dtype
    except StopIteration:
        raise UnsupportedModelError("the model has no parameters") from None
    if not dtype.is_floating_point:
        raise UnsupportedModelError(f"the model's parameters are {dtype}, not floating point")
    flags = [(m, m.training) for m in model.modules()]  # restored one by one (frozen parts stay frozen)
    model.eval()
    try:
        example = torch.ones((1, *shape), dtype=dtype)  # the linearisation point's input
        gm = fx.trace(model, example)
        recorder = fx.Recorder(gm)
        gates = fx.find_gates(gm, recorder.signal)
        recorder.keep = {g for _, g, _ in gates.values()}
        try:
            # fx's interpreter prints the traceback of a failing node before re-raising: silence it
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                recorder.run(example)
        except Exception as exc:
            cause = exc.__cause__ or exc  # the model's own error, without fx's annotations
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            raise InvalidInputError(
                f"running {type(model).__name__} on one input of shape {shape} failed: "
                f"{type(cause).__name__}: {first}"
            ) from exc
        if gates:
            fx.gate_values_in_float64(gm, gates, example)
        return _build(model, gm, recorder, shape, model_spec, gates, layer_scale)
    except (InvalidInputError, UnsupportedModelError):
        raise
    except Exception as exc:  # never let another exception type out for a model that runs
        raise UnsupportedModelError(
            f"internal error while building the unit graph of {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for m, flag in flags:
            m.training = flag


def _build(model, gm, recorder, shape, model_spec, gates=None, layer_scale="as_is") -> NetGraph:
    modules = dict(gm.named_modules())
    b = _Builder(shape)
    b.new_group("input", shape[0])
    env: dict = {}
    c = ops.Ctx(b, modules, recorder, env, layer_scale)
    c.model_modules = dict(model.named_modules())
    c.gates = gates = gates or {}
    gate_nodes = set().union(*(only for _, _, only in gates.values())) if gates else set()
    c.offpath = offpath = []  # gate weights here; attention rules add query/key weights
    c.gate_params = {}
    for mul, (_, _, only) in gates.items():
        where = fx.module_of(mul)
        c.gate_params[mul] = fx.offpath_params(c.model_modules, gm, only, where[0] if where else "")
        offpath += c.gate_params[mul]
    blockers: list = []
    out_value = None
    first = True

    tainted: set = set()  # nodes at or after an unsupported operation

    def block(node, why="", structural=False):
        # unsupported whatever its input (an unknown operation, a grouped conv), or a rule
        # that failed on a value made after another unsupported operation
        structural = structural or "grouped" in why
        after = " (after an unsupported operation: may follow from it)" if node in tainted and not structural else ""
        blockers.append(f"{fx.describe(node, modules)}{': ' + why if why else ' is not supported'}{after}")
        tainted.add(node)
        env[node] = stand_in(b, node, modules, env, recorder.signal)

    restore: dict = {}  # token layouts shown to one rule as their mean token
    for node in gm.graph.nodes:
        b.order, restore = b.order + 1, env.update(restore) or {}
        if node.op == "placeholder":
            env[node] = _Value(n=shape[0], spatial=shape[1:], group=0) if first else None
            first = False
            continue
        if node.op == "output":
            out_value = env.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
            if out_value is None and not blockers:
                raise UnsupportedModelError(
                    "the model must return a single tensor (tuples, lists and dicts of outputs are not supported)"
                )
            continue
        if node not in recorder.signal or node in gate_nodes:
            env[node] = None  # parameters, shape arithmetic, queries about a tensor, gates
            continue
        mod = modules.get(node.target) if node.op == "call_module" else None
        rule = ops.gate if node in gates else _rule(node, mod)
        in_nodes = [a for a in node.all_input_nodes if a in recorder.signal]
        if any(a in tainted for a in in_nodes):
            tainted.add(node)
        restore = vit_variants.merge_tokens(c, in_nodes, rule, ops)  # tokens of several units read per token
        ins = [env.get(a) for a in in_nodes]
        if any(v is BAD for v in ins):
            if rule is None:
                block(node, _why_unsupported(node, mod), structural=True)
            env[node] = BAD
            continue
        if rule is None:
            block(node, _why_unsupported(node, mod), structural=True)
            continue
        sig = [v for v in ins if isinstance(v, _Value)]
        if any(v.last_only for v in sig):
            block(node, "softmax/log_softmax is supported only as the last operation, and this follows it")
            continue
        first_arg = node.args[0] if node.args else None
        x = env.get(first_arg) if isinstance(first_arg, torch.fx.Node) else (sig[0] if sig else None)
        if rule not in vit_variants.raw_readers(ops) and any(v.raw is not None for v in sig):
            block(node, "reads a tensor whose layout is not (batch, channels, ...) or (batch, ..., channels)")
            continue
        if not isinstance(x, _Value) and rule is not ops.getitem:
            x = sig[0] if sig else None
        rule = windows.merged_rule(rule, (_linear_or_conv, _functional_layer)) if any(v.lead != 1 for v in sig) else rule
        try:
            v = rule(c, node, x, sig)
        except ops.Blocker as exc:
            block(node, str(exc))
            continue
        except (InvalidInputError, UnsupportedModelError):
            raise
        except Exception as exc:  # a rule met a case it does not know: report it, never crash
            block(node, f"internal error {type(exc).__name__}: {exc}")
            continue
        if isinstance(v, _Value) and v.group is None and v.raw is None and len(node.users) != 1 \
                and v.has_layer_terms:
            # Used by several operations (or by none): give it its own units now, so
            # that every pending edge lands in exactly one unit group.
            v = b.materialize(v, node.name)
        env[node] = v

    if blockers:
        exc = UnsupportedModelError(
            f"cannot build the unit graph of {type(model).__name__}: {len(blockers)} unsupported "
            f"operation{'s' if len(blockers) > 1 else ''}: "
            + "; ".join(f"[{i + 1}] {s}" for i, s in enumerate(blockers))
            + f". Supported: {rules.SUPPORTED}."
        )
        exc.blockers = blockers
        raise exc
    if c.small_scales:
        names = sorted({fx.describe(n, modules) for n in c.small_scales})
        warnings.warn(
            f"{len(c.small_scales)} per-channel scale(s) below {ops.LAYER_SCALE_WARN:g} (layer scale; "
            f"e.g. {names[0]}): every path through them, and every SynFlow/PHEW score in their "
            "branch, is multiplied by them, so a global threshold prunes those branches first; "
            "layer_scale='one' (CLI --layer-scale one) scores them as 1 (see docs/data-model.md)", stacklevel=3)
    if not isinstance(out_value, _Value) or out_value.raw is not None or out_value.lead != 1:
        raise UnsupportedModelError(
            "the model must return a single tensor of shape (batch, features) or (batch, channels, ...)")
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
    assert out_value.group == len(groups) - 1, "output is not the last unit group"  # guarded above
    layers = [layer for _, layer in sorted(b.layers, key=lambda t: t[0])]
    for i, layer in enumerate(layers):
        layer.index = i
    # a model from netgraph.zoo.build carries the spec that rebuilds it (saved masks record it)
    spec = dict(model_spec or getattr(model, "netgraph_spec", None) or {})
    spec.setdefault("name", type(model).__name__)
    spec.update(input_shape=list(shape), **({} if layer_scale == "as_is" else {"layer_scale": layer_scale}))
    offpath = offpath + vit_variants.constant_layers(c, gm, {x.param for x in layers})
    fx.check_untied(model, [x.param for x in layers] + [p["param"] for p in offpath])
    try:
        return NetGraph(groups=groups, layers=layers, shortcuts=b.shortcuts, input_shape=shape,
                        model_spec=spec, offpath=offpath, offpath_weights=offpath_arrays(model, offpath))
    except ValueError as exc:
        if "shared weights" in str(exc):
            raise UnsupportedModelError(f"cannot build the unit graph of {type(model).__name__}: {exc}") from None
        raise

def _weight_array(node, mod, param_name):
    """A read-only numpy *view* of the weight (CPU float32/64; others copied to float32).
    Finiteness is checked on the sum (NaN and inf propagate), counted only if it fails."""
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
    param = f"{node.target}.weight" if node.target else "weight"  # (a model that is one layer)
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
