"""The policy-gradient baselines learn: REINFORCE raises a dense reward on a toy sequence task by
training a small Llama (the pure pieces are in tests/unit/test_policy_gradient.py)."""

import numpy as np

from banel_ray.algorithms import reinforce


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
