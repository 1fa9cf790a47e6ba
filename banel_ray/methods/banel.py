"""BaNEL (Lee, Amos & Fanti, arXiv 2510.09596): learn a model of the failures, reject what looks
like one, and never train on a success.

* ``BanelDistill`` (``method: banel``, the paper's Algorithm 2): each round p_phi_t is fitted on the
  round's failures, a fresh pool from g_t is scored by s(x) = log g_t(x) - log p_phi_t(x), the top
  1/f (or s >= log tau) is kept and distilled into g_{t+1}, which the samplers then serve.
* ``BanelSequential`` (``method: banel_sequential`` or ``mode: sequential``, Algorithm 1): every
  p_phi is kept as a rejection region; candidates are drawn from p0 and rejected before they are
  paid for; nothing is distilled.

Settings (``_Banel.settings``): ``filter.*`` (kind, factor f or tau, decay schedule), ``negative.*``
(epochs, lr, data, LoRA), ``generator.*`` (epochs, lr and its schedule, reset), ``score.*``,
``support.*``; the scores, filters and schedules themselves are pure code in ``algorithms.banel``.
"""

from __future__ import annotations

import math
import time

from banel_ray.actors.trainers import GeneratorTrainer, NegativeTrainer
from banel_ray.algorithms import banel as alg
from banel_ray.config_sections import FilterConfig, GeneratorConfig, NegativeConfig, ScoreConfig, SupportConfig
from banel_ray.core import seeds
from banel_ray.methods.base import Method
from banel_ray.records import Update


class _Banel(Method):
    settings = (ScoreConfig, SupportConfig, FilterConfig, NegativeConfig, GeneratorConfig)

    def filter_value(self, t: int) -> float:
        c = self.ctx.rc.filter
        start = c.factor if c.kind == "quantile" else c.tau
        return alg.schedule_value(c.schedule, start, c.end, t, self.ctx.rc.rounds, c.step_every, c.gamma)

    def _start_negative(self):
        rc = self.ctx.rc
        self.negative = self.ctx.spawn_trainer(
            NegativeTrainer, negative=rc.negative, score=rc.score, support=rc.support
        )
        self.trainers["negative"] = self.negative

    def _fit(self, t: int, paid_ref, m: dict) -> None:
        from banel_ray.core.faults import crash_point

        t1 = time.perf_counter()
        fit_ref = self.negative.fit.remote(t + 1, paid_ref)
        crash_point("mid_training", t + 1)
        m.update(self.rt.get(fit_ref))
        m["t_fit"] = time.perf_counter() - t1


class BanelDistill(_Banel):
    name = "banel"
    trainer_roles = ("negative", "generator")
    generator_role = "generator"

    def start(self) -> None:
        rc = self.ctx.rc
        self._start_negative()
        self.generator = self.ctx.spawn_trainer(
            GeneratorTrainer, generator=rc.generator, filter_kind=rc.filter.kind, use_positives=rc.use_positives
        )
        self.trainers["generator"] = self.generator
        self.pool = None

    def prefetch(self, round_: int) -> None:
        # the pool depends only on g_t: queue it now, so the samplers draw it while the oracle pays
        # and p_phi is fitted (the overlap a one-process loop cannot have)
        self.pool = self.ctx.samplers.draw(self.ctx.rc.pool_size, seeds.POOL + round_)

    def generator_lr(self, t: int) -> float:
        c = self.ctx.rc.generator
        return alg.schedule_value(c.schedule, c.lr, c.lr_end, t, self.ctx.rc.rounds, c.step_every, c.gamma)

    def learn(self, t: int, paid_ref, version: int, m: dict) -> Update:
        self._fit(t, paid_ref, m)
        m["filter_value"] = value = self.filter_value(t)
        # 4. score a fresh pool (no NREs); 5-6. filter and distil into g_{t+1}
        t2 = time.perf_counter()
        m["generator_lr"] = lr = self.generator_lr(t)
        scored_ref = self.negative.score.remote(*self.pool)
        rc = self.ctx.rc
        fac = value if rc.filter.kind == "quantile" else None
        tau = None if fac else math.log(value)
        exact = rc.generator.distil_from == "exact"
        target_ref = None
        if exact or rc.negative.exact_alg1:  # the filter over the whole space: its draws, or a measurement
            n = 0
            if exact:  # as many as the pool's filter keeps, unless set
                n = rc.generator.exact_draws or (alg.keep_count(rc.pool_size, fac) if fac else rc.pool_size)
            target_ref, tmet_ref = self.negative.exact_target.options(num_returns=2).remote(t + 1, fac, tau, n)
            m.update(self.rt.get(tmet_ref))
        weights_ref, met_ref = self.generator.distil.options(num_returns=2).remote(
            t + 1, version, value, lr, scored_ref, paid_ref, target_ref if exact else None
        )
        ack = self.negative.set_generator.remote(version, weights_ref)
        m.update(self.rt.get(met_ref))
        if rc.negative.exact_alg1:  # the same negatives as Algorithm 1 regions, measured exactly
            m.update(self.rt.get(self.negative.add_region_from_prior.remote(t + 1, fac, tau, rc.pool_size)))
        if target_ref is not None or rc.negative.exact_alg1:
            m.update(self.rt.get(self.negative.distillation_report.remote()))  # after g_{t+1} arrived
        m["t_distil"] = time.perf_counter() - t2
        return Update(version=version, weights=weights_ref, metrics={"pending": [ack]})

    def computed_rate(self):
        return self.generator.success_rate.remote()

    def weights_ref(self):
        return self.generator.weights.remote()


