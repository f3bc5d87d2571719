"""Global magnitude pruning at initialization: keep the largest ``|w|``."""

from __future__ import annotations

import numpy as np

from ._select import top_k_masks
from .base import Context, method


@method("magnitude", description="Keep the globally largest |w| (ties by position).")
def magnitude_masks(ctx: Context) -> list:
    return top_k_masks([np.abs(l.weight) for l in ctx.graph.layers], ctx.target)
