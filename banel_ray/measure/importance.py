"""Importance sampling for success rates far below what sampling sees (1e-5 .. 1e-25).

The rate of a model p is mu = E_p[f(x)], f(x) = 1 for a success. Draws come from K proposals
q_1..q_K, n_k from each (a *deterministic mixture*), and each draw gets the balance-heuristic
weight (Veach & Guibas 1995; Owen & Zhou 2000)

    w(x) = p(x) / sum_k (n_k / N) q_k(x),        mu_hat = (1/N) sum_i f(x_i) w(x_i),

which is unbiased whenever the mixture covers every success p can draw. One component is p itself
(the *defensive* component, Hesterberg 1995), so the mixture covers all of p's support and no
weight exceeds N / n_0. The variance is estimated within strata (the draws of one proposal are
i.i.d.): var = sum_k n_k s_k^2 / N^2.

The 95% interval is the gamma interval of Fay & Feuer (1997) for a weighted sum of Poisson counts:
here each success is a count of 1 with weight w_i / N, the variance is the stratified one, and the
upper limit adds the largest single contribution. Zero successes give [0, the defensive bound].
``normal`` (linear scale) and ``lognormal`` (delta method on log mu) intervals are computed beside
it for the coverage table (docs/mnist.md) that justifies the choice.

Diagnostics: the successes' effective sample size (Kish: (sum y)^2 / sum y^2), the largest weight
share (max y / sum y), the relative standard error and each component's share of the estimate.
Pure numpy/scipy; the samplers and scorers are in ``banel_ray.measure.tilted``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special, stats

INTERVALS = ("gamma", "lognormal", "normal")
DEFAULT_INTERVAL = "gamma"
# trust bars: below them the estimate is flagged (``reliable`` False). The coverage table shows
# coverage by ESS band; these are where it is at or above nominal.
MIN_ESS = 10.0
MAX_SHARE = 0.5


def balance_log_weights(log_p: np.ndarray, log_q: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """log w_i = log p(x_i) - log sum_k (n_k/N) q_k(x_i), for draws from every component.

    ``log_q`` is (N, K): each draw scored under every proposal; ``counts`` the draws per proposal."""
    log_p = np.asarray(log_p, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if log_q.ndim != 2 or log_q.shape != (len(log_p), len(counts)):
        raise ValueError(f"log_q must be (N, K) = ({len(log_p)}, {len(counts)}), got {log_q.shape}")
    alpha = counts / counts.sum()
    with np.errstate(divide="ignore"):
        log_mix = special.logsumexp(log_q + np.log(alpha)[None, :], axis=1)
    return log_p - log_mix


def gamma_interval(total: float, var: float, w_max: float, level: float = 0.95) -> tuple[float, float]:
    """Fay & Feuer (1997) gamma interval for a weighted sum of Poisson counts (scaled units)."""
    a = (1 - level) / 2
    if total <= 0:
        return 0.0, float(stats.gamma.ppf(1 - a, 1.0, scale=w_max)) if w_max > 0 else math.inf
    lo = float(stats.gamma.ppf(a, total**2 / var, scale=var / total)) if var > 0 else total
    ts, vs = total + w_max, var + w_max**2
    hi = float(stats.gamma.ppf(1 - a, ts**2 / vs, scale=vs / ts))
    return lo, hi


def estimate(
    log_p: np.ndarray,
    log_q: np.ndarray,
    counts: Sequence[int],
    strata: np.ndarray,
    success: np.ndarray,
    level: float = 0.95,
    interval: str = DEFAULT_INTERVAL,
    defensive: int = 0,
) -> dict:
    """The importance-sampling estimate of E_p[f] with its interval and diagnostics.

    ``strata[i]``: which proposal drew x_i; ``success[i]``: f(x_i); ``defensive``: the index of
    the component that is p itself (or dominates it: q >= p on successes), whose draws alone bound
    the rate when no success is seen. Returns {"rate", "lo", "hi", "method", diagnostics...}."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    success = np.asarray(success, dtype=bool)
    strata = np.asarray(strata, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n_total = int(counts.sum())
    if len(success) != n_total or len(strata) != n_total:
        raise ValueError("success and strata need one entry per draw")
    lw = balance_log_weights(log_p, log_q, counts)
    hits = np.flatnonzero(success)
    per_comp_hits = np.bincount(strata[hits], minlength=len(counts)).tolist()
    z = stats.norm.ppf(1 - (1 - level) / 2)
    out = {
        "n": n_total,
        "hits": int(len(hits)),
        "hits_per_component": per_comp_hits,
        "interval": interval,
        "level": level,
    }
    if len(hits) == 0:
        # the defensive draws alone: n_0 draws of a q_0 >= p on successes, none a success
        n0 = int(counts[defensive])
        hi = -math.log((1 - level) / 2) / n0 if n0 else 1.0
        out.update(
            rate=0.0,
            lo=0.0,
            hi=min(1.0, hi),
            log10_rate=-math.inf,
            rel_se=math.inf,
            ess=0.0,
            max_weight_share=math.nan,
            component_share=[0.0] * len(counts),
            reliable=False,
            intervals={k: [0.0, min(1.0, hi)] for k in INTERVALS},
        )
        return out
    c = float(lw[hits].max())  # scale: y = exp(lw - c) for the successes, 0 elsewhere
    y = np.zeros(n_total, dtype=np.float64)
    y[hits] = np.exp(lw[hits] - c)
    total = y.sum() / n_total  # mu_hat / e^c
    var = 0.0
    for k, n_k in enumerate(counts):
        if n_k > 1:
            var += n_k * float(np.var(y[strata == k], ddof=1))
    var /= n_total**2
    se = math.sqrt(var)
    contrib = y[hits] / n_total
    scale = math.exp(c)
    ivs = {
        "gamma": gamma_interval(total, var, float(contrib.max()), level),
        "lognormal": (
            (total * math.exp(-z * se / total), total * math.exp(z * se / total)) if se > 0 else (total, total)
        ),
        "normal": (max(0.0, total - z * se), total + z * se),
    }
    lo, hi = ivs[interval]
    ess = float(y.sum() ** 2 / (y**2).sum())
    share = float(y.max() / y.sum())
    comp = np.bincount(strata, weights=y, minlength=len(counts)) / y.sum()
    out.update(
        rate=total * scale,
        lo=min(1.0, lo * scale),
        hi=min(1.0, hi * scale),
        log10_rate=(math.log(total) + c) / math.log(10),
        rel_se=se / total,
        ess=ess,
        max_weight_share=share,
        component_share=[round(float(s), 6) for s in comp],
        reliable=bool(ess >= MIN_ESS and share <= MAX_SHARE),
        intervals={k: [min(1.0, a * scale), min(1.0, b * scale)] for k, (a, b) in ivs.items()},
    )
    return out


def covers(est: dict, exact: float, interval: str | None = None) -> bool:
    lo, hi = est["intervals"][interval] if interval else (est["lo"], est["hi"])
    return lo <= exact <= hi


def coverage(estimates: Sequence[dict], exact: float, level: float = 0.95) -> dict:
    """How often each interval covers the exact rate over repeated estimates, with a Wilson
    interval on that frequency (statsmodels), and the estimates' spread around the truth."""
    from statsmodels.stats.proportion import proportion_confint

    r = len(estimates)
    out: dict = {"exact": exact, "repeats": r}
    for k in INTERVALS:
        hit = sum(covers(e, exact, k) for e in estimates)
        lo, hi = proportion_confint(hit, r, alpha=1 - level, method="wilson")
        out[k] = {"coverage": hit / r, "wilson": [float(lo), float(hi)]}
        out[k]["below"] = sum(e["intervals"][k][1] < exact for e in estimates) / r  # interval entirely below
    rel = [e for e in estimates if e["reliable"]]
    hit = sum(covers(e, exact) for e in rel)
    out["reliable"] = {
        "share": len(rel) / r,
        "coverage": hit / len(rel) if rel else math.nan,
        "wilson": [float(x) for x in proportion_confint(hit, len(rel), alpha=1 - level, method="wilson")]
        if rel
        else [math.nan, math.nan],
    }
    rates = np.array([e["rate"] for e in estimates])
    with np.errstate(divide="ignore"):
        log_err = np.log10(np.where(rates > 0, rates, np.nan) / exact)
    out["mean_rate_over_exact"] = float(rates.mean() / exact)
    out["median_log10_error"] = float(np.nanmedian(log_err)) if np.isfinite(log_err).any() else math.nan
    out["zero_hit_runs"] = int((rates == 0).sum())
    out["mean_hits"] = float(np.mean([e["hits"] for e in estimates]))
    out["median_ess"] = float(np.median([e["ess"] for e in estimates]))
    out["median_rel_se"] = float(np.median([e["rel_se"] for e in estimates]))
    return out
