"""The policy-gradient trainer actor: one shell around ``reinforce``, ``rnd`` and ``count_based``.

It holds the generator g_t (a copy of p0 at the start, restored from the run's checkpoint after a
restart), turns each round's paid samples into a REINFORCE update, and returns the new weights as
an object ref for the samplers, exactly as BaNEL's generator trainer does.
"""
from __future__ import annotations

import time

import numpy as np
import ray

from banel_ray import algorithm as alg
from banel_ray.baselines import reinforce
from banel_ray.baselines.features import one_hot_positions
from banel_ray.models import state_dict
from banel_ray.trainers import _Base


class PolicyTrainer(_Base):
    def __init__(self, method: str, options: dict, *a, **k):
        super().__init__(*a, **k)
        self.method, self.o = method, dict(options)
        self.opt = reinforce.make_optimizer(self.gen, self.o["pg.lr"])
        self.length = len(self.task.prompt) + self.task.max_new_tokens
        self.vocab = int(self.gen.config.vocab_size)
        dim = self.length * self.vocab
        if method == "rnd":
            from banel_ray.baselines.rnd import RND
            self.bonus_model = RND(dim, hidden=self.o["rnd.hidden"], lr=self.o["rnd.lr"], seed=self.seed)
        elif method == "count":
            from banel_ray.baselines.count_based import SimHashCounter
            self.bonus_model = SimHashCounter(dim, bits=self.o["count.bits"], seed=self.seed)
        else:
            self.bonus_model = None

    def set_generator(self, version: int, weights: dict) -> int:
        v = super().set_generator(version, weights)
        if hasattr(self, "o"):  # new parameters after a restart: a fresh optimiser over them
            self.opt = reinforce.make_optimizer(self.gen, self.o["pg.lr"])
        return v

    def weights(self) -> dict:
        return state_dict(self.gen)

    def _bonus(self, samples) -> np.ndarray:
        if self.bonus_model is None:
            return np.zeros(len(samples))
        feats = one_hot_positions(samples, self.length, self.vocab)
        if self.method == "rnd":
            b = self.o["rnd.coef"] * self.bonus_model.bonus(feats)
            self._rnd_loss = self.bonus_model.update(feats, self.o["rnd.epochs"])
            return b
        codes = self.bonus_model.codes(feats)
        self.bonus_model.update(codes)
        return self.bonus_model.bonus(codes, self.o["count.coef"])

    def update(self, round_: int, version: int, paid: dict):
        """One REINFORCE update on the round's paid samples (unpaid ones, reward None, are skipped).

        Returns (new weights, metrics): two object refs when called with num_returns=2.
        """
        t = time.perf_counter()
        pairs = [(tuple(s), r) for s, r in zip(paid["samples"], paid["rewards"]) if r is not None]
        samples = [s for s, _ in pairs]
        extrinsic = np.array([r for _, r in pairs], dtype=np.float64)
        bonus = self._bonus(samples) if samples else np.zeros(0)
        adv = reinforce.advantages(extrinsic + bonus, self.o["pg.normalize"])
        losses = reinforce.policy_gradient(
            self.gen, self.opt, self._pairs(samples), adv, self.o["pg.epochs"], self.o["pg.batch_size"],
            self.seed + 104729 * (round_ + 1), pad_id=self.task.pad_id)
        self.gen_version = version
        metrics = {"pg_samples": len(samples), "pg_moved": bool(losses),
                   "pg_loss": losses[-1] if losses else 0.0,
                   "reward_mean": float(extrinsic.mean()) if len(extrinsic) else 0.0,
                   "bonus_mean": float(bonus.mean()) if len(bonus) else 0.0,
                   "t_update_actor": time.perf_counter() - t}
        if self.method == "rnd" and samples:
            metrics["rnd_loss"] = self._rnd_loss
        if self.method == "count":
            metrics["count_codes"] = len(self.bonus_model.counts)
        if samples:  # KL(g_{t+1} || p0), estimated on the round's samples (drawn from g_t)
            lg, _ = self._logp(self.gen, samples)
            l0, _ = self._logp(self.prior, samples)
            metrics["kl_to_prior"] = alg.kl_estimate(lg, l0)
        return state_dict(self.gen), metrics


PolicyTrainerActor = ray.remote(max_restarts=2, max_task_retries=2)(PolicyTrainer)
