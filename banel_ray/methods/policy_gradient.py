"""Policy-gradient baselines on the task reward (docs/baselines.md), one ``PolicyTrainer`` role.

* ``Reinforce`` (``reinforce``): REINFORCE with a batch-mean baseline (``algorithms.reinforce``).
* ``ReinforceRnd`` (``rnd``): plus a random-network-distillation novelty bonus (Burda et al. 2018).
* ``ReinforceCount`` (``count``): plus a SimHash pseudo-count bonus (Tang et al. 2017).

They see the successes they pay for (BaNEL never trains on one): the generous comparison. Each
class's ``settings`` are the config sections it reads (``pg.*``: lr, epochs, batch size, advantage
normalisation; ``rnd.*``; ``count.*``), handed to the policy role as they are. The optimiser
and the bonus state are in the policy role's checkpoint shard, so a resumed run continues them.
"""

from __future__ import annotations

import time

from banel_ray.actors.policy_trainer import PolicyTrainer
from banel_ray.config_sections import CountConfig, PgConfig, RndConfig
from banel_ray.methods.base import Method
from banel_ray.records import Update


class Reinforce(Method):
    name = "reinforce"
    bonus = "none"
    settings = (PgConfig,)
    trainer_roles = ("policy",)
    generator_role = "policy"

    objective = "reinforce"

    def start(self) -> None:
        self.policy = self.ctx.spawn_trainer(
            PolicyTrainer, objective=self.objective, bonus=self.bonus, **self.setting_sections()
        )
        self.trainers["policy"] = self.policy

    def learn(self, t: int, paid_ref, version: int, m: dict) -> Update:
        t1 = time.perf_counter()
        weights_ref, met_ref = self.policy.update.options(num_returns=2).remote(t + 1, version, paid_ref)
        m.update(self.rt.get(met_ref))
        m["t_fit"] = time.perf_counter() - t1
        return Update(version=version, weights=weights_ref)

    def computed_rate(self):
        return self.policy.success_rate.remote()

    def weights_ref(self):
        return self.policy.weights.remote()


class ReinforceRnd(Reinforce):
    name = "rnd"
    bonus = "rnd"
    settings = (PgConfig, RndConfig)


class ReinforceCount(Reinforce):
    name = "count"
    bonus = "count"
    settings = (PgConfig, CountConfig)
