"""Baselines that BaNEL is compared against, run on the same sampler and oracle actors, under the
same NRE budget and ledger (design.md §5). One module per algorithm, no Ray in any of them:

* ``random_search``: best-of-budget sampling from the prior p0 (nothing is learned).
* ``reinforce``: REINFORCE with a mean baseline on the task reward.
* ``rnd``: REINFORCE on the task reward plus a random-network-distillation novelty bonus.
* ``count_based``: REINFORCE on the task reward plus a SimHash pseudo-count bonus.

``trainer.PolicyTrainer`` is the one actor shell for the policy-gradient family and
``driver.BaselineDriver`` swaps BaNEL's learn step (fit p_phi, filter, distil) for a policy update.
The config key ``method`` picks one.
"""
from __future__ import annotations

METHODS = ("banel", "random", "reinforce", "rnd", "count")
POLICY_GRADIENT = ("reinforce", "rnd", "count")


def driver_class(method: str):
    """The driver that runs ``method``: BaNEL's own, or the baseline driver."""
    if method == "banel":
        from banel_ray.driver import Driver
        return Driver
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    from banel_ray.baselines.driver import BaselineDriver
    return BaselineDriver
