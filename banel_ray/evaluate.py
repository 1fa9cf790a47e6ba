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

import json
import sys
import time
from pathlib import Path

from banel_ray.cli import Parser, fail

EPILOG = """examples:
  python -m banel_ray.evaluate runs/addition_attack-20261201-120000              # final round, task's size
  python -m banel_ray.evaluate RUN_DIR --round 15 --samples 200000
  python -m banel_ray.evaluate RUN_DIR --all                                    # every kept checkpoint
"""


def sequential_regions(run_dir: Path, round_: int, cfg: dict) -> list | None:
    """Algorithm 1's regions ((p_phi weights, log tau), one per round) at round ``round_``'s
    checkpoint; None: not a sequential run, or round 0."""
    from banel_ray.core import checkpoint as ckpt
    from banel_ray.core.checkpoint import CheckpointStore

    if round_ <= 0 or cfg.get("method") != "banel_sequential" and cfg.get("mode") != "sequential":
        return None
    store = CheckpointStore(Path(run_dir) / "checkpoints")
    d = store.shard("negative", store.path(round_))
    if d is None:
        raise FileNotFoundError(f"round {round_} of {run_dir} has no negative shard (Algorithm 1's regions)")
    taus = json.loads((d / "negative.json").read_text())["region_log_taus"]
    return [(ckpt.load_tensors(d / f"region_{i:04d}.safetensors"), float(t)) for i, t in enumerate(taus)]


def sequential_filter(run_dir: Path, round_: int, cfg: dict, task, prior_dir):
    """Algorithm 1's generator is p0 restricted to what no past region rejects: a function that keeps
    the samples of a batch every region of round ``round_``'s checkpoint accepts (None: not a
    sequential run, or round 0). Without it a fresh evaluation would score p0 itself."""
    from banel_ray.actors.trainers import regions_accept
    from banel_ray.models import load_model

    regions = sequential_regions(run_dir, round_, cfg)
    if regions is None:
        return None
    prior = load_model(prior_dir)
    norm = bool(cfg.get("score.length_norm", True))

    def keep(samples: list) -> list:
        mask = regions_accept(prior, regions, [(task.prompt, s) for s in samples], task.pad_id, norm)
        return [s for s, k in zip(samples, mask) if k]

    return keep


def generator_at(run_dir: Path, cfg: dict, round_: int) -> tuple[int, dict] | None:
    """(version, weights) of round ``round_``'s generator; None for round 0 or a kept checkpoint
    without generator weights (a method that never updates it: the prior)."""
    from banel_ray import config as C
    from banel_ray.core.checkpoint import CheckpointStore

    if round_ <= 0:
        return None
    rc = C.sections(dict(C.defaults(), **cfg))
    store = CheckpointStore(rc.checkpoint.dir or Path(run_dir) / "checkpoints")
    ck = store.path(round_)
    if not (ck / "manifest.json").exists():
        raise FileNotFoundError(f"no checkpoint of round {round_} in {store.root} (kept: {store.rounds()})")
    return store.generator(ck)


def evaluate_round(
    run_dir: Path, round_: int, samples: int, threads: int = 1, batch: int = 25_000, progress=None
) -> dict:
    """Fresh-sample estimate of round ``round_``'s generator (round 0: the prior); written to
    ``evals/round_NNNN.json`` and returned."""
    from banel_ray import tasks
    from banel_ray.actors.evaluator import Evaluator
    from banel_ray.actors.sampler import Sampler
    from banel_ray.algorithms import banel as alg
    from banel_ray.algorithms.stats import Estimate
    from banel_ray.core import seeds
    from banel_ray.records import SampleBatch

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    task = tasks.build(cfg["task"], cfg["task_options"])
    prior = task.prepare(progress=lambda s: None)
    topts = dict(task_name=cfg["task"], task_options=cfg["task_options"])
    sampler = Sampler("torch", prior, seed=seeds.sampler_actor(cfg["seed"], 0), threads=threads, **topts)
    found = generator_at(run_dir, cfg, round_)
    version = sampler.load_weights(*found) if found is not None else 0
    evaluator = Evaluator(threads=threads, **topts)
    keep = sequential_filter(run_dir, round_, cfg, task, prior)
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
        b = sampler.sample(want, seeds.per_sampler(seeds.draw(cfg["seed"], tag), i))
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
    est = Estimate(k, n).as_dict()
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
    out = run_dir / "evals" / f"round_{round_:04d}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(est, indent=2))
    return est


