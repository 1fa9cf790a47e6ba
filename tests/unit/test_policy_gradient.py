"""The policy-gradient baselines' pure pieces: advantages, losses, bonuses (milliseconds to seconds)."""

import numpy as np
import pytest

from banel_ray import config as C
from banel_ray.algorithms import reinforce
from banel_ray.algorithms.bonuses.count import SimHashCounter
from banel_ray.algorithms.bonuses.features import one_hot_positions
from banel_ray.algorithms.bonuses.rnd import RND, RunningStd

# ---- pure algorithm pieces ----------------------------------------------------------------------


def test_advantages_vanish_when_every_reward_is_zero():
    assert np.all(reinforce.advantages([0, 0, 0, 0]) == 0)  # the regime BaNEL is for: no signal
    a = reinforce.advantages([1, 0, 0, 0], normalize=False)
    assert np.allclose(a, [0.75, -0.25, -0.25, -0.25])
    b = reinforce.advantages([1, 0, 0, 0])
    assert abs(b.mean()) < 1e-12 and abs(b.std() - 1) < 1e-12 and b[0] > 0 > b[1]


def test_policy_gradient_with_zero_advantages_moves_nothing():
    from banel_ray.models import build_llama, state_dict

    model = build_llama(8, hidden=32, layers=1, heads=1, intermediate=32, max_positions=8)
    before = state_dict(model)
    opt = reinforce.make_optimizer(model, 1e-2)
    losses = reinforce.policy_gradient(model, opt, [((1,), (3, 4, 2))] * 4, [0.0] * 4, 1, 2, 0)
    assert losses == []
    assert all(np.array_equal(before[k], v) for k, v in state_dict(model).items())


def test_one_hot_features_separate_sequences_and_truncate():
    f = one_hot_positions([(3, 4), (4, 3), (3, 4, 5, 6, 7)], length=3, vocab=8)
    assert f.shape == (3, 24) and f.dtype == np.float32
    assert f[0].sum() == 2 and f[2].sum() == 3  # tokens past ``length`` dropped
    assert not np.array_equal(f[0], f[1])  # order matters
    assert f[0, 0 * 8 + 3] == 1 and f[0, 1 * 8 + 4] == 1


def test_rnd_bonus_shrinks_on_revisited_inputs_but_not_on_new_ones():
    rng = np.random.default_rng(0)
    seen = [tuple(rng.integers(3, 8, 10)) for _ in range(64)]  # one region of sequence space
    new = [tuple(rng.integers(9, 15, 10)) for _ in range(64)]  # another, never visited
    fs, fn = one_hot_positions(seen, 10, 16), one_hot_positions(new, 10, 16)
    rnd = RND(160, hidden=64, lr=3e-3, seed=0)
    b_seen0 = rnd.raw_bonus(fs).mean()
    for _ in range(20):
        rnd.update(fs, epochs=1, batch_size=32)
    b_seen1, b_new1 = rnd.raw_bonus(fs).mean(), rnd.raw_bonus(fn).mean()
    assert b_seen1 < 0.2 * b_seen0  # visited: the predictor has learned them
    assert b_new1 > 2 * b_seen1  # still novel
    assert rnd.bonus(fs).shape == (64,)


def test_running_std_matches_numpy():
    rs, xs = RunningStd(), np.random.default_rng(1).normal(3, 2, 500)
    rs.update(xs[:200])
    rs.update(xs[200:])
    assert abs(rs.std - xs.std()) < 1e-9 and abs(rs.mean - xs.mean()) < 1e-9


def test_simhash_counts_and_bonus():
    c = SimHashCounter(24, bits=8, seed=0)
    f = one_hot_positions([(3, 4, 5), (3, 4, 5), (9, 9, 9)], 3, 8)
    codes = c.codes(f)
    assert codes[0] == codes[1] and all(0 <= x < 256 for x in codes)
    assert c.bonus(codes[:1], 2.0)[0] == 2.0  # never counted: full bonus
    c.update(codes[:1])
    c.update(codes[:1])
    c.update(codes[:1])
    assert np.isclose(c.bonus(codes[:1])[0], 1 / np.sqrt(3))
    # many random sequences spread over many codes; a long code gives (almost) one per sequence
    rng = np.random.default_rng(0)
    many = one_hot_positions([tuple(rng.integers(3, 15, 10)) for _ in range(500)], 10, 16)
    assert len(set(SimHashCounter(160, bits=8).codes(many))) > 50
    assert len(set(SimHashCounter(160, bits=32).codes(many))) > 490


