"""The one conversion of results to plain JSON-ready Python values."""

from __future__ import annotations

import math


def plain(obj, nonfinite: str = "null"):
    """``obj`` with numpy/torch scalars turned into Python numbers, tuples into lists,
    keys into strings and anything else unknown into its ``str``.

    ``nonfinite="null"`` turns NaN and infinities into ``None`` (JSON has no such numbers:
    printed records, the sweep database); ``"keep"`` leaves them (mask-file metadata,
    which ``torch.load(weights_only=True)`` reads back as floats).

    >>> import numpy as np
    >>> plain({"a": np.float64(1.5), "b": (np.int64(2), float("-inf"))})
    {'a': 1.5, 'b': [2, None]}
    """
    if isinstance(obj, dict):
        return {str(k): plain(v, nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, nonfinite) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, RuntimeError):  # an array of several values
            return plain(obj.tolist(), nonfinite)
    if isinstance(obj, float):
        return None if (nonfinite == "null" and not math.isfinite(obj)) else obj
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if isinstance(obj, int):  # an int subclass such as an IntEnum
        return int(obj)
    return str(obj)  # str subclasses (torch.__version__) become plain strings
