"""The importance-sampling estimator: weights, interval, diagnostics, and estimates against exact
rates (its coverage studies are in tests/integration/test_importance_coverage.py)."""

import math

import numpy as np
import pytest
import torch

from banel_ray.measure import importance as I
from banel_ray.measure.tilted import (
    TableLM,
    component_logprobs,
    estimate_rate,
    position_logprobs,
    tilted_sample,
)
from banel_ray.models import build_llama, sequence_logprobs
from banel_ray.models.exact_rate import all_logprobs, log_rate
from tuning import mnist_coverage as COV

torch.set_num_threads(1)


def test_balance_weights_are_unbiased_by_exact_enumeration():
    """sum_k alpha_k E_{q_k}[f w] = E_p[f], summed over the whole space (no sampling)."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50))
    qs = [rng.dirichlet(np.ones(50)), p, rng.dirichlet(np.full(50, 0.3))]
    f = rng.random(50) < 0.2
    counts = [3, 1, 6]
    log_q = np.log(np.stack(qs, 1))
    lw = I.balance_log_weights(np.log(p), log_q, counts)
    alpha = np.array(counts) / sum(counts)
    expect = sum(a * (q * f * np.exp(lw)).sum() for a, q in zip(alpha, qs))
    assert expect == pytest.approx((p * f).sum(), rel=1e-12)
    assert np.exp(lw).max() <= sum(counts) / counts[1] + 1e-9  # the defensive bound N / n_0
    with pytest.raises(ValueError):
        I.balance_log_weights(np.log(p), log_q[:, :2], counts)


def test_gamma_interval_is_the_exact_poisson_interval_for_equal_weights():
    from statsmodels.stats.rates import confint_poisson

    for k in (1, 4, 30):
        c = 2.5e-21  # k successes of equal weight c: y = k c, v = k c^2, w_max = c
        lo, hi = I.gamma_interval(k * c, k * c * c, c)
        elo, ehi = confint_poisson(k, 1.0, method="exact-c")
        assert lo == pytest.approx(c * elo, rel=1e-9) and hi == pytest.approx(c * ehi, rel=1e-9)


def test_no_success_gives_zero_and_the_defensive_bound():
    n = np.array([400, 400, 200])
    strata = np.repeat(np.arange(3), n)
    log_q = np.zeros((1000, 3))
    est = I.estimate(np.zeros(1000), log_q, n, strata, np.zeros(1000, bool))
    assert est["rate"] == 0 and est["lo"] == 0 and not est["reliable"]
    assert est["hi"] == pytest.approx(-math.log(0.025) / 400)  # Clopper-Pearson-like bound from q_0 alone


def test_diagnostics_flag_one_dominant_weight():
    n = [500, 500]
    strata = np.repeat([0, 1], 500)
    log_p = np.full(1000, -50.0)
    log_q = np.full((1000, 2), -50.0)
    log_q[:, 1] = -40.0
    success = np.zeros(1000, bool)
    success[600:640] = True  # 40 successes from component 1 ...
    log_p[600] = -40.0  # ... one of them with a huge weight
    est = I.estimate(log_p, log_q, n, strata, success)
    assert est["hits"] == 40 and est["hits_per_component"] == [0, 40]
    assert est["max_weight_share"] > 0.99 and est["ess"] < 1.1 and not est["reliable"]
    assert est["lo"] <= est["rate"] <= est["hi"] and est["component_share"][1] == pytest.approx(1.0)
    even = I.estimate(np.full(1000, -50.0), log_q, n, strata, success)
    assert even["ess"] == pytest.approx(40) and even["reliable"]
    assert even["rate"] == pytest.approx(40 / 1000 * math.exp(-50) / (0.5 * math.exp(-50) + 0.5 * math.exp(-40)))


def _tiny_llama():
    model = build_llama(6, hidden=32, layers=1, heads=1, intermediate=64, max_positions=8, seed=5)
    with torch.no_grad():
        model.lm_head.weight.mul_(30)  # spread the logits: rare strings
    return model


def test_tilted_proposals_are_scored_exactly_on_a_real_llama():
    """position_logprobs equals the trainers' scoring path; q_s sums to 1 over the allowed strings;
    tilted draws follow q_s."""
    model = _tiny_llama()
    toks, length = [3, 4, 5], 3
    bias = np.array([[0.0, 1.0, -1.0], [0.5, 0.0, 2.0], [0.0, 0.0, 1.0]])
    grid = np.array([(a, b, c) for a in toks for b in toks for c in toks])
    logsm = position_logprobs(model, (1,), grid)
    log_p, log_q = component_logprobs(logsm, grid, toks, bias, (0.0, 1.0, 2.5))
    brute, _ = sequence_logprobs(model, [((1,), tuple(s)) for s in grid.tolist()])
    assert np.allclose(log_p, brute, atol=1e-5)
    assert np.allclose(log_p, all_logprobs(model, (1,), toks, length).ravel(), atol=1e-5)
    assert np.allclose(np.exp(log_q).sum(0), 1.0, atol=1e-9)
    assert (log_q[:, 0] >= log_p - 1e-9).all()  # q_0 (p on the allowed tokens) dominates p
    draws = tilted_sample(model, (1,), 6000, toks, bias, 2.5, seed=3, batch_size=3000)
    idx = ((draws - 3) * np.array([9, 3, 1])).sum(1)
    freq = np.bincount(idx, minlength=27) / len(draws)
    q = np.exp(log_q[:, 2])
    assert (np.abs(freq - q) < 4 * np.sqrt(q * (1 - q) / len(draws)) + 1e-3).all()


def test_estimate_rate_on_a_real_llama_covers_the_enumerated_rate():
    model = _tiny_llama()
    toks, length = [3, 4, 5], 3
    table = all_logprobs(model, (1,), toks, length)
    grid = np.indices(table.shape).reshape(length, -1).T
    rule = ((grid == 0).sum(1) >= 2).reshape(table.shape)  # at least two of the three tokens are 3
    exact = math.exp(log_rate(table, rule))
    assert exact < 1e-4
    bias = np.zeros((length, 3))
    bias[:, 0] = 1.0  # the tilt points at token 3 (as the six statistics point at sixes' pixels)

    def success(comps, guide_log_p=None):
        a = np.asarray(comps) - 3
        return rule[tuple(a.T)]

    est = estimate_rate(model, (1,), toks, bias, (0.0, 2.0, 4.0, 8.0), 4000, success, seed=0)
    assert est["hits"] > 50 and est["lo"] <= exact <= est["hi"] and est["hi"] / est["lo"] < 1.5 and est["reliable"]
    again = estimate_rate(model, (1,), toks, bias, (0.0, 2.0, 4.0, 8.0), 4000, success, seed=0)
    assert again["rate"] == est["rate"]  # tied to (seed, weights): the same model, the same estimate
    assert est["method"] and est["ess"] > 0 and 0 < est["max_weight_share"] <= 1


def test_found_successes_give_a_certain_lower_bound():
    """certain_lo sums the model's probability of the distinct successes drawn: never above the
    exact rate, whatever the weights do, and equal to it once every success has been drawn."""
    model, guide = COV.small_model(COV.SMALL_TYPICAL_DELTA), COV.small_guide()
    llr = guide.all_logprobs() - model.all_logprobs()
    comps = [(g, 0.0) for g in COV.TYPICAL_GAMMAS]
    for min_llr, n in ((30.0, 600), (40.0, 6000)):
        rule = llr >= min_llr
        exact = math.exp(log_rate(model.all_logprobs(), rule))
        est = estimate_rate(
            model,
            (),
            range(COV.SMALL_V),
            np.zeros((COV.SMALL_L, COV.SMALL_V)),
            comps,
            n,
            lambda c, g=None, rule=rule: rule[tuple(np.asarray(c).T)],
            seed=3,
            tie_seed_to_weights=False,
            guide=guide,
        )
        assert 0 < est["certain_lo"] <= exact * (1 + 1e-9) and est["distinct_hits"] <= int(rule.sum())
    assert est["distinct_hits"] == int(rule.sum()) == 3 and est["certain_lo"] == pytest.approx(exact)


def test_a_proposal_that_misses_the_successes_is_flagged_not_trusted():
    """Without the tilt (only the defensive component) a 1e-13 rate shows no success: the
    estimate is 0 with the defensive bound as its upper limit and is marked unreliable."""
    model = COV.small_model(7.0)
    bias = np.zeros((COV.SMALL_L, COV.SMALL_V))
    est = estimate_rate(model, (), range(COV.SMALL_V), bias, (0.0,), 1000, COV.small_success, seed=1)
    assert est["hits"] == 0 and est["rate"] == 0 and not est["reliable"]
    assert est["hi"] >= COV.small_exact(model)


def test_table_lm_is_a_distribution():
    m = COV.small_model(3.0)
    assert math.exp(log_rate(m.all_logprobs(), np.ones((COV.SMALL_V,) * COV.SMALL_L, bool))) == pytest.approx(1.0)
    assert isinstance(m, TableLM)
