"""The rules that take precedence in the tracer's dispatcher: modules traced as leaves.

Each module listed in :data:`RULE_MODULES` offers ``is_leaf(module) -> bool`` (called by
the fx tracer: a leaf is called, not traced through) and ``rule_for(node, module)`` (the
rule for an fx node, or None). The dispatcher (:func:`netgraph.trace._rule`) asks them in
order before the generic rules; a new family of leaf rules is one more entry here.
"""

from __future__ import annotations

from . import _trace_attention, _trace_leaves, _trace_tokens, _trace_vit_variants

#: In order of precedence (timm leaves before the generic timm ``Attention`` match).
RULE_MODULES = (_trace_leaves, _trace_attention, _trace_tokens, _trace_vit_variants)


def is_leaf(module) -> bool:
    """True if some rule module traces ``module`` whole."""
    return any(r.is_leaf(module) for r in RULE_MODULES)


def rule_for(node, module):
    """The first leaf rule for an fx node, or None."""
    for r in RULE_MODULES:
        if (rule := r.rule_for(node, module)) is not None:
            return rule
    return None
