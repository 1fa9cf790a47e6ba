"""One run from a validated config: write the config, prepare the task, start the runtime (Ray or
in process), build the Runner, run it, stop what it started, print the closing table. What
``python -m banel_ray.run``, ``compare`` (through the CLI) and Tune trials call."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from banel_ray import config as C
from banel_ray.core.estimate import Estimate
from banel_ray.core.run_folder import RunFolder


def log(msg: str) -> None:
    print(msg, flush=True)


def init_ray(cfg: dict) -> bool:
    """Join the configured cluster, or start a private local instance. Returns whether this call
    started an instance (the run then stops it).

    The local instance listens on loopback only: Ray replaces a node address of 127.0.0.1 with the
    machine's network address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its single-machine
    mode, ``ray._private.services.get_node_ip_address``), and its GCS, raylet, workers and agents
    bind to that node address. The variable is set just before Ray starts, so the processes it
    spawns inherit it, and put back when the run stops it (``tests/integration/test_security.py``
    checks the listeners with ``ss``)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rc = C.sections(cfg)
    addr = rc.ray.address or os.environ.get("RAY_ADDRESS", "")
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return False
    if addr:
        ray.init(address=addr, log_to_driver=False)
        return False
    _LOOPBACK[:] = [os.environ.get(LOOPBACK_VAR), ray_constants.ENABLE_RAY_CLUSTER]  # put back by _stop_ray
    os.environ[LOOPBACK_VAR] = "0"  # for the processes Ray starts
    ray_constants.ENABLE_RAY_CLUSTER = False  # for this one (Ray read the variable when it was imported)
    ray.init(  # a private local instance, bound to loopback, no dashboard
        num_cpus=rc.ray.num_cpus or None,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    return True


LOOPBACK_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOOPBACK: list = []  # what init_ray changed, so a later ray.init in this process is not affected


def cpus_needed(cfg: dict) -> float:
    """CPUs the roles reserve: samplers, the method's trainers, the reward service, the evaluator."""
    from banel_ray.methods import get

    rc = C.sections(cfg)
    trainers = len(get(rc.method).trainer_roles)
    return (
        rc.sampler.num_actors * rc.sampler.num_cpus
        + trainers * rc.trainer.num_cpus
        + rc.oracle.num_cpus
        + rc.eval.num_cpus
    )


def _cpu_problem(cfg: dict, need: float, have: float) -> str | None:
    """One line when a local Ray instance of ``have`` CPUs (0: not known yet) cannot hold the
    actors; a cluster (``ray.address``, ``RAY_ADDRESS``) may grow, and is not asked."""
    rc = C.sections(cfg)
    if rc.runtime == "local" or not have or rc.ray.address or os.environ.get("RAY_ADDRESS"):
        return None
    if need > have:
        return (
            f"the actors need {need:g} CPUs but the local Ray instance has {have:g}; "
            f"lower sampler.num_actors or the *.num_cpus keys"
        )
    return None


def run(cfg: dict, run_dir: Path | str, resume: bool = False, on_round=None) -> dict:
    """Run (or resume) a method. ``on_round(metrics, run_dir)`` is called after each round's
    checkpoint (e.g. a Tune trial reports there); it may return True to stop after that round.

    A remote ``run_dir`` (``s3://``, ``gs://``; or ``cfg["run_dir"]`` remote and ``run_dir`` its
    staging folder, as the command line passes it) runs in the local staging folder and is copied
    to the URI after every checkpoint and at the end (``runtime/storage.py``)."""
    import yaml

    from banel_ray import methods, preflight, report, tasks
    from banel_ray.core import remote, runlock
    from banel_ray.runtime import storage
    from banel_ray.runtime.actors import LocalRuntime, RayRuntime
    from banel_ray.runtime.runner import Runner

    msg = preflight.package_problem(cfg)  # Ray or vLLM missing: before any import of them or any write
    if msg:
        raise C.ConfigError(msg)
    # every module the driver needs, before Ray starts: under `ray job submit` the job's files are
    # unpacked per node, and on a test cluster of two nodes on one machine into one shared folder,
    # which a second node may be rewriting while a late import reads it
    methods.get(cfg["method"])
    # transformers loads its model modules lazily, and the first model built imports torch._dynamo,
    # which reads the working directory: resolve them now, not after Ray has started
    import torch._dynamo  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    run_dir, cfg = _staged(cfg, run_dir, resume)
    rc = C.sections(cfg)
    why = preflight.write_problem(run_dir)  # before the task's models and Ray: nothing to stop yet
    if why:
        raise C.ConfigError(f"run_dir {run_dir} cannot be written ({why}); allowed: a writable folder")
    if resume:  # before anything starts: a folder whose ledger lost what was paid would pay again
        msg = preflight.run_dir_problem(run_dir, True, rc.checkpoint.dir or None, rc.budget)
        if msg:
            raise C.ConfigError(msg)
    if rc.runtime != "local" and rc.ray.num_cpus:  # the local instance this run starts: its size is known
        import ray

        msg = None if ray.is_initialized() else _cpu_problem(cfg, cpus_needed(cfg), rc.ray.num_cpus)
        if msg:
            raise C.ConfigError(msg)
    task = tasks.build(rc.task, rc.task_options)
    log(f"[banel_ray] task {rc.task}: preparing models (cached after the first run)")
    prior_dir = task.prepare(progress=log)
    started = False
    if rc.runtime == "local":
        rt = LocalRuntime()
        log(f"[banel_ray] run folder {run_dir} | in process (no Ray) | sampler backend {rc.sampler.backend}")
    else:
        import ray

        handler = signal.getsignal(signal.SIGTERM)
        started = init_ray(cfg)
        if callable(handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)  # ray.init installs one that aborts: keep the caller's
        have = ray.cluster_resources().get("CPU", 0)
        log(
            f"[banel_ray] run folder {run_dir} | Ray {ray.__version__} with {int(have)} CPUs | "
            f"sampler backend {rc.sampler.backend}"
        )
        msg = _cpu_problem(cfg, cpus_needed(cfg), have)  # ray.num_cpus 0 (all): known only now
        if msg:
            _stop_ray(started)
            raise C.ConfigError(msg)
        rt = RayRuntime()
    lock = contextlib.ExitStack()
    folder = RunFolder(run_dir)
    try:  # the first write into the run folder: after every check
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.enter_context(runlock.held(run_dir))  # one process per run folder, until this run ends
        folder.write_config(cfg, yaml.safe_dump(C.nest(cfg), sort_keys=True))  # config.json: what --resume reads
    except (OSError, C.ConfigError) as e:
        lock.close()
        _stop_ray(started)
        if isinstance(e, C.ConfigError):
            raise
        raise C.ConfigError(
            f"run_dir {run_dir} cannot be written ({e.strerror or e}); allowed: a writable folder"
        ) from None
    push = storage.pusher(run_dir, rc.run_dir if remote.is_remote(rc.run_dir) else None, log)

    def checkpointed(m: dict, rd: Path) -> bool:
        push()  # the ledger's copy first, then the checkpoint it covers (core/remote.py)
        return bool(on_round(m, rd)) if on_round is not None else False

    with lock:
        try:
            try:
                runner = Runner.build(cfg, run_dir, rt, prior_dir, log=log)
                try:
                    summary = runner.run(resume=resume, on_round=checkpointed)
                finally:
                    runner.shutdown()
            finally:
                _stop_ray(started)  # the run stops what it started, and only that
            if fresh_finals(cfg, folder, task, summary, prior_dir):
                from banel_ray.report import tracking

                tracking.log_summary(run_dir, cfg, summary)  # the fresh evaluation, into the same MLflow run
        except BaseException:
            push()  # a stopped run's copy is as new as it can be (a failure is logged, not raised)
            raise
        push(final=True)
        log(report.closing_table(summary))
    return summary


def _staged(cfg: dict, run_dir, resume: bool) -> tuple[Path, dict]:
    """(local run folder, config): a URI given as ``run_dir`` is checked and staged here (the
    Python entry point; the command line did both already and passes the staging folder)."""
    from banel_ray.core import remote
    from banel_ray.runtime import storage

    if not remote.is_remote(run_dir):
        return remote.local_path(run_dir), cfg
    uri = str(run_dir)
    try:
        msg = storage.problem(uri, resume, cfg["checkpoint.dir"])
        if msg:
            raise C.ConfigError(msg)
        return storage.stage(uri, resume, log), dict(cfg, run_dir=uri)
    except remote.RemoteError as e:
        raise C.ConfigError(f"run_dir {e}") from None


def _stop_ray(started: bool) -> None:
    if started:
        import ray
        from ray._private import ray_constants

        ray.shutdown()
        if _LOOPBACK:
            env, ray_constants.ENABLE_RAY_CLUSTER = _LOOPBACK
            if env is None:
                os.environ.pop(LOOPBACK_VAR, None)
            else:
                os.environ[LOOPBACK_VAR] = env
            _LOOPBACK.clear()


def fresh_finals(cfg: dict, folder: RunFolder, task, summary: dict, prior_dir: str) -> bool:
    """The headline numbers: the final generator (and the round a stop rule picked) on a fresh
    sample, beside the prior's rate on one (its shipped reference measurement when the task has
    one for this prior, else fresh draws here). Added to ``summary`` and ``summary.json``;
    returns whether it added any. The run's own config, task and prepared prior are used: nothing
    is read from the folder's config.json or prepared again."""
    from banel_ray.algorithms import stats
    from banel_ray.evaluate import RunEvaluation
    from banel_ray.report import metrics as K

    final, base = Estimate.read(summary.get("final")), Estimate.read(summary.get("base"))
    if summary.get("rounds") and final and final.computed and base and base.computed:
        # the task computes its rates (exact, or importance sampled on draws tied to the model's
        # weights, which no training step saw): those are the headline, no sampled draws needed
        summary[K.FINAL_FRESH] = dict(summary["final"], fresh=True, round=summary["rounds"])
        summary[K.BASE_FRESH] = dict(summary["base"], fresh=True, round=0)
        summary["improvement_final_fresh"] = stats.improvement_factor(final.rate, base.rate)
        folder.write_summary(summary)
        return True
    rc = C.sections(cfg)
    n = task.final_samples if rc.eval.final_samples < 0 else rc.eval.final_samples
    if n <= 0 or not summary.get("rounds"):
        return False
    log(f"[banel_ray] fresh-sample evaluation of the final generator ({n:,} draws; not NREs)")
    t = time.perf_counter()
    ev = RunEvaluation(folder.path, cfg=cfg, task=task, prior_dir=prior_dir, threads=rc.trainer.threads)
    fin = ev.sampled(summary["rounds"], n)
    base = task.reference_rate() or ev.sampled(0, n)
    summary[K.FINAL_FRESH], summary[K.BASE_FRESH] = fin, base
    summary["improvement_final_fresh"] = stats.improvement_factor(fin["rate"], base["rate"])
    stop = next((m[K.ROUND] for m in folder.metrics() if m.get(K.STOP_FIRED)), None)
    if stop is not None:
        summary["stop_round"] = stop
        summary[K.STOP_FRESH] = fin if stop == summary["rounds"] else ev.sampled(stop, n)
        summary["improvement_stop_fresh"] = stats.improvement_factor(summary[K.STOP_FRESH]["rate"], base["rate"])
    summary["t_fresh_eval"] = time.perf_counter() - t
    summary["wall_s"] += summary["t_fresh_eval"]
    folder.write_summary(summary)
    return True
