"""``python -m banel_ray.evaluate RUN_DIR``: a checkpointed generator on a fresh sample. Never NREs.

The in-run estimates are what a run watches; a headline is the final generator (or the round a
positive-free stop rule picked) on a fresh sample, drawn from its own seed stream
(``seeds.FINAL``), scored by the task's evaluator, with a Clopper-Pearson interval. A task that
computes its rates (``Task.success_rate``: exact, or importance sampled on draws tied to the
model's weights) is evaluated that way instead, ``--samples`` being the estimator's draws. Every evaluated
round keeps its checkpoint, so any reported round can be re-checked with one command; the
result goes to ``RUN_DIR/evals/round_NNNN.json`` and is what ``compare`` reads.

Runs in this process (no Ray): a torch sampler on the checkpoint's weights and the task's evaluator.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

from banel_ray.cli import Parser, fail
from banel_ray.core.estimate import SAMPLED, Estimate
from banel_ray.core.run_folder import RunFolder, RunFolderError

EPILOG = """examples:
  python -m banel_ray.evaluate runs/addition_attack-20261201-120000              # final round, task's size
  python -m banel_ray.evaluate RUN_DIR --round 15 --samples 200000
  python -m banel_ray.evaluate RUN_DIR --all                                    # every kept checkpoint
  python -m banel_ray.evaluate RUN_DIR --grid                                   # and samples.png of the final
