"""Algorithm 1's posterior measured exactly (algorithms/exact_posterior.py) on a trained 64-string
prior: against rejection sampling through the same regions (actors.trainers.regions_accept), and
as the negative trainer reports it round by round (tests/unit/test_exact_posterior.py holds the
pure checks against brute force)."""

import json
import math

import numpy as np
import pytest
import torch

from banel_ray.actors.trainers import regions_accept
from banel_ray.algorithms import banel as alg
from banel_ray.algorithms import exact_posterior as ep
from banel_ray.models import build_llama, copy_model, sample, sequence_logprobs, state_dict, train_mle
from banel_ray.models.exact_rate import all_logprobs

torch.set_num_threads(1)

TOKS, LENGTH, PROMPT, EOS = (3, 4, 5, 6), 3, (1,), 2


def _pairs(codes):
    return [(PROMPT, tuple(c)) for c in codes]


@pytest.fixture(scope="module")
def tiny():
    """A prior on a 64-string space fitted to skewed strings (little mass on EOS and the other
    special tokens), and two regions fitted, like Algorithm 1's, to some of its failures."""
    rng = np.random.default_rng(2)
    weights = rng.dirichlet(np.full(len(TOKS) ** LENGTH, 0.3))
    space = [(a, b, c) for a in TOKS for b in TOKS for c in TOKS]
    data = [space[i] for i in rng.choice(len(space), size=400, p=weights)]
    prior = build_llama(7, hidden=32, layers=1, heads=1, intermediate=64, max_positions=8, seed=3)
    train_mle(prior, _pairs(data), 80, 1e-2, 64, seed=0)  # special tokens: never targets, so little mass
    success = np.zeros((len(TOKS),) * LENGTH, bool)
    success[:, 3, :] = True  # an arbitrary rule: the middle token is 6
    success[2, 2, 3] = True
    regions = []
    calib = sample(prior, PROMPT, 2000, LENGTH, EOS, seed=9)
    for r in range(2):
        draws = sample(prior, PROMPT, 250, LENGTH, EOS, seed=10 + r)
        fails = [s for s in draws if not (len(s) == LENGTH and success[tuple(t - 3 for t in s)])]
        neg = copy_model(prior)
        train_mle(neg, _pairs(fails), 20, 1e-2, 64, seed=r)
        l0, n0 = sequence_logprobs(prior, _pairs(calib))
        ln, _ = sequence_logprobs(neg, _pairs(calib))
        s = alg.sequence_scores(l0, ln, n0, True)
        # f = 2: keep the top half; the threshold halfway to the next lower score, so no string
        # sits on it and two scoring paths (batched enumeration, the sampler's) cannot disagree
        levels = np.unique(s)[::-1]
        k = int(np.searchsorted(-levels, -np.sort(s)[::-1][alg.keep_count(len(s), 2.0) - 1]))
        regions.append((state_dict(neg), float((levels[k] + levels[min(k + 1, len(levels) - 1)]) / 2)))
    return prior, regions, success


