"""Estimates with intervals: the statistics every report and comparison shares (no torch, no Ray)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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


@dataclass
class Estimate:
    """A success-rate estimate from k of n evaluation samples, with its 95% interval."""

    k: int
    n: int

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.k, self.n)

    def as_dict(self) -> dict:
        lo, hi = self.interval
        return {"k": self.k, "n": self.n, "rate": self.rate, "lo": lo, "hi": hi}