def computes_rates(task) -> bool:
    from banel_ray.tasks.base import Task

    return type(task).success_rate is not Task.success_rate


def evaluate_computed(run_dir: Path, round_: int, samples: int | None, threads: int = 1) -> dict:
    """The task's computed rate of round ``round_``'s generator (round 0: the prior), with
    ``samples`` estimator draws; written to ``evals/round_NNNN.json`` and returned."""
    from banel_ray import tasks
    from banel_ray.models import load_model, load_state, set_threads

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    task = tasks.build(cfg["task"], cfg["task_options"])
    set_threads(threads)
    model, version = load_model(task.prepare(progress=lambda s: None)), 0
    found = generator_at(run_dir, cfg, round_)
    if found is not None:  # else the generator never changed: the prior
        version, weights = found
        load_state(model, weights)
    t0 = time.perf_counter()
    regions = sequential_regions(run_dir, round_, cfg)
    exact = None
    if regions is not None:  # Algorithm 1: the posterior is p0 restricted by the regions, not p0
        from banel_ray.actors.trainers import exact_posterior_rate

        exact, _ = exact_posterior_rate(task, model, regions, bool(cfg.get("score.length_norm", True)))
    est = dict(exact or task.success_rate(model, samples=samples), round=round_, version=version, fresh=True)
    if regions is not None and exact is None:  # a computed rate that cannot see the regions
        est["warning"] = "Algorithm 1 run: this is p0's computed rate, not the posterior's"
    est["seconds"] = time.perf_counter() - t0
    out = run_dir / "evals" / f"round_{round_:04d}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(est, indent=2, default=float))
    return est


def final_round(run_dir: Path) -> int:
    from banel_ray.core.checkpoint import CheckpointStore

    st = CheckpointStore(Path(run_dir) / "checkpoints").runner_state()
    if not st:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint")
    return int(st["round"])


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
        "--trust-run-folder",
        action="store_true",
        help="use the code and the oracle endpoints the folder's config names (run folders are data)",
    )
    a = p.parse_args(argv)
    rd = Path(a.run_dir)
    if not (rd / "config.json").is_file():
        return fail(f"{rd} is not a run folder (no config.json)")
    from banel_ray import tasks, trust
    from banel_ray.core.checkpoint import CheckpointStore

    try:
        cfg = json.loads((rd / "config.json").read_text())
    except (OSError, ValueError) as e:
        return fail(f"{rd / 'config.json'} is damaged ({type(e).__name__})")
    if not isinstance(cfg, dict) or "task" not in cfg:
        return fail(f"{rd / 'config.json'} is damaged (not a run's config)")
    why = None if a.trust_run_folder else trust.refusal(cfg, str(rd / "config.json"), sends_data=True)
    if why:
        return fail(why)
    task = tasks.build(cfg["task"], cfg["task_options"])
    computed = computes_rates(task)
    n = a.samples or (None if computed else task.final_samples)
    if not computed and n <= 0:
        return fail("--samples must be > 0 (the task sets no final sample size)")
    try:
        if a.all:
            rounds = [0, *CheckpointStore(rd / "checkpoints").rounds()]
        else:
            rounds = [final_round(rd) if a.round is None else a.round]
        for r in rounds:
            if computed:
                est = evaluate_computed(rd, r, n, a.threads)
                what = f"{est['method']}, {est.get('n', 'no')} draws"
            else:
                est = evaluate_round(rd, r, n, a.threads, progress=lambda s: print(s, flush=True))
                what = f"{est['k']}/{est['n']}"
            print(
                f"round {r}: {est['rate']:.3e} [{est['lo']:.3e}, {est['hi']:.3e}] ({what}), "
                f"written to {rd / 'evals' / f'round_{r:04d}.json'}",
                flush=True,
            )
    except FileNotFoundError as e:
        return fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
