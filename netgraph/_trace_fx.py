"""Tracing a model with ``torch.fx`` for the unit-graph builder.

* The model is traced in eval mode (the caller switches it), so ``if self.training:``
  branches take their eval branch, the one the shapes come from.
* Optional ``forward`` arguments are bound to their defaults (``concrete_args``): only the
  first argument is an input.
* Python control flow on *shapes* (``if x.shape[-1] > 7``, ``for d in x.shape``) traces:
  the condition is evaluated on a real input of the given shape and the branch taken is
  recorded (the graph is valid for that input shape). Control flow on tensor *values* is
  refused with an error naming the module.
* One run of the traced module records every tensor's shape and the concrete value of
  everything that does not depend on the input (``x.size(0)``, parameters read with
  ``get_attr``, shape arithmetic).
"""

from __future__ import annotations

import contextlib
import copy
import inspect

import torch
import torch.fx
from torch.fx.node import map_arg

from .errors import UnsupportedModelError

_SHAPE_QUERIES = {"size", "dim", "numel", "ndimension", "nelement"}
_SHAPE_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda"}


def is_shape_query(node) -> bool:
    """Whether ``node`` reads only the shape (or dtype, device) of a tensor."""
    if node.op == "call_method" and node.target in _SHAPE_QUERIES:
        return True
    return node.op == "call_function" and node.target is getattr and len(node.args) > 1 \
        and node.args[1] in _SHAPE_ATTRS


def module_of(node, tracer_stack=None) -> tuple | None:
    """``(qualified name, type name)`` of the innermost module whose forward made ``node``."""
    stack = tracer_stack if tracer_stack is not None else node.meta.get("nn_module_stack")
    if not stack:
        return None
    qual, typ = list(stack.values())[-1]
    return qual, getattr(typ, "__name__", str(typ))


def describe(node, modules) -> str:
    """One-line description of an fx node: the operation and the module it lives in."""
    if node.op == "call_module":
        m = modules[node.target]
        return f"module '{node.target}' ({type(m).__name__})"
    if node.op == "call_function":
        what = f"function {getattr(node.target, '__name__', node.target)}"
    elif node.op == "call_method":
        what = f"tensor method .{node.target}()"
    else:
        what = f"{node.op} '{node.target}'"
    where = module_of(node)
    inside = f" in module '{where[0]}' ({where[1]})" if where and where[0] else ""
    return f"{what} at node '{node.name}'{inside}"


def _untraced():
    """Run real modules and functions inside a trace (fx's patches are lifted meanwhile)."""
    revert = getattr(torch.fx._symbolic_trace, "_maybe_revert_all_patches", None)
    return revert() if revert is not None else contextlib.nullcontext()


class _ShapeTracer(torch.fx.Tracer):
    """An fx tracer that resolves control flow on shapes with a concrete input."""

    def __init__(self, example: torch.Tensor, concrete: dict):
        super().__init__()
        self.example = example
        self.concrete = concrete
        self._values: dict = {}

    def _where(self) -> str:
        stack = getattr(self, "module_stack", None)
        if stack:
            qual, typ = list(stack.values())[-1]
            if qual:
                return f" in module '{qual}' ({getattr(typ, '__name__', typ)})"
        root = getattr(self, "root", None)
        return f" in {type(root).__name__}.forward" if root is not None else ""

    def _concrete(self, proxy, what: str):
        node = proxy.node
        # a condition on tensor values reaches the input without passing a shape query
        todo, seen = [node], set()
        while todo:
            n = todo.pop()
            if n in seen or is_shape_query(n):
                continue
            seen.add(n)
            if n.op == "placeholder" and n.name == self._input_name:
                raise UnsupportedModelError(
                    f"Python {what} on a tensor value{self._where()} (node '{node.name}'): the traced "
                    "graph would depend on the data; only control flow on shapes is supported"
                )
            todo.extend(n.all_input_nodes)
        todo, needed = [node], set()
        while todo:
            n = todo.pop()
            if n not in needed:
                needed.add(n)
                todo.extend(n.all_input_nodes)
        order = [n for n in node.graph.nodes if n in needed]
        root = self.root
        for n in order:
            if n in self._values:
                continue
            if n.op == "placeholder":
                v = self.example if n.name == self._input_name else None
            elif n.op == "get_attr":
                v = root
                with _untraced():  # fx patches Module.__getattr__ to return proxies
                    for part in n.target.split("."):
                        v = getattr(v, part)
            else:
                args = map_arg(n.args, lambda a: self._values[a])
                kwargs = map_arg(n.kwargs, lambda a: self._values[a])
                with torch.no_grad(), _untraced():
                    if n.op == "call_module":
                        v = root.get_submodule(n.target)(*args, **kwargs)
                    elif n.op == "call_function":
                        v = n.target(*args, **kwargs)
                    else:
                        v = getattr(args[0], n.target)(*args[1:], **kwargs)
            self._values[n] = v
        return self._values[node]

    def is_leaf_module(self, m, qualname) -> bool:
        # attention and timm modules with a rule of their own are called, not traced through
        from ._trace_rules import is_leaf
        return is_leaf(m) or super().is_leaf_module(m, qualname)

    def to_bool(self, obj) -> bool:
        return bool(self._concrete(obj, "control flow (if/while/assert)"))

    def iter(self, obj):
        return iter(self._concrete(obj, "iteration"))

    def trace(self, root, concrete_args=None):
        self._input_name = None
        graph = super().trace(root, concrete_args)
        return graph

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind == "placeholder" and self._input_name is None:
            self._input_name = node.name
        return node


