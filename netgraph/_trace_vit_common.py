"""Helpers of the rules for attention modules traced as leaves (:mod:`netgraph._trace_vit_variants`,
:mod:`netgraph._trace_levit`): checks of a token tensor, a layer's pending output, value rows
of a fused ``qkv``.
"""

from __future__ import annotations

from ._trace_attention import _linear_spec, _offpath
from ._trace_values import _mul, _Term, _Value


def _timm(m, name: str) -> bool:
    return type(m).__name__ == name and type(m).__module__.startswith("timm.")


def _tokens(c, node, x, n: int) -> None:
    if not isinstance(x, _Value) or not (x.channels_last and len(x.spatial) == 1 and x.flat_k == 1) or x.n != n:
        c.fail(node, f"attention on a tensor that is not (batch, tokens, {n})")


def _only_input(c, node) -> None:
    if len(node.args) + len(node.kwargs) != 1:
        c.fail(node, "attention called with a mask or other arguments")


def _flat(c, node, x: _Value) -> _Value:
    """``x`` as a unit group read per token (its tokens are alike)."""
    if x.group == 0:
        c.b.input_fixed = True
    return c.b.materialize(x.with_(spatial=(), channels_last=False), node.name)


def _value_rows(c, node, t: str, qkv, n_qk: int, n_v: int) -> dict:
    """The value rows ``[n_qk, n_qk + n_v)`` of the fused ``qkv`` as a layer spec; the query/key
    rows ``[0, n_qk)`` are off-path."""
    param = f"{t}.qkv.weight"
    _offpath(c, param, qkv.weight, f"{t}.qkv", rows=(0, n_qk))
    return _linear_spec(c, node, f"{t}.qkv", param, qkv.weight, rows=(n_qk, n_qk + n_v))


def _layer_out(c, node, src: _Value, spec: dict, in_scale=None, out_scale=None) -> _Value:
    """The pending output of layer ``spec`` reading the unit group ``src`` (its scale and ``in_scale``
    on the source side)."""
    return _Value(n=spec["weight"].shape[0], spatial=(),
                  terms=[_Term(src=src.group, layer=spec, in_scale=_mul(src.scale, in_scale), scale=out_scale)])
