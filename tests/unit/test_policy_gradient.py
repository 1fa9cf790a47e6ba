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


def test_reinforce_learns_a_dense_reward_on_a_toy_sequence_task():
    """Reward = fraction of the 4 sampled tokens equal to 5: REINFORCE must raise it from ~1/6."""
    import torch

    from banel_ray.models import build_llama, sample

    torch.manual_seed(0)
    model = build_llama(8, hidden=32, layers=1, heads=1, intermediate=64, max_positions=8, seed=0)
    opt = reinforce.make_optimizer(model, 3e-3)

    def draw(seed):
        outs = sample(model, (1,), 128, 4, eos_id=2, seed=seed)
        return outs, [sum(t == 5 for t in s) / 4 for s in outs]

    _, r0 = draw(1)
    for it in range(25):
        outs, r = draw(100 + it)
        reinforce.policy_gradient(model, opt, [((1,), s) for s in outs], reinforce.advantages(r), 1, 64, it)
    _, r1 = draw(999)
    assert np.mean(r0) < 0.3 and np.mean(r1) > 2 * np.mean(r0) and np.mean(r1) > 0.5, (np.mean(r0), np.mean(r1))


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
