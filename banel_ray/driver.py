"""The driver: starts the actors and runs BaNEL rounds (design.md §1), moving samples, scores and
weights between actors as object refs. It only ``ray.get``s small things: counts and metrics.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import ray
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from banel_ray import algorithm as alg
from banel_ray import tasks
from banel_ray.faults import crash_point
from banel_ray.oracle import RewardOracleActor
from banel_ray.sampler import SamplerActor
from banel_ray.trainers import GeneratorTrainerActor, NegativeTrainerActor


def lora_options(c: dict) -> dict | None:
    """The negative.lora.* keys as ``lora_copy`` arguments; None when r = 0 (a full copy)."""
    if c["negative.lora.r"] <= 0:
        return None
    return {"r": c["negative.lora.r"], "alpha": c["negative.lora.alpha"], "dropout": c["negative.lora.dropout"],
            "targets": [t.strip() for t in c["negative.lora.targets"].split(",") if t.strip()]}


def _split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class Driver:
    def __init__(self, cfg: dict, run_dir: Path, prior_dir: str, log=print):
        self.cfg, self.run_dir, self.prior_dir, self.log = cfg, Path(run_dir), prior_dir, log
        self.task = tasks.build(cfg["task"], cfg["task_options"])
        c = cfg
        topts = dict(task_name=c["task"], task_options=c["task_options"])
        # The oracle runs on the driver's node: its ledger.sqlite then sits in the run folder the
        # driver writes (checkpoints, metrics), also on a multi-node cluster without shared storage,
        # and a restarted oracle (max_restarts) finds it again. Created first, so that it gets its
        # oracle.num_cpus there before samplers and trainers fill the node (a hard affinity to a
        # full node waits forever).
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        pg = get_current_placement_group()
        if pg is not None:  # e.g. a Tune trial: stay inside its reservation
            here = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
        self.oracle = RewardOracleActor.options(num_cpus=c["oracle.num_cpus"], scheduling_strategy=here).remote(
            ledger_path=str(self.run_dir / "ledger.sqlite"), budget=c["budget"],
            rate_limit=c["oracle.rate_limit"], retries=c["oracle.retries"],
            charge_errors=c["oracle.charge_errors"], threads=c["trainer.threads"],
            max_in_flight=c["oracle.max_in_flight"], timeout_s=c["oracle.timeout_s"],
            burst=c["oracle.burst"], pending_rule=c["oracle.pending_rule"], **topts)
        self.samplers = [
            SamplerActor.options(num_cpus=c["sampler.num_cpus"], num_gpus=c["sampler.num_gpus"]).remote(
                c["sampler.backend"], prior_dir, seed=c["seed"] + 1000 * i, run_dir=str(self.run_dir),
                kv_cache_mb=c["sampler.kv_cache_mb"], threads=c["trainer.threads"], dtype=c["sampler.dtype"],
                gpu_memory_utilization=c["sampler.gpu_memory_utilization"], **topts)
            for i in range(c["sampler.num_actors"])]
        tr = dict(num_cpus=c["trainer.num_cpus"], num_gpus=c["trainer.num_gpus"])
        common = dict(prior_dir=prior_dir, seed=c["seed"], threads=c["trainer.threads"],
                      run_dir=str(self.run_dir), device=c["trainer.device"], dtype=c["trainer.dtype"],
                      grad_checkpointing=c["trainer.grad_checkpointing"],
                      **topts)
        self.start_trainers(tr, common)
        self.version = 0
        self.weights_ref = None
        self.round = 0
        self.history: list[dict] = []
        self.seen: set[tuple] = set()

    # ---- what a method (banel_ray.baselines) replaces --------------------------------------------
    uses_pool = True  # BaNEL draws a fresh pool each round for its filter; baselines do not

    def start_trainers(self, resources: dict, common: dict) -> None:
        self.neg = NegativeTrainerActor.options(**resources).remote(**common)
        self.gen = GeneratorTrainerActor.options(**resources).remote(**common)

    # ---- helpers -------------------------------------------------------------------------------
    def _sample(self, n: int, tag: int) -> list:
        """Object refs of sampler outputs, n candidates split across the sampler actors."""
        seed = None if tag < 0 else self.cfg["seed"] * 7_777_777 + tag
        return [s.sample.remote(k, None if seed is None else seed + 131 * i)
                for i, (s, k) in enumerate(zip(self.samplers, _split(n, len(self.samplers)))) if k > 0]

    def _filter_value(self, t: int) -> float:
        c = self.cfg
        start = c["filter.factor"] if c["filter.kind"] == "quantile" else c["filter.tau"]
        return alg.schedule_value(c["filter.schedule"], start, c["filter.end"], t, c["rounds"],
                                  c["filter.step_every"], c["filter.gamma"])

    def _generator_lr(self, t: int) -> float:
        c = self.cfg
        return alg.schedule_value(c["generator.schedule"], c["generator.lr"], c["generator.lr_end"], t,
                                  c["rounds"], c["generator.step_every"], c["generator.gamma"])

    def _accepted(self, n: int, tag: int, cap_factor: int = 64) -> list:
        """Sequential mode: draw from p0 and keep what no past region rejects, up to n (no NREs).

        Only counts reach the driver; the accepted samples stay in the object store.
        """
        ln = self.cfg["score.length_norm"]
        got, passed, refs, drawn, rate = 0, 0, [], 0, 1.0
        while got < n and drawn < cap_factor * n:
            batch = max(int((n - got) / max(rate, 1.0 / cap_factor) * 1.2), n - got, 16)
            ref, count = self.neg.accept.options(num_returns=2).remote(
                ln, n - got, *self._sample(batch, tag * 97 + len(refs)))
            k, p = ray.get(count)
            refs.append(ref)
            got, passed, drawn = got + k, passed + p, drawn + batch
            rate = max(passed / drawn, 1e-6)
        self.accept_rate = passed / max(drawn, 1)
        return refs

    def evaluate(self, tag: int) -> dict:
        """Success rate of the current generator (posterior), no NREs: eval.samples draws
        (Clopper-Pearson), or computed by the task where it can (distill mode; the sampled
        estimate is then kept beside it under "sampled")."""
        n = self.cfg["eval.samples"]
        t = time.perf_counter()
        # (random search has no generator trainer: its generator is the prior, sampled)
        computed = (ray.get(self.gen.success_rate.remote())
                    if self.cfg["mode"] == "distill" and self.gen is not None else None)
        if n <= 0 and not computed:
            return {}
        est: dict = {}
        if n > 0:
            if self.cfg["mode"] == "sequential":
                refs = self._accepted(n, 10_000_000 + tag)
            else:
                refs = self._sample(n, 10_000_000 + tag)
            res = ray.get(self.oracle.evaluate_free.remote(*refs))
            est = alg.Estimate(res["k"], res["n"]).as_dict()
            est["successes"] = [self.task.render(s) for s in res["successes"][:20]]
            est["patterns"] = [self.task.pattern(s) for s in res["successes"]]
            est.update({f"eval_{k}": v for k, v in res["diagnostics"].items()})
        if computed:
            sampled = {k: est.pop(k) for k in ("k", "n", "rate", "lo", "hi") if k in est}
            est.update(computed, **({"sampled": sampled} if sampled else {}))
        est["t_eval"] = time.perf_counter() - t
        return est

    # ---- one round -----------------------------------------------------------------------------
    def sync_samplers(self) -> list[int]:
        """Give the current generator weights to any sampler behind (e.g. restarted after a crash)."""
        versions = ray.get([s.version.remote() for s in self.samplers])
        behind = [s for s, v in zip(self.samplers, versions) if v != self.version]
        if behind and self.weights_ref is not None:
            ray.get([s.load_weights.remote(self.version, self.weights_ref) for s in behind])
        return versions

    def run_round(self) -> dict:
        c, t = self.cfg, self.round
        self.sync_samplers()
        m: dict = {"round": t + 1, "version": self.version}
        t0 = time.perf_counter()
        # 1. propose
        if c["mode"] == "sequential":
            batches, pool = self._accepted(c["samples_per_round"], t), None
            m["pre_oracle_acceptance"] = self.accept_rate
        else:
            batches = self._sample(c["samples_per_round"], t)
            # the pool depends only on g_t: queue it now, so the samplers draw it while the oracle
            # pays and p_phi is fitted (the overlap a one-process loop cannot have)
            pool = self._sample(c["pool_size"], 5_000_000 + t) if self.uses_pool else None
        crash_point("mid_sampling", t + 1)
        # 2. pay (refs go straight to the oracle actor; the wait covers sampling and paying)
        paid_ref = self.oracle.evaluate.remote(t + 1, *batches)
        crash_point("mid_oracle", t + 1)
        paid = ray.get(paid_ref)
        m["t_propose_pay"] = time.perf_counter() - t0
        samples, rewards = paid["samples"], paid["rewards"]
        keys = [tuple(s) for s in samples]
        m.update(nres=paid["spent"], paid=paid["paid"], reused=paid["reused"], oracle_errors=paid["errors"],
                 positives=int(sum(1 for r in rewards if r == 1)),
                 distinct_frac=len(set(keys)) / max(len(keys), 1),
                 novel_frac=sum(1 for k in set(keys) if k not in self.seen) / max(len(set(keys)), 1))
        self.seen.update(keys)
        m.update({f"round_{k}": v for k, v in self.task.diagnostics(samples).items()})
        m["found"] = [{"sample": self.task.render(s), "pattern": self.task.pattern(s)}
                      for s, r in zip(samples, rewards) if r == 1]
        self.learn(t, paid_ref, pool, m)
        m["sampler_versions"] = ray.get([s.version.remote() for s in self.samplers])
        self.round += 1
        m["t_round"] = time.perf_counter() - t0
        return m

    def learn(self, t: int, paid_ref, pool, m: dict) -> None:
        """Steps 3-6 on the round's paid samples: fit p_phi, then distil (or add a region)."""
        c = self.cfg
        # 3. learn failures
        t1 = time.perf_counter()
        fit_ref = self.neg.fit.remote(t + 1, paid_ref, c["negative.epochs"], c["negative.lr"],
                                      c["negative.batch_size"], c["negative.data"], c["negative.holdout"],
                                      lora_options(c))
        crash_point("mid_training", t + 1)
        fit = ray.get(fit_ref)
        m.update(fit)
        m["t_fit"] = time.perf_counter() - t1
        value = self._filter_value(t)
        m["filter_value"] = value
        if c["mode"] == "sequential":
            # 4-5. the fitted p_phi becomes one more rejection region (Algorithm 1, no distillation)
            t2 = time.perf_counter()
            fac = value if c["filter.kind"] == "quantile" else None
            tau = None if fac else math.log(value)
            r = ray.get(self.neg.add_region.remote(c["score.length_norm"], fac, tau,
                                                   *self._sample(c["pool_size"], 5_000_000 + t)))
            m.update(r)
            m["t_distil"] = time.perf_counter() - t2
        else:
            # 4. score a fresh pool (no NREs); 5-6. filter and distil into g_{t+1}
            t2 = time.perf_counter()
            m["generator_lr"] = lr = self._generator_lr(t)
            scored_ref = self.neg.score.remote(c["score.length_norm"], *pool)
            weights_ref, met_ref = self.gen.distil.options(num_returns=2).remote(
                t + 1, self.version + 1, c["filter.kind"], value, c["generator.epochs"],
                lr, c["generator.batch_size"], c["generator.reset"], scored_ref,
                paid_ref, c["use_positives"])
            self.version += 1
            # the new weights go from the trainer to the samplers and the negative trainer by ref
            acks = [s.load_weights.remote(self.version, weights_ref) for s in self.samplers]
            acks.append(self.neg.set_generator.remote(self.version, weights_ref))
            m.update(ray.get(met_ref))
            ray.get(acks)
            self.weights_ref = weights_ref
            m["t_distil"] = time.perf_counter() - t2

    def shutdown(self) -> None:
        for a in self.samplers + [self.neg, self.gen, self.oracle]:
            if a is not None:
                ray.kill(a)

    def state(self) -> dict:
        return {"round": self.round, "version": self.version, "history": self.history,
                "seen": [list(s) for s in self.seen]}