def test_exact_posterior_rate_equals_rejection_sampling_through_the_same_regions(tiny):
    prior, regions, success = tiny
    logp0 = all_logprobs(prior, PROMPT, TOKS, LENGTH)
    neg = copy_model(prior)

    def tables():
        for w, tau in regions:
            neg.load_state_dict(w)
            yield all_logprobs(neg, PROMPT, TOKS, LENGTH), tau

    accepted = ep.accepted_mask(logp0, tables(), LENGTH, True)
    outside = 1 - math.exp(ep.log_mass(logp0))
    exact = ep.posterior_estimate(logp0, accepted, success, outside_mass=outside)
    assert 0 < accepted.sum() < accepted.size  # the regions reject something, not everything

    n = 60_000
    draws = sample(prior, PROMPT, n, LENGTH, EOS, seed=1, batch_size=10_000)
    keep = regions_accept(prior, regions, _pairs(draws), 0, True)
    kept = [s for s, k in zip(draws, keep) if k]
    valid = [s for s in kept if len(s) == LENGTH and all(t in TOKS for t in s)]
    hits = sum(bool(success[tuple(t - 3 for t in s)]) for s in valid)
    rate = hits / len(kept)
    se = math.sqrt(rate * (1 - rate) / len(kept))
    # malformed strings (early EOS) are outside the table: the exact rate is a narrow interval
    assert exact["hi"] - exact["lo"] < se
    assert abs(rate - exact["rate"]) < 4 * se and abs(rate - exact["lo"]) < 4 * se, (rate, exact, se)
    # string by string, the enumeration accepts what the sampler's regions accept
    agree = np.mean([accepted[tuple(t - 3 for t in s)] for s in valid])
    rejected_valid = [s for s, k in zip(draws, keep) if not k and len(s) == LENGTH and all(t in TOKS for t in s)]
    assert agree == 1.0 and not any(accepted[tuple(t - 3 for t in s)] for s in rejected_valid)
    # and the restriction matters: the posterior's rate is not p0's
    p0_rate = ep.posterior_estimate(logp0, np.ones_like(accepted), success)["rate"]
    assert abs(p0_rate - exact["rate"]) > 4 * se


class TinyTask:
    """The 64-string space above as a task that enumerates itself (the hooks the trainer uses)."""

    prompt, eos_id, pad_id, max_new_tokens = PROMPT, EOS, 0, LENGTH

    def __init__(self, success: str = ""):
        self.success = np.array(json.loads(success), dtype=bool).reshape((len(TOKS),) * LENGTH)

    def code_logprobs(self, model):
        return all_logprobs(model, PROMPT, TOKS, LENGTH)

    def success_codes(self):
        return self.success

    def code_completions(self, indices):
        return [tuple(TOKS[i] for i in np.unravel_index(k, (len(TOKS),) * LENGTH)) for k in indices]


def test_the_negative_trainer_measures_its_posterior_exactly_region_by_region(tiny, tmp_path):
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.models import save_model

    prior, regions, success = tiny
    save_model(prior, tmp_path / "prior")
    opts = {"success": json.dumps(success.ravel().tolist())}
    score = SECTIONS["score"](length_norm=True)  # the regions' thresholds are per token
    role = NegativeTrainer("test_exact_posterior_sampling:TinyTask", opts, str(tmp_path / "prior"), score=score)
    logp0 = all_logprobs(role.prior, PROMPT, TOKS, LENGTH)
    first = role.posterior_rate()
    assert first["regions"] == 0 and first["rate"] == pytest.approx(
        ep.posterior_estimate(logp0, np.ones_like(success), success)["rate"], rel=1e-12
    )
    neg = copy_model(role.prior)
    tables = []
    for w, tau in regions:  # one region a round, as Algorithm 1 adds them; each call scores only the new one
        neg.load_state_dict(w)
        tables.append((all_logprobs(neg, PROMPT, TOKS, LENGTH), tau))
        role.regions.append((w, tau))
        got = role.posterior_rate()
        want = ep.posterior_estimate(logp0, ep.accepted_mask(logp0, iter(tables), LENGTH, True), success)
        assert got["regions"] == len(tables) and got["rate"] == pytest.approx(want["rate"], rel=1e-12)
        assert got["accepted_codes"] == want["accepted_codes"] and got["lo"] <= got["rate"]
    assert got["rate"] != pytest.approx(first["rate"], rel=1e-3)


