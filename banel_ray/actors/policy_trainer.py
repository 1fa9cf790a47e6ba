"""The policy-gradient trainer role: one shell around ``algorithms.reinforce`` and the bonuses.

It holds the generator g_t (a copy of p0 at the start), turns each round's paid samples into a
policy update (``update``), and returns the new weights for the samplers, as BaNEL's generator
trainer does. Its checkpoint shard keeps what a resumed run must continue: the weights, the
AdamW moments and the bonus state (RND predictor and its optimiser, running scale; SimHash counts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from banel_ray.actors.trainers import TrainerRole
from banel_ray.algorithms import banel as alg
from banel_ray.algorithms import negative_rl, reinforce
from banel_ray.algorithms.bonuses.features import one_hot_positions
from banel_ray.core import checkpoint as ckpt
from banel_ray.core import seeds
from banel_ray.models import load_optimizer_tensors, optimizer_tensors, state_dict
from banel_ray.records import PaidBatch

OBJECTIVES = ("reinforce", "nsr", "w_reinforce", "npo")


class PolicyTrainer(TrainerRole):
    """``objective``: reinforce (advantages of reward + bonus), nsr or w_reinforce (the
    negative-sample weights of ``algorithms.negative_rl``), or npo (the failures only, with NPO's
    bounded weight against the frozen prior p0 as reference); ``bonus``: none, rnd or count;
    ``pg``/``rnd``/``count``/``wr``/``npo``: those config sections (a method hands over the ones
    its ``settings`` name; the others keep their defaults, unread)."""

    role = "policy"

    def __init__(
        self,
        *a,
        objective: str = "reinforce",
        bonus: str = "none",
        pg=None,
        rnd=None,
        count=None,
        wr=None,
        npo=None,
        **k,
    ):
        from banel_ray.config_sections import CountConfig, NpoConfig, PgConfig, RndConfig, WrConfig

        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        self.wr = wr if wr is not None else WrConfig()
        self.npo = npo if npo is not None else NpoConfig()
        self.bonus_kind = bonus
        self.pg = pg if pg is not None else PgConfig()
        self.rnd_cfg = rnd if rnd is not None else RndConfig()
        self.count_cfg = count if count is not None else CountConfig()
        self.opt = None
        self.bonus_model = None
        self._rnd_loss = float("nan")
        super().__init__(*a, **k)
        if self.opt is None:
            self.opt = reinforce.make_optimizer(self.generator, self.pg.lr)
        if self.bonus_model is None:
            self.bonus_model = self._new_bonus()

    def _dims(self) -> tuple[int, int]:
        return len(self.task.prompt) + self.task.max_new_tokens, int(self.generator.config.vocab_size)

    def _new_bonus(self):
        length, vocab = self._dims()
        if self.bonus_kind == "rnd":
            from banel_ray.algorithms.bonuses.rnd import RND

            return RND(length * vocab, hidden=self.rnd_cfg.hidden, lr=self.rnd_cfg.lr, seed=self.seed)
        if self.bonus_kind == "count":
            from banel_ray.algorithms.bonuses.count import SimHashCounter

            return SimHashCounter(length * vocab, bits=self.count_cfg.bits, seed=self.seed)
        return None

    def weights(self) -> dict:
        return state_dict(self.generator)

    def _bonus(self, samples) -> np.ndarray:
        if self.bonus_model is None:
            return np.zeros(len(samples))
        feats = one_hot_positions(samples, *self._dims())
        if self.bonus_kind == "rnd":
            b = self.rnd_cfg.coef * self.bonus_model.bonus(feats)
            self._rnd_loss = self.bonus_model.update(feats, self.rnd_cfg.epochs)
            return b
        codes = self.bonus_model.codes(feats)
        self.bonus_model.update(codes)
        return self.bonus_model.bonus(codes, self.count_cfg.coef)

    def update(self, round_: int, version: int, paid: PaidBatch):
        """One REINFORCE update on the round's paid samples (unpaid ones, reward None, are skipped).

        Returns (new weights, metrics): two object refs when called with num_returns=2.
        """
        t = time.perf_counter()
        pairs = paid.rewarded()
        samples = [s for s, _ in pairs]
        extrinsic = np.array([r for _, r in pairs], dtype=np.float64)
        bonus = self._bonus(samples) if samples else np.zeros(0)
        train, weight_fn, l0, npo_w = samples, None, None, []
        if self.objective == "nsr":
            adv = negative_rl.nsr_weights(extrinsic)
        elif self.objective == "w_reinforce":
            adv = negative_rl.w_reinforce_weights(extrinsic, self.wr.pos_weight)
        elif self.objective == "npo":  # the failures only, the loss averaged over them
            neg = np.flatnonzero(extrinsic == 0)
            train, adv = [samples[i] for i in neg], -np.ones(len(neg))
            l0 = self._logp(self.prior, samples)[0] if samples else np.zeros(0)  # the frozen reference
            ref, beta = l0[neg], self.npo.beta

            def weight_fn(idx, lp):  # -dL_NPO/dlog g at the current weights (loss -w log g)
                w = negative_rl.npo_weights(lp, ref[idx], beta)
                npo_w.extend(w.tolist())
                return -w

        else:
            adv = reinforce.advantages(extrinsic + bonus, self.pg.normalize)
        losses = reinforce.policy_gradient(
            self.generator,
            self.opt,
            self._pairs(train),
            adv,
            self.pg.epochs,
            self.pg.batch_size,
            seeds.generator_update(self.seed, round_),
            pad_id=self.task.pad_id,
            weight_fn=weight_fn,
        )
        self.generator_version = version
        metrics = {
            "pg_samples": len(samples),
            "pg_moved": bool(losses),
            "pg_loss": losses[-1] if losses else 0.0,
            "reward_mean": float(extrinsic.mean()) if len(extrinsic) else 0.0,
            "bonus_mean": float(bonus.mean()) if len(bonus) else 0.0,
            "t_update_actor": time.perf_counter() - t,
        }
        if self.bonus_kind == "rnd" and samples:
            metrics["rnd_loss"] = self._rnd_loss
        if self.bonus_kind == "count":
            metrics["count_codes"] = len(self.bonus_model.counts)
        if samples:  # KL(g_{t+1} || p0), estimated on the round's samples (drawn from g_t)
            lg, _ = self._logp(self.generator, samples)
            if l0 is None:
                l0, _ = self._logp(self.prior, samples)
            metrics["kl_to_prior"] = alg.kl_estimate(lg, l0)
            if self.objective == "npo":  # NPO's loss after the update, and the mean weight it used
                metrics["npo_loss"] = negative_rl.npo_loss(lg[neg], l0[neg], self.npo.beta)
                metrics["npo_weight_mean"] = float(np.mean(npo_w)) if npo_w else 0.0
        return state_dict(self.generator), metrics

    # ---- checkpoint shard ------------------------------------------------------------------------
    def save_shard(self, folder: str) -> dict:
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        ckpt.save_tensors(d / "weights.safetensors", state_dict(self.generator))
        ckpt.save_tensors(d / "optimizer.safetensors", optimizer_tensors(self.opt))
        meta = {"bonus": self.bonus_kind}
        if self.bonus_kind == "rnd":
            ckpt.save_tensors(d / "rnd.safetensors", self.bonus_model.tensors())
            meta["rnd_scale"] = self.bonus_model.scale.state()
        elif self.bonus_kind == "count":
            meta["counts"] = self.bonus_model.state()
        ckpt.write_json(d / "policy.json", meta)
        ckpt.fsync_dir(d)
        return {"weights": f"{self.role}/weights.safetensors", "version": self.generator_version}

    def restore(self) -> None:
        super().restore()  # the weights (the file the samplers also read)
        d = self.store.shard(self.role)
        if d is None:
            return
        self.opt = reinforce.make_optimizer(self.generator, self.pg.lr)
        load_optimizer_tensors(self.opt, ckpt.load_tensors(d / "optimizer.safetensors"))
        meta = json.loads((d / "policy.json").read_text())
        self.bonus_model = self._new_bonus()
        if self.bonus_kind == "rnd":
            self.bonus_model.load_tensors(ckpt.load_tensors(d / "rnd.safetensors"))
            self.bonus_model.scale.load(meta["rnd_scale"])
        elif self.bonus_kind == "count":
            self.bonus_model.load(meta["counts"])
