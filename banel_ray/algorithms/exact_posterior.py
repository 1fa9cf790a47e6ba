"""Algorithm 1's posterior measured exactly on an enumerable space (numpy only).

Algorithm 1 never distils: its generator is p0 restricted to the strings that no round's rejection
region rejects, renormalised. Where every string can be scored (a table of log p per string, as
``models.exact_rate.all_logprobs`` gives), that posterior's success rate is a ratio of two
log-sum-exps, with no rejection sampling and no interval:

    log P(success) = logsumexp_{x accepted, r(x)=1} log p0(x) - logsumexp_{x accepted} log p0(x).

A region accepts x when its score (``banel.sequence_scores``: log p0 - log p_phi, per token when
length-normalised) is at least its log tau, the rule ``actors.trainers.regions_accept`` applies to
samples, so the two agree string by string.
"""

from __future__ import annotations

import math

import numpy as np

from banel_ray.algorithms.banel import sequence_scores


def region_accepts(logp0, logp_phi, log_tau: float, length: int, length_norm: bool = True) -> np.ndarray:
    """Mask of the strings (every entry of the tables, all of one ``length``) one region accepts."""
    lengths = np.full(np.shape(logp0), length, dtype=np.float64) if length_norm else None
    return sequence_scores(logp0, logp_phi, lengths, length_norm) >= log_tau


def accepted_mask(logp0, region_tables, length: int, length_norm: bool = True, start=None) -> np.ndarray:
    """Strings no region rejects. ``region_tables`` yields (log p_phi table, log tau) one region at a
    time (a generator keeps one table in memory); ``start``: the mask of regions already applied."""
    mask = np.ones(np.shape(logp0), dtype=bool) if start is None else np.array(start, dtype=bool)
    for logp_phi, log_tau in region_tables:
        mask &= region_accepts(logp0, logp_phi, log_tau, length, length_norm)
    return mask


def log_mass(logp, mask=None) -> float:
    """logsumexp of log p over the masked entries (-inf when none)."""
    v = np.asarray(logp, dtype=np.float64)
    v = v[np.asarray(mask, dtype=bool)] if mask is not None else v.ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -math.inf
    m = float(v.max())
    return m + math.log(float(np.exp(v - m).sum()))


def posterior_estimate(logp0, accepted, success, outside_mass: float = 0.0) -> dict:
    """The exact success rate of p0 restricted to ``accepted`` (a rate record, as the driver reports).

    ``outside_mass``: p0's mass on strings outside the table (malformed ones: early EOS), which a
    sampler's regions may accept too; they are never successes, so the rate lies between
    six / (accepted + outside) ("lo") and six / accepted ("hi", the point reported)."""
    acc = log_mass(logp0, accepted)
    six = log_mass(logp0, np.asarray(accepted, dtype=bool) & np.asarray(success, dtype=bool))
    log_rate = six - acc if acc > -math.inf else -math.inf
    rate = math.exp(log_rate) if log_rate > -math.inf else 0.0
    lo = rate
    if outside_mass > 0 and acc > -math.inf and six > -math.inf:
        lo = math.exp(six - float(np.logaddexp(acc, math.log(outside_mass))))
    return {
        "rate": rate,
        "lo": lo,
        "hi": rate,
        "log10_rate": log_rate / math.log(10),
        "log10_accepted_mass": acc / math.log(10),
        "accepted_codes": int(np.count_nonzero(accepted)),
        "method": "exact: p0 restricted to the codes no region rejects",
        "exact": True,
    }


def distillation_error(logp0, accepted, logp_gen) -> dict:
    """How far a generator g is from Algorithm 1's posterior (p0 restricted to ``accepted``), exactly.

    ``kl_posterior_to_generator``: KL(posterior || g) in nats, what fitting g to the posterior's
    samples by maximum likelihood minimises (the other direction is infinite: g gives some mass to
    every string, the posterior none to a rejected one). ``generator_accepted_mass``: g's mass on
    what the regions accept (1 for a perfect distillation)."""
    acc = np.asarray(accepted, dtype=bool)
    log_z = log_mass(logp0, acc)
    log_post = np.asarray(logp0, dtype=np.float64)[acc] - log_z
    post = np.exp(log_post)
    lg = np.asarray(logp_gen, dtype=np.float64)[acc]
    inside = post > 0
    return {
        "kl_posterior_to_generator": float((post[inside] * (log_post[inside] - lg[inside])).sum()),
        "generator_accepted_mass": math.exp(log_mass(logp_gen, acc)),
    }


def exact_filter(logp_gen, scores, factor: float | None = None, log_tau: float | None = None):
    """Algorithm 2's filter applied to the whole space instead of a pool: (mask of the strings kept,
    log tau). With a factor f, tau is the score above which g holds 1/f of its (table) mass, the
    limit of "keep the top 1/f of a pool drawn from g" as the pool grows; with ``log_tau``, the
    threshold rule as given. The distillation target is g restricted to the mask, renormalised."""
    s = np.asarray(scores, dtype=np.float64)
    if factor is not None:
        flat, lg = s.ravel(), np.asarray(logp_gen, dtype=np.float64).ravel()
        order = np.argsort(-flat, kind="stable")
        mass = np.cumsum(np.exp(lg[order] - log_mass(lg)))
        k = min(int(np.searchsorted(mass, 1.0 / factor - 1e-12)), flat.size - 1)
        log_tau = float(flat[order[k]])
    if log_tau is None:
        raise ValueError("exact_filter needs a factor or a log tau")
    return s >= log_tau, float(log_tau)


def posterior_threshold(logp0, accepted, logp_phi, factor: float, length: int, length_norm: bool = True) -> float:
    """The log tau at which a new region (``logp_phi``'s table) keeps 1/f of the posterior's mass
    (p0 restricted to ``accepted``; None: every string): Algorithm 2's exact filter (``exact_filter``)
    applied to that posterior, so each round halves it at f = 2 instead of halving p0. -inf (the
    region rejects nothing) when the posterior is empty."""
    w = np.asarray(logp0, dtype=np.float64)
    if accepted is not None:
        w = np.where(np.asarray(accepted, dtype=bool), w, -np.inf)
    if log_mass(w) == -math.inf:
        return -math.inf
    lengths = np.full(np.shape(w), length, dtype=np.float64) if length_norm else None
    return exact_filter(w, sequence_scores(logp0, logp_phi, lengths, length_norm), factor)[1]


def draw_codes(logp, mask, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` flat indices drawn exactly (with replacement) from exp(logp) restricted to ``mask``."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool).ravel())
    if n <= 0 or idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    w = np.asarray(logp, dtype=np.float64).ravel()[idx]
    p = np.exp(w - w.max())
    return idx[rng.choice(idx.size, size=n, p=p / p.sum())]
