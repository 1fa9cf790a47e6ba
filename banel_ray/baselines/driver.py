"""The driver for baselines: BaNEL's driver with its learn step (fit p_phi, filter a pool, distil)
replaced by a policy update, so proposing, paying, the budget, the ledger, evaluation and
checkpoints are the very same code for every method.
"""
from __future__ import annotations

import time

import ray

from banel_ray.baselines import POLICY_GRADIENT
from banel_ray.driver import Driver

OPTION_PREFIXES = ("pg.", "rnd.", "count.")


class BaselineDriver(Driver):
    uses_pool = False

    def start_trainers(self, resources: dict, common: dict) -> None:
        from banel_ray.baselines.trainer import PolicyTrainerActor

        method = self.cfg["method"]
        self.neg = None
        self.gen = None  # random search learns nothing: no trainer at all
        if method in POLICY_GRADIENT:
            options = {k: v for k, v in self.cfg.items() if k.startswith(OPTION_PREFIXES)}
            self.gen = PolicyTrainerActor.options(**resources).remote(method, options, **common)

    def learn(self, t: int, paid_ref, pool, m: dict) -> None:
        t1 = time.perf_counter()
        if self.gen is not None:
            weights_ref, met_ref = self.gen.update.options(num_returns=2).remote(
                t + 1, self.version + 1, paid_ref)
            self.version += 1
            acks = [s.load_weights.remote(self.version, weights_ref) for s in self.samplers]
            m.update(ray.get(met_ref))
            ray.get(acks)
            self.weights_ref = weights_ref
        m["t_fit"] = time.perf_counter() - t1
