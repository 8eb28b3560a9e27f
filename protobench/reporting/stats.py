"""The statistics behind ``compare`` and ``report``'s paper column, as pure functions of numbers.

Multiple-comparison corrections (Holm, Benjamini-Hochberg), the smallest difference a two-sided t-test
detects with a given power (exact, by the noncentral t distribution), the two one-sided tests of
equivalence (TOST), the one-sample t interval of a mean and the t prediction interval for one new value. The
rules that use them are in docs/compare.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

#: ``--correction`` names: no correction, Holm's step-down (family-wise error), Benjamini-Hochberg (false discovery).
CORRECTIONS = ("none", "holm", "bh")
POWER = 0.8  # the power at which ``detectable_difference`` is quoted


# Student's t and the noncentral t through scipy.special: the same functions scipy.stats' distributions call,
# at a fifth of its import time (a report answers within a second: docs/report.md).


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t on ``df`` degrees of freedom (scipy.stats.t.ppf)."""
    return float(special.stdtrit(df, q))


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t on ``df`` degrees of freedom (scipy.stats.t.cdf)."""
    return float(special.stdtr(df, x))


def t_two_sided_p(t: float, df: float) -> float:
    """The two-sided p-value of the t statistic ``t`` on ``df`` degrees of freedom: 2 P(T <= -|t|)."""
    return 2.0 * t_cdf(-abs(t), df)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (Holm 1979). With the m p-values sorted
    ascending, the i-th smallest (i = 1..m) becomes max over j <= i of min(1, (m - j + 1) * p_(j))."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(np.argsort(p_values, kind="stable")):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values, in the input order (Benjamini and Hochberg 1995). With the
    m p-values sorted ascending, the i-th smallest becomes min over j >= i of min(1, m * p_(j) / j)."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 1.0
    order = np.argsort(p_values, kind="stable")
    for rank in reversed(range(m)):
        index = order[rank]
        running = min(running, m * float(p_values[index]) / (rank + 1))
        adjusted[index] = running
    return adjusted


def adjust(p_values: Sequence[float], correction: str) -> list[float]:
    """``p_values`` adjusted for their family by ``correction`` (none, holm or bh)."""
    if correction == "none":
        return [float(p) for p in p_values]
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown correction {correction!r}; use one of {', '.join(CORRECTIONS)}")


def strictest_alpha(alpha: float, correction: str, family_size: int) -> float:
    """The level one test must reach at the correction's strictest step: alpha / m for holm and bh (both
    compare the smallest p of m with alpha / m first), alpha itself for none."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; use one of {', '.join(CORRECTIONS)}")
    return alpha if correction == "none" else alpha / max(1, family_size)


def t_power(noncentrality: float, df: float, alpha: float) -> float:
    """The exact power of a two-sided t-test at level ``alpha`` on ``df`` degrees of freedom when the true
    difference is ``noncentrality`` standard errors: P(|T| > t_(1-alpha/2, df)) for T ~ noncentral t."""
    critical = t_quantile(1 - alpha / 2, df)
    upper = 1.0 - float(special.nctdtr(df, noncentrality, critical))
    lower = float(special.nctdtr(df, noncentrality, -critical))
    if not math.isfinite(lower):  # scipy can give nan deep in this tail, where the term is below 1e-15
        lower = 0.0
    return upper + lower


def detectable_difference(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The smallest true difference that a two-sided t-test at level ``alpha`` with standard error ``se`` and
    ``df`` degrees of freedom finds with probability ``power``: se * delta, where t_power(delta) = power."""
    if se <= 0:
        return 0.0
    if not alpha < power:
        raise ValueError(f"power {power} must exceed alpha {alpha}: a zero difference is found with probability alpha")

    def shortfall(delta: float) -> float:
        return t_power(delta, df, alpha) - power

    high = 1.0
    while shortfall(high) < 0:  # power rises with the noncentrality; bracket the root
        high *= 2
    from scipy import optimize  # only here: compare pays its import, a report does not

    return se * optimize.brentq(shortfall, 0.0, high, xtol=1e-12)


def equivalence_p(diff: float, se: float, df: float, margin: float) -> float:
    """The TOST p-value (Schuirmann 1987) that the true difference lies within +-``margin``: the larger of the
    one-sided t-test p of "difference <= -margin" and of "difference >= margin". A zero ``se`` gives 0 or 1."""
    if se <= 0:
        return 0.0 if abs(diff) < margin else 1.0
    above_lower = t_cdf(-(diff + margin) / se, df)
    below_upper = t_cdf((diff - margin) / se, df)
    return float(max(above_lower, below_upper))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The one-sample t interval of the mean of ``values`` (at least 2): mean +- t_(1-(1-c)/2, n-1) * sd / sqrt(n)."""
    array = np.asarray(values, dtype=float)
    n = len(array)
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {n}")
    mean = float(array.mean())
    half = t_quantile(0.5 + confidence / 2, n - 1) * float(array.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def prediction_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The t prediction interval for one new value drawn like ``values`` (at least 2):
    mean +- t_(1-(1-c)/2, n-1) * sd * sqrt(1 + 1/n). It holds a single new run with probability ``confidence``
    under normal seed noise; the interval of the mean (``mean_interval``) is sqrt(n + 1) times narrower."""
    array = np.asarray(values, dtype=float)
    n = len(array)
    if n < 2:
        raise ValueError(f"a prediction interval needs at least 2 values, got {n}")
    mean = float(array.mean())
    half = t_quantile(0.5 + confidence / 2, n - 1) * float(array.std(ddof=1)) * math.sqrt(1 + 1 / n)
    return mean - half, mean + half