def test_a_paid_batch_lists_distinct_successes_and_failures():
    from banel_ray.records import PaidBatch

    p = PaidBatch(samples=[(1,), (2,), (1,), (3,), (4,)], rewards=[1, 0, 1, None, 0], versions=[0] * 5)
    assert p.successes() == [(1,)] and p.failures() == [(2,), (4,)]
    assert p.rewarded() == [((1,), 1), ((2,), 0), ((1,), 1), ((4,), 0)]


def test_method_registry_and_config():
    from banel_ray.methods import get
    from banel_ray.methods.banel import BanelDistill, BanelSequential
    from banel_ray.methods.policy_gradient import ReinforceCount

    assert get("banel") is BanelDistill and get("banel_sequential") is BanelSequential
    assert get("count") is ReinforceCount and get("count").bonus == "count"
    with pytest.raises(KeyError, match="unknown method 'ppo'"):
        get("ppo")
    with pytest.raises(C.ConfigError, match="'count.bits' must be in"):
        C.load(None, ["count.bits=0"])


def test_nsr_and_w_reinforce_weights():
    from banel_ray.algorithms import negative_rl

    r = [0, 1, 0, 1]
    assert negative_rl.nsr_weights(r).tolist() == [-1.0, 0.0, -1.0, 0.0]
    assert negative_rl.w_reinforce_weights(r, 0.1).tolist() == [-1.0, 0.1, -1.0, 0.1]
    assert negative_rl.nsr_weights([0, 0]).tolist() == [-1.0, -1.0]  # all failures: still a signal


def test_nsr_pushes_down_the_failures_it_is_given_and_nothing_else_moves_without_them():
    """NSR's step on a failure lowers that failure's likelihood; with successes only it does not move."""
    import torch

    from banel_ray.algorithms import negative_rl
    from banel_ray.models import build_llama, sequence_logprobs, state_dict

    torch.manual_seed(0)
    model = build_llama(8, hidden=32, layers=1, heads=1, intermediate=32, max_positions=8, seed=0)
    fail, other = ((1,), (3, 4, 5, 2)), ((1,), (6, 7, 2))
    before = sequence_logprobs(model, [fail, other])[0]
    opt = reinforce.make_optimizer(model, 1e-2)
    for it in range(10):
        reinforce.policy_gradient(model, opt, [fail] * 4, negative_rl.nsr_weights([0] * 4), 1, 4, it)
    after = sequence_logprobs(model, [fail, other])[0]
    assert after[0] < before[0] - 1.0  # the failure became much less likely
    snap = state_dict(model)
    assert reinforce.policy_gradient(model, opt, [other] * 4, negative_rl.nsr_weights([1] * 4), 1, 4, 0) == []
    assert all(np.array_equal(snap[k], v) for k, v in state_dict(model).items())
    # W-REINFORCE raises a success's likelihood (lambda > 0)
    b = sequence_logprobs(model, [other])[0][0]
    for it in range(10):
        reinforce.policy_gradient(model, opt, [other] * 4, negative_rl.w_reinforce_weights([1] * 4, 0.5), 1, 4, it)
    assert sequence_logprobs(model, [other])[0][0] > b + 0.5


# ---- NPO (Zhang et al. 2024, arXiv 2404.05868) --------------------------------------------------


def test_npo_loss_and_weight_on_a_hand_computed_case():
    from banel_ray.algorithms import negative_rl

    # beta = 0.5, log pi = -3, log pi_ref = -2: d = -1, beta d = -0.5, exp(-0.5) = 0.60653066
    # L = (2 / 0.5) log(1 + 0.60653066) = 4 x 0.47407698 = 1.89630794
    #   = -(2 / 0.5) log sigmoid(0.5) = -4 log(0.62245933), the same
    # w = dL/dlog pi = 2 sigmoid(-0.5) = 2 / (1 + exp(0.5)) = 2 / 2.64872127 = 0.75508134
    assert negative_rl.npo_loss([-3.0], [-2.0], 0.5) == pytest.approx(1.89630794, abs=1e-8)
    assert negative_rl.npo_weights([-3.0], [-2.0], 0.5)[0] == pytest.approx(0.75508134, abs=1e-8)
    # a second failure with d = +1: L = 4 log(1 + exp(0.5)) = 4 x 0.97407698 = 3.89630794;
    # the loss is the mean over the failures: (1.89630794 + 3.89630794) / 2 = 2.89630794
    assert negative_rl.npo_loss([-3.0, -1.0], [-2.0, -2.0], 0.5) == pytest.approx(2.89630794, abs=1e-8)
    assert negative_rl.npo_loss([], [], 0.5) == 0.0
    # the weight is the loss's derivative in log pi (central difference)
    h = 1e-6
    fd = (negative_rl.npo_loss([-3 + h], [-2.0], 0.5) - negative_rl.npo_loss([-3 - h], [-2.0], 0.5)) / (2 * h)
    assert fd == pytest.approx(0.75508134, abs=1e-6)