def test_the_negative_trainer_draws_exactly_from_its_posterior_for_a_sample_grid(tiny, tmp_path):
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.models import save_model

    prior, regions, success = tiny
    save_model(prior, tmp_path / "prior")
    opts = {"success": json.dumps(success.ravel().tolist())}
    role = NegativeTrainer(
        "test_exact_posterior_sampling:TinyTask", opts, str(tmp_path / "prior"), score=SECTIONS["score"]()
    )
    role.regions.extend(regions)  # no posterior_rate call first: the draws compute what they need
    batch = role.posterior_draws(20_000, seed=5)
    logp0, mask, done = role._exact
    assert done == len(regions) and len(batch.samples) == 20_000 and 0 < mask.sum() < mask.size
    idx = [np.ravel_multi_index(tuple(t - 3 for t in s), mask.shape) for s in batch.samples]
    counts = np.bincount(idx, minlength=mask.size)
    assert counts[~mask.ravel()].sum() == 0  # nothing a region rejects
    p = np.where(mask.ravel(), np.exp(logp0.ravel()), 0.0)
    p /= p.sum()
    se = np.sqrt(p * (1 - p) / 20_000)
    assert np.all(np.abs(counts / 20_000 - p) < 4 * se + 1e-12)  # p0 restricted, not p0 or uniform
    assert role.posterior_draws(10, seed=5).samples == batch.samples[:10]  # seeded


def test_a_distill_runs_negatives_as_regions_and_the_distillation_error(tiny, tmp_path):
    """negative.exact_alg1: the round's p_phi becomes a region calibrated on p0 draws, and the role
    reports that posterior's exact rate and KL(posterior || g) for the generator it holds."""
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.models import save_model

    prior, regions, success = tiny
    save_model(prior, tmp_path / "prior")
    opts = {"success": json.dumps(success.ravel().tolist())}
    role = NegativeTrainer(
        "test_exact_posterior_sampling:TinyTask",
        opts,
        str(tmp_path / "prior"),
        score=SECTIONS["score"](length_norm=True),
    )
    neg = copy_model(prior)
    neg.load_state_dict(regions[0][0])
    role.negative_model = neg  # as fit() leaves it
    g = copy_model(prior)
    g.load_state_dict(regions[1][0])  # any other model as the generator
    role.set_generator(1, state_dict(g))
    info = role.add_region_from_prior(1, 2.0, None, 2000)
    assert info["regions"] == 1
    rep = role.distillation_report()
    logp0 = all_logprobs(prior, PROMPT, TOKS, LENGTH)
    acc = ep.accepted_mask(logp0, iter([(all_logprobs(neg, PROMPT, TOKS, LENGTH), info["region_log_tau"])]), LENGTH)
    want = ep.distillation_error(logp0, acc, all_logprobs(g, PROMPT, TOKS, LENGTH))
    assert rep["kl_posterior_to_generator"] == pytest.approx(want["kl_posterior_to_generator"], rel=1e-9)
    assert rep["generator_accepted_mass"] == pytest.approx(want["generator_accepted_mass"], rel=1e-9)
    assert rep["alg1_exact_rate"] == pytest.approx(ep.posterior_estimate(logp0, acc, success)["rate"], rel=1e-9)
    # about half of p0's draws pass a region calibrated at f = 2
    p0_share = math.exp(ep.log_mass(logp0, acc) - ep.log_mass(logp0))
    assert 0.3 < p0_share < 0.7 and rep["kl_posterior_to_generator"] > 0


