"""Negative-sample reinforcement (``method: nsr``; Zhu et al., NeurIPS 2025, arXiv 2506.01347).

Policy gradient on the failures only: every paid failure's likelihood is pushed down, the
successes are not used (``algorithms.negative_rl.nsr_weights``). It is the "negative RL" that
BaNEL argues against: both learn from failures alone, but NSR lowers their likelihood directly,
where BaNEL models them and conditions the prior away from them.

Settings: ``pg.*``, as ``Reinforce`` (one AdamW optimiser across rounds, kept in the policy role's
checkpoint shard).
"""

from __future__ import annotations

from banel_ray.methods.policy_gradient import Reinforce


class NegativeSampleReinforcement(Reinforce):
    name = "nsr"
    objective = "nsr"
