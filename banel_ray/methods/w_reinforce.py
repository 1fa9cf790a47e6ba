"""W-REINFORCE (``method: w_reinforce``; Zhu et al., NeurIPS 2025, arXiv 2506.01347).

NSR plus the successes it pays for, down-weighted: loss = -lambda * sum_pos log pi + sum_neg log pi
(``algorithms.negative_rl.w_reinforce_weights``), lambda = ``wr.pos_weight`` (0.1 in the paper).
Unlike BaNEL and NSR it trains on successes when it finds them.

Settings: ``wr.*`` and ``pg.*``.
"""

from __future__ import annotations

from banel_ray.config_sections import PgConfig, WrConfig
from banel_ray.methods.policy_gradient import Reinforce


class WeightedReinforce(Reinforce):
    name = "w_reinforce"
    objective = "w_reinforce"
    settings = (PgConfig, WrConfig)
