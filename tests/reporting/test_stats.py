"""``protobench.reporting.stats`` against values computed by hand or independently from scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from protobench.reporting.stats import (
    adjust,
    benjamini_hochberg,
    detectable_difference,
    equivalence_p,
    holm,
    mean_interval,
    prediction_interval,
    strictest_alpha,
    t_power,
)

# Sorted: 0.005, 0.01, 0.03, 0.04 (m = 4).
P_VALUES = [0.01, 0.04, 0.03, 0.005]


def test_holm_by_hand():
    # (m - j + 1) * p_(j): 4 * 0.005 = 0.02, 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, 1 * 0.04 = 0.04 -> running max
    assert holm(P_VALUES) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.5, 0.9]) == pytest.approx([1.0, 1.0, 1.0])  # capped at 1, kept monotone
    assert holm([0.02]) == pytest.approx([0.02]) and holm([]) == []


def test_benjamini_hochberg_by_hand_and_as_scipy():
    # m * p_(j) / j: 0.02, 0.02, 0.04, 0.04 -> running min from the largest
    assert benjamini_hochberg(P_VALUES) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert benjamini_hochberg([0.5, 0.5, 0.9]) == pytest.approx([0.75, 0.75, 0.9])
    if not hasattr(stats, "false_discovery_control"):  # scipy >= 1.11
        pytest.skip("scipy has no false_discovery_control")
    p = np.random.default_rng(0).uniform(0, 0.2, 25) ** 2
    assert benjamini_hochberg(list(p)) == pytest.approx(list(stats.false_discovery_control(p)), rel=1e-12)


def test_adjust_and_the_strictest_alpha():
    assert adjust(P_VALUES, "none") == P_VALUES
    assert adjust(P_VALUES, "holm") == holm(P_VALUES) and adjust(P_VALUES, "bh") == benjamini_hochberg(P_VALUES)
    assert strictest_alpha(0.05, "holm", 6) == pytest.approx(0.05 / 6)
    assert strictest_alpha(0.05, "bh", 4) == pytest.approx(0.0125) and strictest_alpha(0.05, "none", 6) == 0.05
    with pytest.raises(ValueError, match="unknown correction 'bonf'"):
        adjust(P_VALUES, "bonf")


def power_by_hand(delta: float, se: float, df: float, alpha: float) -> float:
    """P(|T| > t_crit) for T ~ noncentral t(df, delta / se), straight from scipy."""
    critical = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    return stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc)


def test_detectable_difference_has_80_percent_power_and_no_less():
    sd, n, alpha = 2.0, 15, 0.05 / 6
    se = sd / math.sqrt(n)
    delta = detectable_difference(se, n - 1, alpha)
    assert power_by_hand(delta, se, n - 1, alpha) == pytest.approx(0.8, abs=1e-9)
    assert power_by_hand(0.99 * delta, se, n - 1, alpha) < 0.8 < power_by_hand(1.01 * delta, se, n - 1, alpha)
    # bisection on the power computed here, independently of the module's root finder
    low, high = 0.0, 10 * se
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if power_by_hand(middle, se, n - 1, alpha) < 0.8 else (low, middle)
    assert delta == pytest.approx(low, rel=1e-9)
    # with very many degrees of freedom the t-test is a z-test: (z_(1-alpha/2) + z_0.8) * se
    z = stats.norm.ppf(1 - 0.05 / 2) + stats.norm.ppf(0.8)
    assert detectable_difference(1.0, 1e7, 0.05) == pytest.approx(z, rel=1e-4)
    assert t_power(0.0, 14, 0.05) == pytest.approx(0.05)  # no difference: found at the level alone


def test_detectable_difference_shrinks_with_n_and_grows_with_the_std():
    def paired(sd: float, n: int) -> float:
        return detectable_difference(sd / math.sqrt(n), n - 1, 0.05 / 6)

    by_n = [paired(2.0, n) for n in (3, 5, 10, 15, 30)]
    assert all(a > b for a, b in zip(by_n, by_n[1:], strict=False))
    by_sd = [paired(sd, 15) for sd in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(by_sd, by_sd[1:], strict=False))
    assert by_sd[2] == pytest.approx(2 * by_sd[1])  # linear in the std at a fixed n
    assert detectable_difference(0.0, 4, 0.05) == 0.0  # no spread at all: any difference is seen


def test_equivalence_holds_exactly_when_the_90_percent_interval_is_inside_the_margin():
    diff, se, df = 0.25, 0.1, 10
    upper = diff + stats.t.ppf(0.95, df) * se  # the 90% interval is [0.069, 0.431]
    assert equivalence_p(diff, se, df, upper) == pytest.approx(0.05)
    assert equivalence_p(diff, se, df, upper + 0.01) < 0.05 < equivalence_p(diff, se, df, upper - 0.01)
    assert equivalence_p(diff, se, df, 0.5) == pytest.approx(stats.t.cdf((diff - 0.5) / se, df))
    assert equivalence_p(-diff, se, df, 0.5) == pytest.approx(equivalence_p(diff, se, df, 0.5))  # symmetric
    assert (equivalence_p(0.3, 0.0, 4, 0.5), equivalence_p(0.6, 0.0, 4, 0.5)) == (0.0, 1.0)


def test_mean_interval_is_scipys_one_sample_t_interval():
    values = [80.0, 82.0, 84.0]
    low, high = mean_interval(values)
    expected = stats.t.interval(0.95, 2, loc=82.0, scale=stats.sem(values))
    assert (low, high) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert low == pytest.approx(82.0 - 4.302653 * 2 / math.sqrt(3), abs=1e-5)
    with pytest.raises(ValueError, match="at least 2 values"):
        mean_interval([80.0])


def test_prediction_interval_for_one_new_run_by_hand_and_by_scipy():
    values = [80.0, 82.0, 84.0]  # mean 82, sd 2, n 3
    low, high = prediction_interval(values)
    half = stats.t.ppf(0.975, 2) * 2.0 * math.sqrt(1 + 1 / 3)
    assert (low, high) == (pytest.approx(82.0 - half), pytest.approx(82.0 + half))
    assert (low, high) == (pytest.approx(72.0634, abs=1e-4), pytest.approx(91.9366, abs=1e-4))
    expected = stats.t.interval(0.95, 2, loc=82.0, scale=np.std(values, ddof=1) * math.sqrt(1 + 1 / 3))
    assert (low, high) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    mean_low, mean_high = mean_interval(values)
    assert high - low == pytest.approx((mean_high - mean_low) * math.sqrt(3 + 1))  # sqrt(n + 1) times wider
    with pytest.raises(ValueError, match="at least 2 values"):
        prediction_interval([80.0])


def test_prediction_interval_holds_one_new_draw_95_percent_of_the_time():
    draws = np.random.default_rng(0).normal(size=(4000, 6))  # five runs of ours, then one more (the paper's run)
    inside = [low <= row[5] <= high for row in draws for low, high in [prediction_interval(row[:5])]]
    assert np.mean(inside) == pytest.approx(0.95, abs=0.012)  # 3.5 binomial standard errors
    narrow = [low <= row[5] <= high for row in draws for low, high in [mean_interval(row[:5])]]
    assert np.mean(narrow) < 0.75  # the interval of the mean holds a single new run about 2 times in 3