def bind_optional_arguments(model) -> dict:
    """``concrete_args`` for every ``forward`` parameter after the first (their defaults).

    Raises
    ------
    UnsupportedModelError
        If ``forward`` has no parameter or a second parameter without a default.
    """
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    params = [p for p in sig.parameters.values()
              if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if not params:
        raise UnsupportedModelError(f"{type(model).__name__}.forward takes no input tensor")
    required = [p.name for p in params[1:] if p.default is inspect.Parameter.empty]
    if required:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward takes {1 + len(required)} inputs "
            f"({', '.join([params[0].name, *required])}); only models with one input tensor are supported "
            "(optional arguments with defaults are bound to their defaults)"
        )
    return {p.name: p.default for p in params[1:]}


def trace(model, example: torch.Tensor) -> torch.fx.GraphModule:
    """Trace ``model`` (already in eval mode) with its first argument as the only input."""
    concrete = bind_optional_arguments(model)
    tracer = _ShapeTracer(example, concrete)
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except UnsupportedModelError:
        raise
    except Exception as exc:  # fx raises many kinds of errors
        where = tracer._where()
        raise UnsupportedModelError(
            f"torch.fx could not trace {type(model).__name__}{where}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. The forward pass must be traceable "
            "(no control flow on tensor values, no data-dependent Python)"
        ) from exc
    name = model.__class__.__name__
    read_inplace_results(graph)
    return torch.fx.GraphModule(tracer.root, graph, name)