def test_the_exact_target_is_the_pool_filters_limit_and_its_distillation_error_is_exact(tiny, tmp_path):
    """generator.distil_from=exact: the negative trainer draws the distillation set from g_t
    restricted, over the whole space, to what the filter keeps; that target is what the top 1/f of a
    large pool from g_t converges to, and the report's KL(target || g_{t+1}) is the brute-force sum."""
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.models import save_model

    prior, regions, success = tiny
    save_model(prior, tmp_path / "prior")
    opts = {"success": json.dumps(success.ravel().tolist())}
    role = NegativeTrainer(
        "test_exact_posterior_sampling:TinyTask",
        opts,
        str(tmp_path / "prior"),
        score=SECTIONS["score"](length_norm=True),
    )
    neg = copy_model(prior)
    neg.load_state_dict(regions[0][0])
    role.negative_model = neg  # as fit() leaves it; g_t is the prior (version 0)
    n = 20_000
    batch, met = role.exact_target(1, 2.0, None, n)
    lg = all_logprobs(prior, PROMPT, TOKS, LENGTH)
    s = alg.sequence_scores(lg, all_logprobs(neg, PROMPT, TOKS, LENGTH), np.full(lg.shape, LENGTH), True)
    q = np.where(s >= met["target_log_tau"], np.exp(lg), 0.0)
    q /= q.sum()
    assert met["target_draws"] == n and met["target_codes"] == int((q > 0).sum())
    assert met["target_exact_rate"] == pytest.approx(q[success].sum(), rel=1e-9)
    freq = np.zeros(q.shape)
    for x in batch.samples:
        freq[tuple(TOKS.index(t) for t in x)] += 1 / n
    assert (np.abs(freq - q) < 4 * np.sqrt(q * (1 - q) / n) + 1e-12).all()
    # the pool filter's limit: the top half of 40,000 draws of g_t keeps about the same distribution
    pool = [x for x in sample(prior, PROMPT, 40_000, LENGTH, EOS, seed=4, batch_size=10_000)]
    l0, n0 = sequence_logprobs(prior, _pairs(pool))
    ln, _ = sequence_logprobs(neg, _pairs(pool))
    keep = alg.quantile_filter(alg.sequence_scores(l0, ln, n0, True), 2.0)
    kept = [x for x, k in zip(pool, keep) if k and len(x) == LENGTH and all(t in TOKS for t in x)]
    in_target = np.mean([q[tuple(TOKS.index(t) for t in x)] > 0 for x in kept])
    assert in_target > 0.97, in_target  # what the pool keeps lies in the exact target (ties aside)
    # distillation error of the step: KL(target || g_{t+1}) by brute force
    g = copy_model(prior)
    g.load_state_dict(regions[1][0])
    role.set_generator(1, state_dict(g))
    rep = role.distillation_report()
    lg1 = all_logprobs(g, PROMPT, TOKS, LENGTH)
    want = sum(q[x] * (math.log(q[x]) - lg1[x]) for x in np.ndindex(q.shape) if q[x] > 0)
    assert rep["kl_target_to_generator"] == pytest.approx(want, rel=1e-9) and want > 0
    assert "alg1_exact_rate" not in rep  # no regions: only the step's own error
    assert role.distillation_report() == {}  # the target is reported once


def test_a_region_scored_by_the_exact_target_is_not_scored_again(tiny, tmp_path, monkeypatch):
    """exact_target's p_phi table becomes the region's when that p_phi is kept as one (one exact
    pass a round saved); the posterior's rate is the same as when the region is scored anew."""
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.config import SECTIONS
    from banel_ray.models import save_model

    prior, regions, success = tiny
    save_model(prior, tmp_path / "prior")
    opts = {"success": json.dumps(success.ravel().tolist())}
    role = NegativeTrainer(
        "test_exact_posterior_sampling:TinyTask",
        opts,
        str(tmp_path / "prior"),
        score=SECTIONS["score"](length_norm=True),
    )
    neg = copy_model(prior)
    neg.load_state_dict(regions[0][0])
    role.negative_model = neg
    role.exact_target(1, 2.0, None, 0)
    info = role.add_region_from_prior(1, 2.0, None, 2000)
    calls = []
    real = role.task.code_logprobs
    monkeypatch.setattr(role.task, "code_logprobs", lambda m: calls.append(m) or real(m))
    rep = role.distillation_report()
    assert len(calls) == 1  # log p0 only; the region's table came from exact_target (g's is cached too)
    logp0 = all_logprobs(prior, PROMPT, TOKS, LENGTH)
    acc = ep.accepted_mask(logp0, iter([(all_logprobs(neg, PROMPT, TOKS, LENGTH), info["region_log_tau"])]), LENGTH)
    assert rep["alg1_exact_rate"] == pytest.approx(ep.posterior_estimate(logp0, acc, success)["rate"], rel=1e-9)