"""


class RunEvaluation:
    """Fresh evaluations of one run folder's rounds. The folder's config is read, and its task
    built and prepared, once for all of them; ``job.run`` passes the config, task and prior folder
    it holds, so the end of a run reads and prepares nothing again."""

    def __init__(
        self, run_dir: Path, cfg: dict | None = None, task=None, prior_dir: str | None = None, threads: int = 1
    ):
        from banel_ray import tasks

        self.folder = RunFolder(run_dir)
        self.cfg = self.folder.config(require=("task",)) if cfg is None else cfg
        self.task = tasks.build(self.rc.task, self.rc.task_options) if task is None else task
        self.threads = threads
        self._prior_dir = prior_dir
        self._posterior: dict = {}  # round -> Algorithm 1's exact posterior state (exact_posterior_rate)

    @property
    def prior_dir(self) -> str:
        """The prior's folder (the task prepared once, when first needed)."""
        if self._prior_dir is None:
            self._prior_dir = self.task.prepare(progress=lambda s: None)
        return self._prior_dir

    @functools.cached_property
    def rc(self):
        """The folder's config, typed (``config.RunConfig``; a key an older folder lacks: its default)."""
        from banel_ray import config as C

        return C.sections(dict(C.defaults(), **self.cfg))

    @functools.cached_property
    def store(self):
        """The run's checkpoints (``checkpoint.dir`` when the config sets it)."""
        return self.folder.store(self.rc.checkpoint.dir)

    @property
    def computes_rates(self) -> bool:
        """Whether the task computes its rates (``Task.success_rate``) rather than having them sampled."""
        from banel_ray.tasks.base import Task

        return type(self.task).success_rate is not Task.success_rate

    def final_round(self) -> int:
        st = self.store.runner_state()
        if not st:
            raise FileNotFoundError(f"{self.folder.path} has no complete checkpoint")
        return int(st["round"])

    def regions(self, round_: int) -> list | None:
        """Algorithm 1's regions ((p_phi weights, log tau), one per round) at round ``round_``'s
        checkpoint; None: not a sequential run, or round 0."""
        from banel_ray.core import checkpoint as ckpt

        cfg = self.cfg
        if round_ <= 0 or cfg.get("method") != "banel_sequential" and cfg.get("mode") != "sequential":
            return None
        d = self.store.shard("negative", self.store.path(round_))
        if d is None:
            raise FileNotFoundError(
                f"round {round_} of {self.folder.path} has no negative shard (Algorithm 1's regions)"
            )
        taus = json.loads((d / "negative.json").read_text())["region_log_taus"]
        return [(ckpt.load_tensors(d / f"region_{i:04d}.safetensors"), float(t)) for i, t in enumerate(taus)]

    def known_failures(self, round_: int) -> list | None:
        """With ``negative.exclude_failures``, the strings paid as failures up to round ``round_``
        (from its negative shard), which Algorithm 1's posterior leaves out; None otherwise."""
        if round_ <= 0 or not self.cfg.get("negative.exclude_failures"):
            return None
        d = self.store.shard("negative", self.store.path(round_))
        if d is None:
            return None
        return [tuple(x) for x in json.loads((d / "negative.json").read_text())["negatives"]]

    def _excluded_codes(self, round_: int):
        known = self.known_failures(round_)
        return self.task.code_indices(known) if known else None

    def accept_filter(self, round_: int):
        """Algorithm 1's generator is p0 restricted to what no past region rejects: a function that
        keeps the samples of a batch every region of round ``round_``'s checkpoint accepts (None:
        not a sequential run, or round 0). Without it a fresh evaluation would score p0 itself."""
        from banel_ray.actors.trainers import regions_accept
        from banel_ray.models import load_model

        regions = self.regions(round_)
        if regions is None:
            return None
        prior = load_model(self.prior_dir)
        norm = bool(self.cfg.get("score.length_norm", True))
        task = self.task

        known = set(self.known_failures(round_) or ())

        def keep(samples: list) -> list:
            mask = regions_accept(prior, regions, [(task.prompt, s) for s in samples], task.pad_id, norm)
            return [s for s, k in zip(samples, mask) if k and tuple(s) not in known]

        return keep

    def generator(self, round_: int) -> tuple[int, dict] | None:
        """(version, weights) of round ``round_``'s generator; None for round 0 or a kept checkpoint
        without generator weights (a method that never updates it: the prior)."""
        if round_ <= 0:
            return None
        ck = self.store.path(round_)
        if not (ck / "manifest.json").exists():
            raise FileNotFoundError(
                f"no checkpoint of round {round_} in {self.store.root} (kept: {self.store.rounds()})"
            )
        return self.store.generator(ck)

    def sampled(self, round_: int, samples: int, batch: int = 25_000, progress=None) -> dict:
        """Fresh-sample estimate of round ``round_``'s generator (round 0: the prior); written to
        ``evals/round_NNNN.json`` and returned."""
        from banel_ray.actors.evaluator import Evaluator
        from banel_ray.actors.sampler import Sampler
        from banel_ray.algorithms import banel as alg
        from banel_ray.algorithms import stats
        from banel_ray.core import seeds
        from banel_ray.records import SampleBatch

        rc, threads = self.rc, self.threads
        topts = dict(task_name=rc.task, task_options=rc.task_options)
        sampler = Sampler("torch", self.prior_dir, seed=seeds.sampler_actor(rc.seed, 0), threads=threads, **topts)
        found = self.generator(round_)
        version = sampler.load_weights(*found) if found is not None else 0
        evaluator = Evaluator(threads=threads, **topts)
        keep = self.accept_filter(round_)
        t0 = time.perf_counter()
        k = n = drawn = 0
        patterns: dict = {}
        modes: dict = {}
        diag: dict = {}
        tag = seeds.FINAL + round_
        i = 0
        # Algorithm 1: rejection sampling from p0 until `samples` are accepted, at most ACCEPT_CAP x drawn
        while n < samples and drawn < (alg.ACCEPT_CAP * samples if keep else samples):
            want = min(batch, samples - n) if keep is None else batch
            b = sampler.sample(want, seeds.per_sampler(seeds.draw(rc.seed, tag), i))
            i, drawn = i + 1, drawn + want
            if keep is not None:
                b = SampleBatch(samples=keep(b.samples)[: samples - n], version=b.version)
            res = evaluator.estimate(b)
            k, n = k + res.k, n + res.n
            for p, c in res.patterns.items():
                patterns[p] = patterns.get(p, 0) + c
            for mode, (n_m, k_m) in res.modes.items():
                acc = modes.setdefault(mode, [0, 0])
                acc[0] += n_m
                acc[1] += k_m
            for key, v in res.diagnostics.items():  # per-draw shares: weighted by the batch's draws
                if isinstance(v, int | float):
                    diag[key] = diag.get(key, 0.0) + float(v) * res.n
            if progress:
                progress(f"[evaluate] round {round_}: {n:,}/{samples:,} draws, {k:,} successes")
        est = stats.sampled(k, n).to_dict()
        est.update(
            round=round_,
            version=version,
            fresh=True,
            seed_tag=tag,
            **({"drawn_from_prior": drawn, "accepted_share": n / max(drawn, 1)} if keep else {}),
            seconds=time.perf_counter() - t0,
            patterns=dict(sorted(patterns.items(), key=lambda x: -x[1])),
            modes={
                m: {"share": a[0] / max(n, 1), "n": a[0], "k": a[1], "p_success": a[1] / a[0] if a[0] else 0.0}
                for m, a in sorted(modes.items())
            },
            **{f"eval_{key}": v / max(n, 1) for key, v in sorted(diag.items())},
        )
        self.folder.write_eval(round_, est)
        return est

    def computed(self, round_: int, samples: int | None) -> dict:
        """The task's computed rate of round ``round_``'s generator (round 0: the prior), with
        ``samples`` estimator draws; written to ``evals/round_NNNN.json`` and returned."""
        from banel_ray.models import load_model, load_state, set_threads

        set_threads(self.threads)
        model, version = load_model(self.prior_dir), 0
        found = self.generator(round_)
        if found is not None:  # else the generator never changed: the prior
            version, weights = found
            load_state(model, weights)
        t0 = time.perf_counter()
        regions = self.regions(round_)
        exact = None
        if regions is not None:  # Algorithm 1: the posterior is p0 restricted by the regions, not p0
            from banel_ray.actors.trainers import exact_posterior_rate

            exact, self._posterior[round_] = exact_posterior_rate(
                self.task,
                model,
                regions,
                bool(self.cfg.get("score.length_norm", True)),
                excluded=self._excluded_codes(round_),
            )
        est = dict(exact or self.task.success_rate(model, samples=samples), round=round_, version=version, fresh=True)
        if regions is not None and exact is None:  # a computed rate that cannot see the regions
            est["warning"] = "Algorithm 1 run: this is p0's computed rate, not the posterior's"
        est["seconds"] = time.perf_counter() - t0
        self.folder.write_eval(round_, est)
        return est

    def sample_grid(self, round_: int) -> Path | None:
        """The task's sample grid (``samples.png`` in the run folder) of round ``round_``'s generator:
        Algorithm 1's posterior drawn exactly where the task enumerates its space (its last regions
        may leave p0 too little mass to reach by rejection), else by rejection from p0 up to
        ``ACCEPT_CAP`` x the draws wanted; other methods' generators sampled. None where the task
        draws no grid or nothing was accepted. Never NREs."""
        import numpy as np

        from banel_ray.actors.sampler import Sampler
        from banel_ray.actors.trainers import exact_posterior_rate
        from banel_ray.algorithms import banel as alg
        from banel_ray.algorithms import exact_posterior
        from banel_ray.core import seeds
        from banel_ray.models import load_model, set_threads

        n = self.task.grid_samples
        if n <= 0:
            return None
        set_threads(self.threads)
        rc = self.rc
        regions = self.regions(round_)
        drawn: list = []
        state = self._posterior.get(round_)  # computed() of this round has the posterior already
        if regions is not None and state is None:
            prior = load_model(self.prior_dir)
            _, state = exact_posterior_rate(
                self.task,
                prior,
                regions,
                bool(self.cfg.get("score.length_norm", True)),
                excluded=self._excluded_codes(round_),
            )
        if state is not None:
            logp0, mask, _ = state
            idx = exact_posterior.draw_codes(logp0, mask, n, np.random.default_rng(seeds.GRID))
            drawn = [tuple(x) for x in self.task.code_completions(idx)]
        else:
            sampler = Sampler(
                "torch",
                self.prior_dir,
                seed=seeds.sampler_actor(rc.seed, 0),
                threads=self.threads,
                task_name=rc.task,
                task_options=rc.task_options,
            )
            found = self.generator(round_)
            if found is not None:
                sampler.load_weights(*found)
            keep = self.accept_filter(round_)
            for i in range(alg.ACCEPT_CAP if keep else 1):
                got = sampler.sample(n, seeds.per_sampler(seeds.draw(rc.seed, seeds.GRID), i)).samples
                drawn += keep(got) if keep else got
                if len(drawn) >= n:
                    break
            drawn = [tuple(x) for x in drawn[:n]]
        if not drawn:
            return None
        return self.task.save_sample_grid(self.folder.path / "samples.png", drawn)