def read_inplace_results(graph) -> None:
    """Make later readers of a tensor changed in place (``out.mul_(gain)`` whose result is
    dropped, NFNet's skipinit) read the in-place operation's result: the same tensor at run
    time, but now the dataflow the builder follows passes through the operation."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for n in graph.nodes:
        name = n.target if n.op == "call_method" else getattr(n.target, "__name__", "") \
            if n.op == "call_function" else ""
        if not (isinstance(name, str) and name.endswith("_") and not name.startswith("__")):
            continue
        if n.args and isinstance(n.args[0], torch.fx.Node):
            x = n.args[0]
            for u in list(x.users):
                if u is not n and order[u] > order[n]:
                    u.replace_input_with(x, n)


class Recorder(torch.fx.Interpreter):
    """Run the traced module once; record shapes and the values that do not depend on the input.

    After :meth:`run`, ``node.meta["ng_shape"]`` is the output shape (a tuple, or a list of
    tuples for a tuple of tensors) and ``node.meta["ng_value"]`` the concrete value of
    nodes that do not depend on the input; ``signal`` is the set of nodes that do.
    """

    def __init__(self, gm, keep=()):
        super().__init__(gm)
        self.keep = set(keep)  # signal nodes whose value is kept too (gates)
        self.signal = set()
        first = True
        for n in gm.graph.nodes:
            if n.op == "placeholder":
                if first:
                    self.signal.add(n)
                    first = False
            elif any(a in self.signal for a in n.all_input_nodes) and not is_shape_query(n):
                self.signal.add(n)

    def run_node(self, n):
        result = super().run_node(n)
        n.meta["ng_shape"] = _shape_of(result)
        if n not in self.signal or n in self.keep:
            n.meta["ng_value"] = result
        return result


def _shape_of(x):
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)) and x and all(isinstance(t, torch.Tensor) for t in x):
        return [tuple(t.shape) for t in x]
    return None


_GATE_MODULES = (torch.nn.Sigmoid, torch.nn.Hardsigmoid)
_GATE_FUNCTIONS = {torch.sigmoid, torch.nn.functional.sigmoid, torch.nn.functional.hardsigmoid}
_GATE_METHODS = {"sigmoid", "sigmoid_"}
_VIEWS = {"view", "reshape", "expand_as", "expand", "unsqueeze", "flatten", "squeeze", "transpose", "permute"}
_MULS = {"mul", "mul_", "__mul__", "__rmul__"}


def _is_gate_activation(node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _GATE_MODULES)
    if node.op == "call_function":
        return node.target in _GATE_FUNCTIONS or getattr(node.target, "__name__", "") in ("hard_sigmoid", "sigmoid")
    return node.op == "call_method" and node.target in _GATE_METHODS


def find_gates(gm, signal) -> dict:
    """Gating products ``x * gate`` (squeeze-and-excitation, ECA, GLU-style).

    A gate is a product of two tensors that both depend on the input, one of which comes
    out of a sigmoid or hard sigmoid (possibly through views). Returns
    ``{mul node: (path operand, gate operand, gate-only nodes)}``; the gate-only nodes are
    the operations that feed only the gate (its pooling, convs, activations), which become
    off-path.
    """
    import operator

    modules = dict(gm.named_modules())
    out = {}
    for node in gm.graph.nodes:
        is_mul = (node.op == "call_function" and node.target in (operator.mul, operator.imul, torch.mul)) or \
            (node.op == "call_method" and node.target in _MULS)
        if not is_mul or len(node.args) != 2:
            continue
        a, b = node.args
        if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node) and a in signal and b in signal):
            continue
        gate = None
        for cand, other in ((b, a), (a, b)):
            n = cand
            while n.op in ("call_method", "call_function") and getattr(n.target, "__name__", n.target) in _VIEWS:
                n = n.args[0]
            if _is_gate_activation(n, modules):
                gate = (other, cand)
                break
        if gate is None:
            continue
        path, g = gate
        path_anc = _ancestors(path) | {path}
        only = _ancestors(g) | {g}
        only -= path_anc
        only = {n for n in only if n in signal}
        if any(u is not node and u not in only for n in only for u in n.users):
            continue  # the gate's computation feeds something else too: not a pure gate
        out[node] = (path, g, only)
    return out


def _ancestors(node) -> set:
    seen, todo = set(), list(node.all_input_nodes)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return seen


#: Above this many parameters the gates keep the values of the model's own dtype: a float64
#: copy and pass of RegNetY-128GF (644M parameters) cost 5 GB and about 12 s of tracing.
GATE_FLOAT64_MAX_PARAMS = 10**8


def gate_values_in_float64(gm, gates, example):
    """Evaluate the gates in float64 on a copy (so that their scales are exact), for models up
    to :data:`GATE_FLOAT64_MAX_PARAMS` parameters."""
    if sum(p.numel() for p in gm.parameters()) > GATE_FLOAT64_MAX_PARAMS:
        return
    try:
        gm64 = copy.deepcopy(gm).double()
    except Exception:  # a module that cannot be copied: keep the values of the model's dtype
        return
    names = {g.name for _, g, _ in gates.values()}
    rec = Recorder(gm64, keep=[n for n in gm64.graph.nodes if n.name in names])
    with torch.no_grad():
        rec.run(example.double())
    by_name = {n.name: n for n in gm64.graph.nodes}
    for _, g, _ in gates.values():
        g.meta["ng_value"] = by_name[g.name].meta["ng_value"]


def offpath_params(model_modules, gm, nodes, owner) -> list:
    """Weights (``dim > 1``) used only by gate nodes: the graph's off-path parameters."""
    params = dict(gm.named_parameters())
    out, seen = [], set()
    for n in gm.graph.nodes:
        names = []
        if n in nodes and n.op == "call_module":
            names = [f"{n.target}.{p}" for p, _ in model_modules[n.target].named_parameters()]
        elif n.op == "get_attr" and n.users and all(u in nodes for u in n.users):
            names = [n.target]
        for name in names:
            p = params.get(name)
            if p is not None and p.dim() > 1 and name not in seen:
                seen.add(name)
                out.append({"param": name, "shape": tuple(p.shape), "numel": p.numel(), "role": "gate",
                            "module": owner})
    return out


def check_untied(model, names) -> None:
    """Raise :class:`UnsupportedModelError` if two of the graph's parameter ``names`` are one
    tensor (tied weights: ``b.weight = a.weight``): each layer needs weights of its own (a
    mask per name would untie them, and the density would count the tensor twice)."""
    from .masks import stored_tensor

    owner: dict = {}  # id of the stored tensor (a masked weight's own) -> the names that read it
    for n in dict.fromkeys(names):
        owner.setdefault(id(stored_tensor(model, n)), []).append(n)
    for tied in owner.values():
        if len(tied) > 1:
            raise UnsupportedModelError(
                f"cannot build the unit graph of {type(model).__name__}: {', '.join(sorted(tied))} are one parameter "
                "(tied weights); each layer needs weights of its own (untie them, e.g. copy the tensor)")
