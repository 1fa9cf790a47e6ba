"""Algorithm 1's posterior measured exactly (algorithms/exact_posterior.py), against brute force
(tests/integration/test_exact_posterior_sampling.py checks it against rejection sampling through
the same regions, actors.trainers.regions_accept, on a trained prior)."""

import math

import numpy as np
import pytest
import torch

from banel_ray.algorithms import banel as alg
from banel_ray.algorithms import exact_posterior as ep

torch.set_num_threads(1)

TOKS, LENGTH, PROMPT, EOS = (3, 4, 5, 6), 3, (1,), 2


def test_accepted_mask_is_the_sequential_rule_on_every_entry():
    rng = np.random.default_rng(0)
    logp0 = rng.normal(-4, 1, size=(5, 5))
    regions = [(rng.normal(-4, 1, size=(5, 5)), tau) for tau in (-0.2, 0.1, 0.0)]
    for norm in (True, False):
        mask = ep.accepted_mask(logp0, iter(regions), LENGTH, norm)
        scores = np.stack(
            [alg.sequence_scores(logp0.ravel(), t.ravel(), np.full(25, LENGTH), norm) - tau for t, tau in regions]
        )
        assert (mask.ravel() == alg.sequential_accept(scores, 0.0)).all()
        # regions applied one at a time (a cached mask) give the same mask
        first = ep.accepted_mask(logp0, iter(regions[:1]), LENGTH, norm)
        assert (ep.accepted_mask(logp0, iter(regions[1:]), LENGTH, norm, start=first) == mask).all()
    assert ep.accepted_mask(logp0, iter([]), LENGTH).all()


def test_posterior_estimate_is_the_renormalised_sum():
    rng = np.random.default_rng(1)
    logp0 = np.log(rng.dirichlet(np.ones(64)) * 0.9)  # 0.1 of the mass outside the table
    acc, six = rng.random(64) < 0.6, rng.random(64) < 0.3
    p = np.exp(logp0)
    est = ep.posterior_estimate(logp0, acc, six, outside_mass=0.1)
    assert est["hi"] == est["rate"] == pytest.approx(p[acc & six].sum() / p[acc].sum(), rel=1e-12)
    assert est["lo"] == pytest.approx(p[acc & six].sum() / (p[acc].sum() + 0.1), rel=1e-12)
    assert est["accepted_codes"] == acc.sum() and est["exact"]
    assert ep.posterior_estimate(logp0, acc, np.zeros(64, bool))["rate"] == 0.0
    assert ep.log_mass(logp0, np.zeros(64, bool)) == -math.inf


def test_distillation_error_is_the_brute_force_kl():
    rng = np.random.default_rng(3)
    logp0 = np.log(rng.dirichlet(np.ones(27)) * 0.95).reshape(3, 3, 3)  # some mass outside the table
    logg = np.log(rng.dirichlet(np.ones(27)) * 0.9).reshape(3, 3, 3)
    acc = rng.random((3, 3, 3)) < 0.5
    z = sum(math.exp(logp0[x]) for x in np.ndindex(3, 3, 3) if acc[x])
    kl = sum(math.exp(logp0[x]) / z * (logp0[x] - math.log(z) - logg[x]) for x in np.ndindex(3, 3, 3) if acc[x])
    got = ep.distillation_error(logp0, acc, logg)
    assert got["kl_posterior_to_generator"] == pytest.approx(kl, rel=1e-12) and kl > 0
    assert got["generator_accepted_mass"] == pytest.approx(sum(math.exp(logg[x]) for x in zip(*np.nonzero(acc))))
    # g equal to the posterior: no error, all of g's mass accepted
    post = np.where(acc, logp0 - math.log(z), -np.inf)
    same = ep.distillation_error(logp0, acc, post)
    assert same["kl_posterior_to_generator"] == pytest.approx(0, abs=1e-12)
    assert same["generator_accepted_mass"] == pytest.approx(1.0)


