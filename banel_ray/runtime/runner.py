"""The Runner: one run's whole lifecycle, for any method, on Ray or in process.

``Runner.build`` starts the roles every method shares (the reward service, which owns the NRE
budget and the ledger; the evaluator; the samplers) and the method's own trainers; ``run`` then
does resume, the base evaluation, the rounds (propose, pay, learn, update the samplers), the
evaluation cadence, a checkpoint after every round (each role writes its shard, the runner the
manifest), a per-round hook (Tune reports there) and the summary. Samples, scores and weights move
between roles as references; the runner reads only counts and metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from banel_ray import config as C
from banel_ray import methods, tasks
from banel_ray.actors import ledger as ledger_mod
from banel_ray.actors.evaluator import Evaluator
from banel_ray.actors.reward_service import OracleDown, RewardService
from banel_ray.actors.sampler import Sampler
from banel_ray.algorithms import stats
from banel_ray.core import liveness, seeds
from banel_ray.core.checkpoint import CheckpointStore
from banel_ray.core.faults import crash_point
from banel_ray.core.run_folder import RunFolder
from banel_ray.methods.base import Context, SamplerPool
from banel_ray.report import metrics as K


class Runner:
    def __init__(
        self,
        cfg: dict,
        run_dir: Path,
        rt,
        task,
        prior_dir: str,
        reward,
        evaluator,
        samplers: SamplerPool,
        method,
        store: CheckpointStore,
        log: Callable[[str], None] = print,
    ):
        self.cfg, self.rc, self.run_dir, self.rt = cfg, C.sections(cfg), Path(run_dir), rt
        self.folder = RunFolder(run_dir)
        self.task, self.prior_dir, self.log = task, prior_dir, log
        self.reward, self.evaluator, self.samplers, self.method, self.store = reward, evaluator, samplers, method, store
        self.round = 0
        self.version = 0
        self.weights_ref = None
        self.history: list[dict] = []
        self.seen: set[tuple] = set()
        self.base: dict | None = None

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def build(cls, cfg: dict, run_dir: Path, rt, prior_dir: str, log: Callable[[str], None] = print) -> Runner:
        """Start every role of a run on ``rt`` (``RayRuntime`` or ``LocalRuntime``)."""
        rc = C.sections(cfg)
        run_dir = Path(run_dir)
        task = tasks.build(rc.task, rc.task_options)
        store = RunFolder(run_dir).store(rc.checkpoint.dir)
        topts = dict(task_name=rc.task, task_options=rc.task_options)
        # The reward service runs on the driver's node: its ledger.sqlite then sits in the run folder
        # the driver writes, also on a cluster without shared storage, and a restarted service finds
        # it again. Started first, so it gets its CPUs there before samplers and trainers fill the node.
        # Its ledger is made and its id recorded in the run folder first (before anything is paid),
        # so a resume finds out if that ledger went missing or was replaced, checkpoint or not.
        try:
            ledger_id = ledger_mod.adopt(run_dir)
        except ledger_mod.WrongLedger as e:
            raise C.ConfigError(str(e)) from None
        reward = rt.spawn(
            RewardService,
            "reward_service",
            num_cpus=rc.oracle.num_cpus,
            pin_here=True,
            ledger_path=str(run_dir / "ledger.sqlite"),
            ledger_id=ledger_id,
            driver=liveness.token(),  # a killed run's service sends no further call (on Ray it outlives us)
            budget=rc.budget,
            settings=rc.oracle,
            threads=rc.trainer.threads,
            **topts,
        )
        evaluator = rt.spawn(Evaluator, "evaluator", num_cpus=rc.eval.num_cpus, threads=rc.trainer.threads, **topts)
        s = rc.sampler
        handles = [
            rt.spawn(
                Sampler,
                "sampler",
                num_cpus=s.num_cpus,
                num_gpus=s.num_gpus,
                backend=s.backend,
                model_dir=prior_dir,
                seed=seeds.sampler_actor(rc.seed, i),
                checkpoints=str(store.root),
                kv_cache_mb=s.kv_cache_mb,
                threads=s.threads,
                dtype=s.dtype,
                gpu_memory_utilization=s.gpu_memory_utilization,
                **topts,
            )
            for i in range(s.num_actors)
        ]
        pool = SamplerPool(rt, handles, rc.seed)
        ctx = Context(
            cfg=cfg, rc=rc, rt=rt, task=task, prior_dir=prior_dir, samplers=pool, checkpoints=str(store.root), log=log
        )
        method = methods.get(rc.method)(ctx)
        method.start()
        runner = cls(cfg, run_dir, rt, task, prior_dir, reward, evaluator, pool, method, store, log)
        runner.check_storage()
        return runner

    def roles(self) -> list:
        return [self.reward, self.evaluator, *self.samplers.handles, *self.method.trainers.values()]

    def check_storage(self) -> None:
        """Every role that restores from checkpoints must see the checkpoint folder."""
        path, token = self.store.probe()
        handles = [*self.samplers.handles, *self.method.trainers.values()]
        seen = self.rt.get([h.sees.remote(path, token) for h in handles])
        if not all(seen):
            raise C.ConfigError(
                f"the checkpoint folder {self.store.root} is not visible from every node; "
                f"set checkpoint.dir (or run_dir) to storage all nodes share"
            )

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, tag: int) -> dict:
        """Success rate of the current generator (posterior), no NREs: eval.samples draws scored by
        the evaluator (Clopper-Pearson), or computed by the task where it can (the sampled estimate
        is then kept beside it under "sampled")."""
        n = self.rc.eval.samples
        t = time.perf_counter()
        ref = self.method.computed_rate()
        computed = self.rt.get(ref) if ref is not None else None
        if n <= 0 and not computed:
            return {}
        est: dict = {}  # what the draws say: the sampled estimate, then successes, patterns, modes, diagnostics
        sampled = None
        res = None
        if n > 0 and self.task.free_evaluation:
            res = self.rt.get(self.evaluator.estimate.remote(*self.method.eval_draws(n, seeds.EVAL + tag)))
        elif n > 0:  # no free evaluator: the paid oracle, counted and capped (config.validate allowed it)
            budget = self.rc.eval.paid_budget
            n = min(n, self.rt.get(self.reward.eval_remaining.remote(budget)))
            if n > 0:
                draws = self.method.eval_draws(n, seeds.EVAL + tag)
                res = self.rt.get(self.reward.estimate.remote(*draws, budget=budget))
            else:
                self.log(f"[banel_ray] eval.paid_budget {budget} spent: no estimate")
        if res is not None and res.n == 0 and res.errors:
            self.log(f"[banel_ray] every one of {res.errors} evaluation draws failed: no estimate")
        if res is not None and res.n > 0:
            sampled = stats.sampled(res.k, res.n)
            if res.errors or res.paid_oracle:
                est.update(errors=res.errors, paid_oracle=res.paid_oracle)
            est[K.EVAL_SUCCESSES] = [self.task.render(s) for s in res.successes[:20]]
            est[K.EVAL_PATTERNS] = dict(res.patterns.most_common())
            est[K.EVAL_MODES] = {
                mode: {"share": n_m / max(res.n, 1), "n": n_m, "k": k_m, "p_success": k_m / n_m if n_m else 0.0}
                for mode, (n_m, k_m) in sorted(res.modes.items())
            }
            est.update({f"eval_{k}": v for k, v in res.diagnostics.items()})
        if sampled is None and not computed:
            return {}
        if computed:  # the task's rate, the sampled estimate beside it
            est.update(computed, **({"sampled": sampled.to_dict()} if sampled else {}))
        else:
            est = {**sampled.to_dict(), **est}
        est["t_eval"] = time.perf_counter() - t
        return est

    # ---- one round -------------------------------------------------------------------------------
    def sync_samplers(self) -> None:
        """Give the current generator weights to any sampler behind (e.g. restarted after a crash)."""
        versions = self.samplers.versions()
        behind = [h for h, v in zip(self.samplers.handles, versions) if v != self.version]
        if behind and self.weights_ref is not None:
            self.rt.get([h.load_weights.remote(self.version, self.weights_ref) for h in behind])

    def run_round(self) -> dict:
        t = self.round
        self.sync_samplers()
        m: dict = {K.ROUND: t + 1, "version": self.version}
        t0 = time.perf_counter()
        batches = self.method.propose(t)  # 1. propose
        self.method.prefetch(t)
        crash_point("mid_sampling", t + 1)
        # 2. pay (refs go straight to the reward service; the wait covers sampling and paying)
        paid_ref = self.reward.pay.remote(t + 1, *batches, call_id=f"round-{t + 1}")
        crash_point("mid_oracle", t + 1)
        paid = self.rt.get(paid_ref)
        m["t_propose_pay"] = time.perf_counter() - t0
        if self.rc.oracle.cost_per_call > 0:
            m[K.COST_USD] = self.rt.get(self.reward.cost_usd.remote())
        nothing = all(r is None for r in paid.rewards)
        if nothing and (paid.errors or (paid.unpaid and self.rc.oracle.budget_usd > 0)):  # learn nothing
            m.update({K.NRES: paid.spent, K.PAID: paid.paid, K.REUSED: paid.reused, K.ORACLE_ERRORS: paid.errors})
            m.update({K.SUCCESSES: 0, K.ORACLE_FAILED: True, "t_round": time.perf_counter() - t0})
            return m  # the round is not counted: run() tries it again, with the same draws
        keys = [tuple(s) for s in paid.samples]
        m.update(
            {
                K.NRES: paid.spent,
                K.PAID: paid.paid,
                K.REUSED: paid.reused,
                K.ORACLE_ERRORS: paid.errors,
                K.SUCCESSES: paid.new_successes,
                K.DISTINCT_FRAC: len(set(keys)) / max(len(keys), 1),
                K.NOVEL_FRAC: sum(1 for k in set(keys) if k not in self.seen) / max(len(set(keys)), 1),
            }
        )
        self.seen.update(keys)
        m.update({f"round_{k}": v for k, v in self.task.diagnostics(paid.samples).items()})
        negatives = paid.failures()
        if negatives:  # what the negative model learns from, by mode
            modes = [self.task.mode(s) for s in negatives]
            m[K.NEGATIVE_MODES] = {x: modes.count(x) / len(modes) for x in sorted(set(modes))}
        m[K.SUCCESSES_SO_FAR] = (
            self.history[-1].get(K.SUCCESSES_SO_FAR, 0) if self.history else 0
        ) + paid.new_successes
        m[K.FOUND] = [{"sample": self.task.render(s), "pattern": self.task.pattern(s)} for s in paid.successes()]
        update = self.method.learn(t, paid_ref, self.version + 1, m)  # 3-6. the method's own step
        if update is not None:
            self.version = update.version
            acks = self.samplers.load(self.version, update.weights) + list(update.metrics.get("pending", []))
            self.rt.get(acks)
            self.weights_ref = update.weights
        m["sampler_versions"] = self.samplers.versions()
        self.round += 1
        m["t_round"] = time.perf_counter() - t0
        return m

    def stop_rule_fires(self, m: dict) -> bool:
        """Does ``stop.rule`` fire for the first time after this round? It reads positive-free
        signals only (never the evaluation); the round is recorded in ``m`` as ``stop_rule_fired``."""
        if not self.rc.stop.rule or any(h.get(K.STOP_FIRED) for h in self.history):
            return False
        from banel_ray.algorithms import stop_rules

        rule = stop_rules.rule_by_name(self.rc.stop.rule)
        if stop_rules.fires(rule, [stop_rules.signals(h) for h in [*self.history, m]]):
            m[K.STOP_FIRED] = True
            return True
        return False

    # ---- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "round": self.round,
            "version": self.version,
            "history": self.history,
            "seen": [list(s) for s in self.seen],
            "base": self.base,
        }

    def checkpoint(self, evaluated: bool) -> Path:
        """Every stateful role writes its shard; once all have answered, the manifest is written and
        the checkpoint published. The ledger's log is folded into its file."""
        tmp = self.store.begin(self.round)
        roles = dict(self.method.trainers)
        acks = self.rt.get([h.save_shard.remote(str(tmp / role)) for role, h in roles.items()])
        shards = dict(zip(roles, acks))
        gw = shards.get(self.method.generator_role, {}).get("weights") if self.method.generator_role else None
        c = self.rc.checkpoint
        path = self.store.commit(
            tmp,
            self.round,
            self.version,
            self.state(),
            shards,
            gw,
            evaluated,
            keep=c.keep,
            keep_evaluated=c.keep_evaluated,
        )
        self.rt.get(self.reward.checkpoint.remote())
        return path

    def restore(self) -> bool:
        """Continue from the last complete checkpoint (the roles restored their shards when they
        started). Returns whether there was one."""
        st = self.store.runner_state()
        if not st:
            return False
        self.round, self.version, self.history = st["round"], st["version"], st["history"]
        self.seen = {tuple(s) for s in st["seen"]}
        self.base = st.get("base")
        if self.version > 0:  # for samplers that fall behind later: the trainer's copy, by ref
            self.weights_ref = self.method.weights_ref()
        return True

    # ---- the run ---------------------------------------------------------------------------------
    def run(self, resume: bool = False, on_round=None) -> dict:
        """Run (or resume) rounds until ``rounds`` or the budget. ``on_round(metrics, run_dir)`` is
        called after each round's checkpoint; it may return True to stop after that round."""
        from banel_ray import report

        t_start = time.time()
        if resume:
            done = self.store.runner_state()["round"] if self.store.runner_state() else 0
            self.folder.write_metrics(
                [m for m in self.folder.metrics() if m[K.ROUND] <= done]
            )  # a cut-short round is redone
            if self.restore():
                self.log(f"[banel_ray] resumed after round {self.round} (generator version {self.version})")
            settled = self.rt.get(self.reward.resolve_pending.remote())  # settled by oracle.pending_rule
            if settled:
                self.log(f"[banel_ray] settled {settled} evaluations left pending by the killed run")
        writer = report.MetricsWriter(self.run_dir, self.cfg)
        if self.base is None:
            t = time.perf_counter()
            self.base = self.evaluate(-1)
            if self.base:
                self.log(
                    f"[banel_ray] base success rate {report.fmt_rate(self.base)} "
                    f"({time.perf_counter() - t:.0f}s; not NREs)"
                )
        budget, every = self.rc.budget, self.rc.eval.every
        failed, max_failed = 0, self.rc.oracle.max_failed_rounds
        while self.round < self.rc.rounds:
            # stop once a completed round has spent the budget (a round cut short by a crash is
            # redone even if it had already paid: its evaluations come back from the ledger, free)
            if self.history and self.history[-1][K.NRES] >= budget:
                self.log(f"[banel_ray] NRE budget {budget} spent: stopping")
                break
            if self.usd_spent():
                break
            m = self.run_round()
            if m.get(K.ORACLE_FAILED) and self.usd_spent():  # its calls were refused for lack of money
                break
            if m.get(K.ORACLE_FAILED):  # not written, not checkpointed: like a round cut short
                failed += 1
                self.log(report.progress_line(m, budget))
                self.log(
                    f"  every evaluation of round {m[K.ROUND]} failed ({m[K.ORACLE_ERRORS]} errors): nothing "
                    f"learnt; {failed} of oracle.max_failed_rounds={max_failed} such rounds in a row"
                )
                if failed >= max_failed:
                    writer.close("FAILED")
                    raise OracleDown(
                        f"every evaluation failed in {failed} rounds in a row (round {m[K.ROUND]}, "
                        f"{m[K.ORACLE_ERRORS]} errors; see the ledger's error column); fix the oracle, "
                        f"then resume with  python -m banel_ray.run --resume {self.run_dir}"
                    )
                continue
            failed = 0
            last = self.round >= self.rc.rounds or m[K.NRES] >= budget or self.usd_spent(quiet=True)
            if every and (self.round % every == 0) or last:
                m[K.EVAL] = self.evaluate(self.round)
            fired = self.stop_rule_fires(m)
            self.history.append(m)
            writer.write(m)
            self.log(report.progress_line(m, budget))
            self.checkpoint(evaluated=bool(m.get(K.EVAL)) or fired)
            if fired:
                self.log(
                    f"[banel_ray] stop rule '{self.rc.stop.rule}' fired after round {self.round}"
                    + ("" if self.rc.stop.live else " (marked; the run goes on: stop.live is off)")
                )
                if self.rc.stop.live:
                    break
            if on_round is not None and on_round(m, self.run_dir):
                self.log(f"[banel_ray] stopped by on_round after round {self.round}")
                break
        summary = self.summary(time.time() - t_start)
        writer.summary(summary)
        writer.close()
        return summary

    def usd_spent(self, quiet: bool = False) -> bool:
        """Whether ``oracle.budget_usd`` has no room for one more oracle call (then the run stops,
        like at the NRE budget; the ledger's summed cost is at most the cap)."""
        usd = self.rc.oracle.budget_usd
        if usd <= 0 or self.rt.get(self.reward.can_afford_call.remote()):
            return False
        if not quiet:
            cost = self.rt.get(self.reward.cost_usd.remote())
            self.log(f"[banel_ray] oracle.budget_usd {usd:g} spent ({cost:g} USD): stopping")
        return True

    def summary(self, wall_s: float) -> dict:
        from banel_ray import report
        from banel_ray.report import plots as report_plots

        grid = None
        plots = report_plots.available()  # optional: without matplotlib no plots, one warning
        if not plots:
            self.log(report_plots.SKIPPED)
        if self.task.grid_samples and plots:  # the task draws its prior samples beside these from the final generator
            refs = self.method.grid_draws(self.task.grid_samples, seeds.GRID)
            drawn = [tuple(s) for b in self.rt.get(refs) for s in b.samples]
            if drawn:
                grid = self.task.save_sample_grid(self.run_dir / "samples.png", drawn)
            else:  # Algorithm 1 whose regions accept none of p0's draws within the cap: nothing to show
                self.log("no sample grid: the final model yielded no draws (Algorithm 1 accepted none of p0's)")
        hist = self.history
        evals = [(m[K.ROUND], m[K.EVAL]) for m in hist if m.get(K.EVAL)]
        final = evals[-1][1] if evals else None
        best_round, best = max(evals, key=lambda e: e[1]["rate"]) if evals else (None, None)
        found = list({x["sample"]: x for m in hist for x in m.get(K.FOUND, [])}.values())
        base = self.base
        ev = self.rt.get(self.evaluator.stats.remote())
        acct = self.rt.get(self.reward.accounting.remote())  # from the ledger: every process of the run
        summary = {
            "task": self.rc.task,
            "method": self.rc.method,
            "mode": self.rc.mode,
            "run_dir": str(self.run_dir),
            "budget": self.rc.budget,
            K.NRES: self.rt.get(self.reward.spent.remote()),
            "rounds": self.round,
            "base": base,
            "final": final,
            "best": best,
            "best_round": best_round,
            "improvement_final": stats.improvement_factor(final["rate"], base["rate"]) if final and base else math.nan,
            "improvement_best": stats.improvement_factor(best["rate"], base["rate"]) if best and base else math.nan,
            K.SUCCESSES: self.rt.get(self.reward.successes.remote()),
            "found": found[:200],
            "final_patterns": (final or {}).get(K.EVAL_PATTERNS, {}),
            "wall_s": wall_s,
            "t_eval_total": (base or {}).get("t_eval", 0.0)
            + sum((m.get(K.EVAL) or {}).get("t_eval", 0.0) for m in hist),
            **ev,
            **acct,
            "ledger_rows": len(self.rt.get(self.reward.ledger_rows.remote())),
            "sample_grid": str(grid) if grid else None,
        }
        self.folder.write_summary(summary)
        if plots:
            report.plot(self.run_dir, base, hist)
        return summary

    def shutdown(self) -> None:
        """Stop every role this run started (the reward service closes its ledger first)."""
        try:
            self.rt.get(self.reward.close.remote())
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
        self.method.shutdown()
        for h in [self.reward, self.evaluator, *self.samplers.handles]:
            self.rt.kill(h)
