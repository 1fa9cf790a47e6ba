"""Negative preference optimisation (``method: npo``; Zhang, Lin, Bai & Mei 2024, "Negative
Preference Optimization: From Catastrophic Collapse to Effective Unlearning", arXiv 2404.05868).

Like NSR it learns from the paid failures only (successes are never trained on), but instead of
pushing every failure's likelihood down without bound it minimises, against the frozen prior p0 as
reference, (2/beta) log(1 + (g(y)/p0(y))^beta) averaged over the failures y. Its gradient is NSR's
scaled by 2 sigmoid(beta (log g(y) - log p0(y))) in (0, 2): a failure already pushed below p0 stops
pulling (``algorithms.negative_rl.npo_weights``), and beta -> 0 gives NSR back.

Why it is here: it is the negative-only baseline built not to collapse. NSR's unbounded descent on
failures can drive the generator far from p0; NPO was designed against exactly that, so it tests
whether BaNEL's gain over negative RL is more than avoiding the collapse.

Settings: ``npo.*`` (beta, 0.1) and ``pg.*`` (one AdamW optimiser across rounds, kept in the policy
role's checkpoint shard; the reference is the prior, nothing more to keep).
"""

from __future__ import annotations

from banel_ray.config_sections import NpoConfig, PgConfig
from banel_ray.methods.policy_gradient import Reinforce


class NegativePreferenceOptimization(Reinforce):
    name = "npo"
    objective = "npo"
    settings = (PgConfig, NpoConfig)