def test_exact_filter_keeps_the_top_scores_holding_one_over_f_of_g():
    rng = np.random.default_rng(4)
    logg = np.log(rng.dirichlet(np.ones(64)) * 0.9).reshape(4, 4, 4)  # 0.1 outside the table
    scores = rng.normal(size=(4, 4, 4))
    mask, log_tau = ep.exact_filter(logg, scores, factor=2.0)
    p = np.exp(logg) / np.exp(logg).sum()
    kept = p[mask].sum()
    assert kept >= 0.5 and kept - p[scores == log_tau].sum() < 0.5  # the last string kept crosses 1/f
    assert (mask == (scores >= log_tau)).all() and scores[~mask].max() < log_tau <= scores[mask].min()
    # f = 1 keeps everything; a threshold rule is applied as given
    assert ep.exact_filter(logg, scores, factor=1.0)[0].all()
    m2, t2 = ep.exact_filter(logg, scores, log_tau=0.3)
    assert t2 == 0.3 and (m2 == (scores >= 0.3)).all()
    with pytest.raises(ValueError):
        ep.exact_filter(logg, scores)


def test_posterior_threshold_keeps_one_over_f_of_the_posterior_not_of_p0():
    rng = np.random.default_rng(5)
    logp0 = np.log(rng.dirichlet(np.ones(64))).reshape(4, 4, 4)
    logphi = np.log(rng.dirichlet(np.ones(64))).reshape(4, 4, 4)
    s = alg.sequence_scores(logp0, logphi, np.full((4, 4, 4), LENGTH, dtype=np.float64), True)
    accepted = (s > np.quantile(s, 0.5)) & (rng.random((4, 4, 4)) < 0.7)  # a posterior of high scores
    log_tau = ep.posterior_threshold(logp0, accepted, logphi, 2.0, LENGTH, length_norm=True)
    post = np.where(accepted, np.exp(logp0), 0.0) / np.exp(logp0)[accepted].sum()
    keeps = s >= log_tau
    kept = post[keeps].sum()
    # brute force: the highest threshold, among the posterior's own scores, keeping at least half of it
    best = max(t for t in s[accepted] if post[s >= t].sum() >= 0.5 - 1e-12)
    assert log_tau == best and 0.5 <= kept < 0.5 + post[s == log_tau].sum() + 1e-12
    # calibrated on p0 instead (accepted=None), the same region keeps half of p0, another share of the posterior
    prior_tau = ep.posterior_threshold(logp0, None, logphi, 2.0, LENGTH, length_norm=True)
    assert prior_tau < log_tau and np.exp(logp0)[s >= prior_tau].sum() >= 0.5
    assert ep.posterior_threshold(logp0, np.zeros((4, 4, 4), bool), logphi, 2.0, LENGTH) == -math.inf


def test_draw_codes_follows_the_restricted_distribution():
    rng = np.random.default_rng(5)
    logp = np.log(rng.dirichlet(np.ones(27))).reshape(3, 3, 3)
    mask = rng.random((3, 3, 3)) < 0.5
    n = 40_000
    idx = ep.draw_codes(logp, mask, n, np.random.default_rng(6))
    assert idx.shape == (n,) and mask.ravel()[idx].all()  # never outside the mask
    q = np.where(mask, np.exp(logp), 0).ravel()
    q /= q.sum()
    freq = np.bincount(idx, minlength=27) / n
    assert (np.abs(freq - q) < 4 * np.sqrt(q * (1 - q) / n) + 1e-12).all()
    assert ep.draw_codes(logp, np.zeros_like(mask), 5, rng).size == 0 and ep.draw_codes(logp, mask, 0, rng).size == 0


def test_flat_code_indices_inverts_the_table_order_and_leaves_out_what_is_not_in_it():
    from banel_ray.tasks.base import flat_code_indices

    idx = np.array([0, 5, 63, 17])
    rows = np.stack(np.unravel_index(idx, (4, 4, 4)), axis=1) + 3  # completions, tokens from offset 3
    comps = [tuple(int(t) for t in r) for r in rows]
    got = flat_code_indices([*comps, (3, 3), (3, 3, 7), (2, 3, 3)], 3, 4, 3)  # short, out of range x2
    assert got.tolist() == idx.tolist()
    assert flat_code_indices([], 3, 4, 3).size == 0