def evaluate_round(
    run_dir: Path, round_: int, samples: int, threads: int = 1, batch: int = 25_000, progress=None
) -> dict:
    """Fresh-sample estimate of round ``round_`` of the run in ``run_dir`` (``RunEvaluation.sampled``)."""
    return RunEvaluation(run_dir, threads=threads).sampled(round_, samples, batch, progress)


def main(argv=None) -> int:
    p = Parser(prog="python -m banel_ray.evaluate", description=__doc__.split("\n\n")[0].strip(), epilog=EPILOG)
    p.add_argument("run_dir", help="a run folder (config.json and checkpoints/)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--round", type=int, help="the round to evaluate (0: the prior; default: the last)")
    g.add_argument("--all", action="store_true", help="every round with a kept checkpoint, and the prior")
    p.add_argument(
        "--samples",
        type=int,
        default=0,
        help="fresh draws (default: the task's final_samples; for a task that computes its rates, the estimator's "
        "draws, default the task's own)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--grid",
        action="store_true",
        help="also write RUN_DIR/samples.png for the round (a task with a sample grid; Algorithm 1 drawn "
        "exactly from its posterior where the task enumerates its space)",
    )
    p.add_argument(
        "--trust-run-folder",
        action="store_true",
        help="use the code and the oracle endpoints the folder's config names (run folders are data)",
    )
    a = p.parse_args(argv)
    from banel_ray import trust

    rd = RunFolder(a.run_dir)
    try:
        cfg = rd.config(require=("task",))
    except RunFolderError as e:
        return fail(str(e))
    why = None if a.trust_run_folder else trust.refusal(cfg, str(rd.config_path), sends_data=True)
    if why:
        return fail(why)
    ev = RunEvaluation(rd.path, cfg=cfg, threads=a.threads)
    computed = ev.computes_rates
    n = a.samples or (None if computed else ev.task.final_samples)
    if not computed and n <= 0:
        return fail("--samples must be > 0 (the task sets no final sample size)")
    try:
        rounds = [0, *ev.store.rounds()] if a.all else [ev.final_round() if a.round is None else a.round]
        for r in rounds:
            if computed:
                est = ev.computed(r, n)
            else:
                est = ev.sampled(r, n, progress=lambda s: print(s, flush=True))
            e = Estimate.from_dict(est)
            what = f"{e.k}/{e.n}" if e.kind == SAMPLED else f"{e.method}, {'no' if e.n is None else e.n} draws"
            print(
                f"round {r}: {e.rate:.3e} [{e.lo:.3e}, {e.hi:.3e}] ({what}), written to {rd.eval_path(r)}",
                flush=True,
            )
        if a.grid:
            path = ev.sample_grid(rounds[-1])
            print(f"sample grid: {path or 'none (the task draws no grid, or no draw was accepted)'}", flush=True)
    except FileNotFoundError as e:
        return fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
