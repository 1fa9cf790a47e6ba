"""Estimates with intervals: the statistics every report and comparison shares (no torch, no Ray)."""

from __future__ import annotations

import math

from banel_ray.core.estimate import SAMPLED, Estimate


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for k successes in n trials."""
    from scipy.stats import beta

    if n <= 0:
        return (0.0, 1.0)
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def improvement_factor(rate: float, base: float) -> float:
    """rate / base; inf when the base estimate is 0 and the rate is not."""
    if base > 0:
        return rate / base
    return math.inf if rate > 0 else 1.0


def sampled(k: int, n: int) -> Estimate:
    """A success-rate estimate from k of n evaluation samples, with its 95% Clopper-Pearson interval."""
    lo, hi = clopper_pearson(k, n)
    return Estimate(rate=k / n if n else 0.0, lo=lo, hi=hi, kind=SAMPLED, k=k, n=n)
