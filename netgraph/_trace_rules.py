"""The rules that take precedence in the tracer's dispatcher: modules traced as leaves.

Each module listed in :data:`RULE_MODULES` offers ``is_leaf(module) -> bool`` (called by
the fx tracer: a leaf is called, not traced through) and ``rule_for(node, module)`` (the
rule for an fx node, or None). The dispatcher (:func:`netgraph.trace._rule`) asks them in
order before the generic rules; a new family of leaf rules is one more entry here.
"""

from __future__ import annotations

from . import _trace_attention, _trace_leaves, _trace_tokens, _trace_vit_variants, _trace_windows

#: In order of precedence (timm leaves and window attention before the generic timm ``Attention`` match).
RULE_MODULES = (_trace_leaves, _trace_windows, _trace_attention, _trace_tokens, _trace_vit_variants)


#: What the tracer supports, in the words of its unsupported-model error.
SUPPORTED = (
    "Linear (also on channels-last tensors), Conv1d/Conv2d/Conv3d (also grouped/depthwise), BatchNorm "
    "(module or F.batch_norm), LayerNorm over channels, GroupNorm, InstanceNorm, elementwise activations and "
    "dropout/stochastic depth (identity under the linearisation), max/avg/adaptive pooling, "
    "mean/sum over spatial dims, flatten/view/reshape/permute/transpose/getitem, cat/split/chunk/"
    "channel shuffle, residual add or subtraction, multiplication by a number or a per-channel constant "
    "(layer scale), token-mixing Linear (MLP-Mixer, ResMLP, gMLP), self-attention (nn.MultiheadAttention, torchvision "
    "Swin and MaxViT, timm Attention, Swin/TinyViT window attention, EfficientFormer, FastViT; timm CaiT, PiT, LeViT "
    "and EdgeNeXt attention variants), timm StarReLU, GlobalResponseNorm, StdConv2d/ScaledStdConv2d, and "
    "softmax/log_softmax as the last operation"
)


def is_leaf(module) -> bool:
    """True if some rule module traces ``module`` whole."""
    return any(r.is_leaf(module) for r in RULE_MODULES)


def rule_for(node, module):
    """The first leaf rule for an fx node, or None."""
    for r in RULE_MODULES:
        if (rule := r.rule_for(node, module)) is not None:
            return rule
    return None