class BanelSequential(_Banel):
    name = "banel_sequential"
    trainer_roles = ("negative",)

    def start(self) -> None:
        self._start_negative()
        self.accept_rate = 1.0
        self._enumerable = None  # whether the task enumerates its space, asked once

    def accepted(self, n: int, tag: int, cap_factor: int = alg.ACCEPT_CAP) -> list:
        """Draw from p0 and keep what no past region rejects, up to n (no NREs). Only counts reach
        the driver; the accepted samples stay where they are (the object store)."""
        got, passed, refs, drawn, rate = 0, 0, [], 0, 1.0
        while got < n and drawn < cap_factor * n:
            batch = max(int((n - got) / max(rate, 1.0 / cap_factor) * 1.2), n - got, 16)
            ref, count = self.negative.accept.options(num_returns=2).remote(
                n - got, *self.ctx.samplers.draw(batch, seeds.accept_batch(tag, len(refs)))
            )
            k, p = self.rt.get(count)
            refs.append(ref)
            got, passed, drawn = got + k, passed + p, drawn + batch
            rate = max(passed / drawn, 1e-6)
        self.accept_rate = passed / max(drawn, 1)
        return refs

    def propose(self, round_: int) -> list:
        n, tag = self.ctx.rc.samples_per_round, seeds.PROPOSE + round_
        if self.ctx.rc.negative.proposals == "exact":  # the posterior itself, however little p0 mass it holds
            est = self.rt.get(self.negative.posterior_rate.remote())
            self.accept_rate = 10 ** est["log10_accepted_mass"]  # what rejection would accept
            return [self.negative.posterior_draws.remote(n, tag)]
        return self.accepted(n, tag)

    def learn(self, t: int, paid_ref, version: int, m: dict) -> None:
        m["pre_oracle_acceptance"] = self.accept_rate  # of this round's proposals
        self._fit(t, paid_ref, m)
        m["filter_value"] = value = self.filter_value(t)
        # 4-5. the fitted p_phi becomes one more rejection region (Algorithm 1, no distillation)
        t2 = time.perf_counter()
        fac = value if self.ctx.rc.filter.kind == "quantile" else None
        tau = None if fac else math.log(value)
        if fac is not None and self.ctx.rc.negative.region_calibration == "posterior":
            # exact where the task enumerates its space (the trainer ignores these draws there)
            calib = [] if self._enumerates() else self.accepted(self.ctx.rc.pool_size, seeds.POOL + t)
        else:
            calib = self.ctx.samplers.draw(self.ctx.rc.pool_size, seeds.POOL + t)
        m.update(self.rt.get(self.negative.add_region.remote(fac, tau, *calib)))
        m["t_distil"] = time.perf_counter() - t2

    def _enumerates(self) -> bool:
        if self._enumerable is None:
            self._enumerable = self.rt.get(self.negative.posterior_rate.remote()) is not None
        return self._enumerable

    def eval_draws(self, n: int, tag: int) -> list:
        if self.ctx.rc.negative.proposals == "exact":
            return [self.negative.posterior_draws.remote(n, tag)]
        return self.accepted(n, tag)

    def grid_draws(self, n: int, tag: int) -> list:
        # drawn exactly from the posterior where the task enumerates its space (rejection may accept none)
        ref = self.negative.posterior_draws.remote(n, tag)
        return [ref] if self.rt.get(ref) is not None else self.accepted(n, tag)

    def computed_rate(self):
        # the posterior's exact rate where the task enumerates its space (the role answers None elsewhere)
        return self.negative.posterior_rate.remote()
