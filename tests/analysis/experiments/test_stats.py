"""The study statistics against scipy and hand-computed values."""

import numpy as np
import pytest
from scipy import stats

from analysis.experiments.stats import holm, mean_ci, paired_t, spearman_ci, verdict

A = np.array([0.70, 0.72, 0.69, 0.75, 0.71])
B = np.array([0.68, 0.70, 0.70, 0.71, 0.69])


def test_mean_ci_matches_scipy_t_interval():
    mean, low, high = mean_ci(A)
    lo, hi = stats.t.interval(0.95, len(A) - 1, loc=A.mean(), scale=stats.sem(A))
    assert mean == pytest.approx(A.mean())
    assert (low, high) == pytest.approx((lo, hi))


def test_mean_ci_by_hand():
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    assert mean_ci([1.0, 2.0, 3.0]) == pytest.approx((2.0, 2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)
    assert mean_ci([1.0])[0] == 1.0 and np.isnan(mean_ci([1.0])[1])
    assert mean_ci([1.0, np.nan, 3.0])[0] == 2.0


def test_paired_t_matches_scipy():
    r = paired_t(A, B)
    ref = stats.ttest_rel(A, B)
    assert r["t"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    d = A - B
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (r["diff"], r["low"], r["high"]) == pytest.approx((d.mean(), lo, hi))
    assert r["n"] == 5


def test_paired_t_ties_and_zero_variance():
    tie = paired_t([0.1, 0.1, 0.1], [0.1, 0.1, 0.1])
    assert tie["t"] == 0 and tie["p"] == 1 and tie["diff"] == 0
    const = paired_t([0.3, 0.4, 0.5], [0.1, 0.2, 0.3])
    assert const["p"] == 0 and const["t"] == np.inf and const["diff"] == pytest.approx(0.2)
    assert np.isnan(paired_t([1.0], [0.0])["p"])
    assert paired_t([1.0, 2.0, np.nan, 4.0], [0.5, 1.0, 3.0, 2.0])["n"] == 3
    with pytest.raises(ValueError):
        paired_t([1.0, 2.0], [1.0])


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    got = holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    with_nan = holm([0.01, np.nan, 0.02])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.02])
    assert holm([]).shape == (0,)


def test_spearman_matches_scipy_with_fisher_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    r = spearman_ci(x, y)
    ref = stats.spearmanr(x, y)
    assert r["rho"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    half = 1.959964 * 1.06 / np.sqrt(27)
    assert (r["low"], r["high"]) == pytest.approx((np.tanh(np.arctanh(ref.statistic) - half),
                                                   np.tanh(np.arctanh(ref.statistic) + half)), abs=1e-6)


def test_spearman_ranks_minus_infinity_lowest_and_drops_nan():
    r = spearman_ci([-np.inf, 1.0, 2.0, 3.0, np.nan], [0.0, 1.0, 2.0, 3.0, 9.0])
    assert r["n"] == 4 and r["rho"] == pytest.approx(1.0)
    assert np.isnan(spearman_ci([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])["rho"])


def test_verdicts():
    assert verdict(0.1, 0.3) == "holds"
    assert verdict(-0.3, -0.1) == "does not hold (opposite)"
    assert verdict(-0.3, -0.1, sign=-1) == "holds"
    assert verdict(-0.1, 0.3) == "cannot tell at this power"
    assert verdict(-0.005, 0.005, margin=0.01) == "does not hold (negligible)"
    assert verdict(np.nan, np.nan).startswith("cannot tell")
