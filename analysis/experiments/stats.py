"""Small statistics for the training studies: t intervals, paired t-tests, Holm, Spearman.

numpy and scipy only; every function takes plain arrays and returns plain floats or arrays.

Conventions
-----------
* Intervals are two-sided at ``level`` (95% by default); with fewer than two values (or
  fewer than four pairs for a correlation) the interval is ``nan``.
* A paired t-test whose differences are all equal (up to ``1e-12``, the rounding of the
  subtraction) has zero variance: if they are all zero
  (a tie, e.g. two collapsed masks predicting the same class on every seed) ``t = 0`` and
  ``p = 1``; otherwise ``t = +-inf`` and ``p = 0`` (the limit of the test). Pairs with a
  ``nan`` on either side are dropped.
* Holm's step-down correction controls the family-wise error rate over the ``p`` values
  given; ``nan`` values are not counted in the family and stay ``nan``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values, level: float = 0.95) -> tuple:
    """``(mean, low, high)`` of ``values`` with a Student-t interval over them.

    >>> mean_ci([1.0, 2.0, 3.0])  # doctest: +ELLIPSIS
    (2.0, -0.484..., 4.484...)
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if n < 2:
        return (mean, np.nan, np.nan)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return (mean, mean - half, mean + half)


def paired_t(a, b, level: float = 0.95) -> dict:
    """Paired t-test of ``a - b`` (same seeds in the same order).

    Returns
    -------
    dict
        ``n`` pairs, ``diff`` (mean of ``a - b``), ``low`` and ``high`` (its t interval),
        ``t``, ``p`` (two-sided); zero-variance differences as in the module notes.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.shape} and {b.shape}")
    d = (a - b)[~(np.isnan(a) | np.isnan(b))]
    n = len(d)
    diff, low, high = mean_ci(d, level)
    if n < 2:
        return {"n": n, "diff": diff, "low": low, "high": high, "t": np.nan, "p": np.nan}
    sd = d.std(ddof=1)
    if np.ptp(d) <= 1e-12 * max(1.0, abs(diff)):  # equal up to rounding of the subtraction
        t = 0.0 if diff == 0 else float(np.copysign(np.inf, diff))
        return {"n": n, "diff": diff, "low": diff, "high": diff, "t": t, "p": 1.0 if diff == 0 else 0.0}
    t = diff / (sd / np.sqrt(n))
    p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"n": n, "diff": diff, "low": low, "high": high, "t": float(t), "p": p}


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p values (same order as given, capped at 1, ``nan`` kept out).

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def spearman_ci(x, y, level: float = 0.95) -> dict:
    """Spearman's rank correlation with a Fisher-z interval (standard error ``1.06 / sqrt(n - 3)``,
    Fieller, Hartley & Pearson 1957); ``-inf`` values rank lowest, ``nan`` pairs are dropped.

    Returns
    -------
    dict
        ``n``, ``rho``, ``low``, ``high``, ``p`` (scipy's test of ``rho = 0``).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 3 or np.ptp(stats.rankdata(x)) == 0 or np.ptp(stats.rankdata(y)) == 0:
        return {"n": n, "rho": np.nan, "low": np.nan, "high": np.nan, "p": np.nan}
    res = stats.spearmanr(stats.rankdata(x), stats.rankdata(y))
    rho, p = float(res.statistic), float(res.pvalue)
    if n < 4 or abs(rho) == 1:
        return {"n": n, "rho": rho, "low": np.nan, "high": np.nan, "p": p}
    z, half = np.arctanh(rho), stats.norm.ppf(0.5 + level / 2) * 1.06 / np.sqrt(n - 3)
    return {"n": n, "rho": rho, "low": float(np.tanh(z - half)), "high": float(np.tanh(z + half)), "p": p}


def verdict(low: float, high: float, sign: int = 1, margin: float = 0.0) -> str:
    """A claim that an effect is positive (``sign=1``) or negative (``sign=-1``), read off an interval.

    ``holds`` when the interval lies on the claimed side of 0 (beyond it); ``does not hold``
    when it lies on the other side, or within ``+-margin`` of 0 (an effect too small to
    matter); ``cannot tell at this power`` when it crosses 0 and reaches past the margin;
    ``cannot tell`` without an interval.
    """
    if np.isnan(low) or np.isnan(high):
        return "cannot tell (no interval)"
    lo, hi = (low, high) if sign > 0 else (-high, -low)
    if lo > 0:
        return "holds"
    if hi < 0:
        return "does not hold (opposite)"
    if margin > 0 and -margin <= lo and hi <= margin:
        return "does not hold (negligible)"
    return "cannot tell at this power"