def test_npo_tends_to_nsr_as_beta_goes_to_zero():
    from banel_ray.algorithms import negative_rl

    d = np.array([-5.0, -1.0, 0.0, 2.0, 7.0])
    nsr = -negative_rl.nsr_weights(np.zeros(5))  # NSR's gradient weight in log pi: 1 on each failure
    for beta in (1e-2, 1e-4, 1e-6):
        w = negative_rl.npo_weights(d, np.zeros(5), beta)
        assert np.allclose(w, nsr, atol=beta * 7 / 2 + 1e-12)  # 2 sigmoid(beta d) = 1 + beta d / 2 + O(beta^3)
        # the loss itself: 2 log 2 / beta + mean(d) + O(beta), i.e. NSR's loss mean(log pi - log p0) up to a constant
        lo = negative_rl.npo_loss(d, np.zeros(5), beta) - 2 * np.log(2) / beta
        assert lo == pytest.approx(d.mean(), abs=beta * 50)


def test_npo_weight_is_bounded_and_the_loss_bounded_below():
    from banel_ray.algorithms import negative_rl

    d = np.linspace(-20, 20, 41)  # (float64 rounds 2 sigmoid(beta d) to 2 beyond beta d ~ 37)
    for beta in (0.1, 0.5, 1.0):
        w = negative_rl.npo_weights(d, np.zeros_like(d), beta)
        assert np.all(w > 0) and np.all(w < 2) and np.all(np.diff(w) > 0)  # in (0, 2), rising with d
        assert w[0] < 0.24 and w[-1] > 1.76  # far below the reference a failure stops pulling
        loss = negative_rl.npo_losses(d, np.zeros_like(d), beta)
        # NSR's loss (log pi) has no lower bound; NPO's is 0, approached as (2/beta) exp(beta d) -> 0
        assert np.all(loss > 0) and loss[0] <= 2 / beta * np.exp(beta * d[0])
        assert np.all(np.diff(loss) <= 2 * np.diff(d))  # slope in d below 2 everywhere


def test_npo_step_is_nsr_for_small_beta_and_slows_once_below_the_reference():
    """Through ``policy_gradient(weight_fn=...)``: beta -> 0 takes NSR's steps; at beta = 1 the
    failure is pushed down less far than by NSR, its weight falling as it drops below p0."""
    import torch

    from banel_ray.algorithms import negative_rl
    from banel_ray.models import build_llama, copy_model, sequence_logprobs, state_dict

    torch.manual_seed(0)
    prior = build_llama(8, hidden=32, layers=1, heads=1, intermediate=32, max_positions=8, seed=0)
    fail = ((1,), (3, 4, 5, 2))
    ref = sequence_logprobs(prior, [fail] * 4)[0]

    def npo(beta, seen):
        def fn(idx, lp):
            assert len(idx) == len(lp)
            w = negative_rl.npo_weights(lp, ref[idx], beta)
            seen.extend(w.tolist())
            return -w

        return fn

    a, b = copy_model(prior), copy_model(prior)
    oa, ob = reinforce.make_optimizer(a, 1e-2), reinforce.make_optimizer(b, 1e-2)
    for it in range(3):
        reinforce.policy_gradient(a, oa, [fail] * 4, negative_rl.nsr_weights([0] * 4), 1, 2, it)
        reinforce.policy_gradient(b, ob, [fail] * 4, -np.ones(4), 1, 2, it, weight_fn=npo(1e-9, []))
    sa, sb = state_dict(a), state_dict(b)
    assert all(np.allclose(sa[k], sb[k], atol=1e-6) for k in sa)

    n, p = copy_model(prior), copy_model(prior)
    on, op = reinforce.make_optimizer(n, 1e-2), reinforce.make_optimizer(p, 1e-2)
    seen: list[float] = []
    for it in range(15):
        reinforce.policy_gradient(n, on, [fail] * 4, negative_rl.nsr_weights([0] * 4), 1, 4, it)
        reinforce.policy_gradient(p, op, [fail] * 4, -np.ones(4), 1, 4, it, weight_fn=npo(1.0, seen))
    d_nsr = sequence_logprobs(n, [fail])[0][0] - ref[0]
    d_npo = sequence_logprobs(p, [fail])[0][0] - ref[0]
    assert seen[0] == pytest.approx(1.0, abs=1e-5)  # g = p0 at the first step: 2 sigmoid(0)
    assert d_npo < -0.5 and d_nsr < d_npo - 5, (d_nsr, d_npo)  # both push down; NPO less far (-12 vs -27)
    assert seen[-1] < 0.5 * seen[0] and all(0 < w < 2 for w in seen)
