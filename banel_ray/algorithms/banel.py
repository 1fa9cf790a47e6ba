"""BaNEL's algorithm as pure code (numpy only; no Ray, no torch).

Scores, filters, schedules and the drift controls: everything a BaNEL method decides between model
calls, so it is unit-tested in milliseconds. ``docs/architecture.md`` shows the round this serves.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("constant", "linear", "exponential", "cosine", "step")


def sequence_scores(
    logp_gen, logp_neg, lengths=None, length_norm: bool = True, negative_power: float = 1.0
) -> np.ndarray:
    """s(x) = log g(x) - kappa log p_phi(x), divided by the token count when ``length_norm``.

    ``negative_power`` kappa < 1 tempers the negative model (the ratio g / p_phi^kappa): a
    candidate is rejected less for looking like past failures and ranked more by g itself."""
    s = np.asarray(logp_gen, dtype=np.float64) - float(negative_power) * np.asarray(logp_neg, dtype=np.float64)
    if length_norm:
        if lengths is None:
            raise ValueError("length_norm needs lengths")
        s = s / np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)
    return s


def keep_count(n: int, factor: float) -> int:
    """How many of n candidates survive a filter factor f >= 1 (the top 1/f, at least one)."""
    if factor < 1:
        raise ValueError(f"filter factor must be >= 1, got {factor}")
    return max(1, min(n, int(math.ceil(n / factor - 1e-9)))) if n else 0


def quantile_filter(scores, factor: float) -> np.ndarray:
    """Boolean mask keeping the top ceil(n/f) scores (ties broken by position, deterministic).

    A score of -inf marks a candidate a drift control rejected: it is never kept, and the top 1/f
    is taken of the candidates that are left.
    """
    scores = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(scores)
    k = keep_count(int(ok.sum()), factor)
    mask = np.zeros(len(scores), dtype=bool)
    if k:
        order = np.argsort(-np.where(ok, scores, -np.inf), kind="stable")
        mask[order[:k]] = True
    return mask


def threshold_filter(scores, log_tau: float) -> np.ndarray:
    """Boolean mask keeping scores >= log tau (x is outside the rejection region)."""
    s = np.asarray(scores, dtype=np.float64)
    return np.isfinite(s) & (s >= log_tau)


# ---- drift control: stay inside the prior's support -------------------------------------------------


def support_threshold(prior_min_token_logps, quantile: float) -> float:
    """The per-token support threshold read off the prior's own samples: the ``quantile`` of their
    least likely token's log-probability (so the prior itself loses that fraction of its draws)."""
    v = np.asarray(prior_min_token_logps, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not 0 < quantile < 1 or v.size == 0:
        raise ValueError(f"quantile must be in (0, 1) with samples to read it from, got {quantile}")
    return float(np.quantile(v, quantile))


def support_mask(min_token_logp0, threshold: float) -> np.ndarray:
    """Candidates inside the prior's per-token support: no token with log p0(x_t | x_<t) below
    ``threshold``. Distillation drifts towards strings the prior finds impossible at some token
    (malformed queries, runaway lengths); this keeps the posterior where p0 puts mass, using
    nothing but p0."""
    m = np.asarray(min_token_logp0, dtype=np.float64)
    return np.isfinite(m) & (m >= threshold)


def drift_mask(max_token_log_ratio, limit: float) -> np.ndarray:
    """Candidates whose every token is at most ``limit`` nats more likely under g_t than under p0
    (max_t log g(x_t | x_<t) - log p0(x_t | x_<t) <= limit): a trust region on the *change* from
    the prior, not on the prior's own probability, so a token p0 writes rarely stays reachable
    (up to e^limit times its prior odds) while no token can run away from p0 without bound."""
    r = np.asarray(max_token_log_ratio, dtype=np.float64)
    return np.isfinite(r) & (r <= limit)


def apply_support(scores, inside) -> np.ndarray:
    """Scores with -inf where a candidate is outside the support (never kept by a filter)."""
    return np.where(np.asarray(inside, dtype=bool), np.asarray(scores, dtype=np.float64), -np.inf)


def sequential_accept(score_matrix, log_tau: float) -> np.ndarray:
    """Algorithm 1: accept a candidate only if *no* past negative model rejects it.

    ``score_matrix`` has one row per past negative model (log p0 - log p_phi_j), one column per
    candidate. With no past model every candidate is accepted.
    """
    m = np.asarray(score_matrix, dtype=np.float64)
    if m.size == 0:
        return np.ones(m.shape[-1] if m.ndim == 2 else 0, dtype=bool)
    return np.all(m >= log_tau, axis=0)


# Algorithm 1 draws at most this many p0 samples per sample it wants accepted (its proposals and
# its evaluations): past that, a round or an evaluation takes fewer
ACCEPT_CAP = 64


def sequential_accept_in_turn(n: int, region_scores, log_tau: float = 0.0) -> np.ndarray:
    """``sequential_accept`` without scoring what is already rejected: region j scores only the
    candidates every earlier region kept (``region_scores[j](indices)`` returns their scores).
    The same mask; with f = 2 each region halves the survivors, so t regions cost about two
    full passes instead of t."""
    alive = np.arange(n)
    for score in region_scores:
        if alive.size == 0:
            break
        s = np.asarray(score(alive), dtype=np.float64)
        alive = alive[s >= log_tau]
    mask = np.zeros(n, dtype=bool)
    mask[alive] = True
    return mask


def schedule_value(
    kind: str, start: float, end: float, t: int, total: int, step_every: int = 1, gamma: float = 0.5
) -> float:
    """Value of a decayed hyper-parameter (filter factor f or threshold tau) at round t (0-based).

    constant: start. linear/cosine/exponential: start -> end over ``total`` rounds (exponential
    interpolates geometrically, so start and end must be > 0). step: multiply by ``gamma`` every
    ``step_every`` rounds, clipped at end.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; allowed: {', '.join(SCHEDULES)}")
    if kind == "constant" or total <= 1:
        return float(start)
    p = min(max(t / (total - 1), 0.0), 1.0)
    if kind == "linear":
        return float(start + (end - start) * p)
    if kind == "cosine":
        return float(end + (start - end) * 0.5 * (1 + math.cos(math.pi * p)))
    if kind == "exponential":
        return float(start * (end / start) ** p)
    v = start * gamma ** (t // max(1, step_every))
    return float(max(v, end) if gamma < 1 else min(v, end))


def kl_estimate(logp_gen, logp_prior) -> float:
    """Monte-Carlo KL(g || p0) from samples of g: mean of log g(x) - log p0(x)."""
    a = np.asarray(logp_gen, dtype=np.float64) - np.asarray(logp_prior, dtype=np.float64)
    return float(a.mean()) if a.size else 0.0


def split_holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/held-out index split (held-out empty when frac is 0 or n < 5)."""
    idx = np.random.default_rng(seed).permutation(n)
    h = int(round(n * frac)) if n >= 5 else 0
    return np.sort(idx[h:]), np.sort(idx[:h])
