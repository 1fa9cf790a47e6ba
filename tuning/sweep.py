"""``python -m tuning.sweep``: BaNEL runs as Ray Tune trials, with NREs as the progress axis.

A sweep file (YAML) names a BaNEL config, overrides, a search space over BaNEL keys, seeds, and a
scheduler (fifo, asha: compare trials at equal NRE spend; pbt: schedule search by exploiting and
perturbing trials between rounds). ``--restore EXPERIMENT_DIR`` continues an interrupted sweep.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml

from banel_ray import config as C
from banel_ray.cli import Parser, fail
from banel_ray.core import remote
from tuning.trainable import TUNE_ONLY

SWEEP_KEYS = {
    "base_config": "BaNEL YAML the trials start from (default banel_ray/configs/quick.yaml)",
    "set": "mapping of BaNEL keys applied to every trial",
    "search": "BaNEL key -> list (grid) or {choice|uniform|loguniform: [...]}",
    "seeds": "list of seeds; every point of the search space runs once per seed",
    "num_samples": "draws of the random part of the search space (default 1)",
    "scheduler": "fifo | asha | pbt",
    "metric": "result to optimise (default success; any signal name works, e.g. a positive-free one)",
    "mode": "max | min",
    "asha": "{grace_nres, reduction_factor}",
    "pbt": "{interval_nres, mutations: {key: list}}",
    "stop_rules": "names of banel_ray.algorithms.stop_rules.DEFAULT_RULES that stop a trial live",
    "max_concurrent_trials": "trials running at once (0: as many as the resources allow)",
    "trial_cpus": "CPUs reserved for a trial's own driver process (default 0.25)",
    "ray_num_cpus": "CPUs of the local Ray instance (0: all)",
    "name": "experiment name (default: sweep-<time>)",
    "storage": "folder or URI (s3://bucket/x, gs://bucket/x) for Tune experiments (default: sweeps/)",
}


def _search_value(key: str, spec):
    """A Tune search-space object for one BaNEL key, every literal value checked by config.py."""
    from ray import tune

    if isinstance(spec, list):
        return tune.grid_search([C.coerce(key, v) for v in spec])
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, args),) = spec.items()
        if kind == "choice" and isinstance(args, list):
            return tune.choice([C.coerce(key, v) for v in args])
        if kind in ("uniform", "loguniform") and isinstance(args, list) and len(args) == 2:
            lo, hi = (C.coerce(key, v) for v in args)
            return getattr(tune, kind)(lo, hi)
    return C.coerce(key, spec)  # a fixed value


def load_sweep(path: str | None, sets: list[str]) -> dict:
    """The sweep file plus ``--set`` overrides (BaNEL keys), checked; ConfigError on bad input."""
    sw: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise C.ConfigError(f"sweep file not found: {path}")
        sw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(sw, dict):
            raise C.ConfigError(f"sweep file {path} must hold a mapping")
    for k in sw:
        if k not in SWEEP_KEYS:
            raise C.ConfigError(f"unknown sweep key '{k}'; allowed: {', '.join(SWEEP_KEYS)}")
    base_file = sw.get("base_config") or str(Path(C.__file__).parent / "configs" / "quick.yaml")
    base = C.load(base_file)
    layers = list(C._flatten(sw.get("set") or {}).items()) + [C.parse_set(x) for x in sets]
    for k, v in layers:
        C.override(base, k, v)
    sw["base"] = C.validate(dict(base, run_dir=""))
    if sw.get("scheduler", "fifo") not in ("fifo", "asha", "pbt"):
        raise C.ConfigError(f"'scheduler' must be one of fifo, asha, pbt, got {sw['scheduler']!r}")
    if sw.get("mode", "max") not in ("max", "min"):
        raise C.ConfigError(f"'mode' must be max or min, got {sw['mode']!r}")
    from banel_ray.algorithms.stop_rules import rule_by_name

    for name in sw.get("stop_rules") or []:
        try:
            rule_by_name(name)
        except KeyError as e:
            raise C.ConfigError(str(e.args[0])) from None
    search = sw.get("search") or {}
    if not isinstance(search, dict):
        raise C.ConfigError("'search' must map BaNEL keys to lists or {choice|uniform|loguniform: [...]}")
    sw["param_space"] = {k: _search_value(k, v) for k, v in search.items()}
    seeds = sw.get("seeds") or [sw["base"]["seed"]]
    sw["param_space"]["seed"] = _search_value("seed", list(seeds))
    for k, vs in ((sw.get("pbt") or {}).get("mutations") or {}).items():
        [C.coerce(k, v) for v in (vs if isinstance(vs, list) else [vs])]
    return sw


def build_tuner(sw: dict, restore: str | None = None):
    """The Tuner of a sweep (fresh, or restored from an interrupted experiment folder)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    from banel_ray.algorithms.stop_rules import rule_by_name
    from tuning.stoppers import RuleStopper
    from tuning.trainable import banel_trial, trial_resources

    storage_path, name, exp = experiment(sw, restore)
    trainable = tune.with_resources(banel_trial, trial_resources)
    if restore:  # the tracking callbacks come back from tuner.pkl; the environment they read is set again
        tracking_env(sw["base"])
        return tune.Tuner.restore(str(exp), trainable=trainable, resume_unfinished=True, resume_errored=True), exp
    metric, mode = sw.get("metric", "success"), sw.get("mode", "max")
    kind = sw.get("scheduler", "fifo")
    budget = sw["base"]["budget"]
    if kind == "asha":
        a = sw.get("asha") or {}
        # max_t past the budget: a trial that spends its budget ends itself (and writes its summary)
        sched = ASHAScheduler(
            time_attr="nres",
            max_t=budget + sw["base"]["samples_per_round"],
            grace_period=a.get("grace_nres", 2 * sw["base"]["samples_per_round"]),
            reduction_factor=a.get("reduction_factor", 2),
        )
    elif kind == "pbt":
        p = sw.get("pbt") or {}
        muts = {k: [C.coerce(k, v) for v in vs] for k, vs in (p.get("mutations") or {}).items()}
        sched = PopulationBasedTraining(
            time_attr="nres",
            perturbation_interval=p.get("interval_nres", 2 * sw["base"]["samples_per_round"]),
            hyperparam_mutations=muts,
        )
    else:
        sched = FIFOScheduler()
    rules = [rule_by_name(n) for n in sw.get("stop_rules") or []]
    param_space = dict(
        sw["param_space"],
        base=trial_base(sw),
        runs_root=_under(exp, "runs"),
        trial_cpus=float(sw.get("trial_cpus", 0.25)),
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            scheduler=sched,
            num_samples=int(sw.get("num_samples", 1)),
            max_concurrent_trials=int(sw.get("max_concurrent_trials", 0)) or None,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            stop=RuleStopper(rules) if rules else None,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=tracking_callbacks(sw, exp, name) or None,
            verbose=1,
        ),
    )
    return tuner, exp


# backends that Tune's own logger callbacks take over for a sweep (TensorBoard stays per trial)
TUNE_TRACKED = ("mlflow", "wandb")


def trial_base(sw: dict) -> dict:
    """The BaNEL config every trial starts from: the sweep's, less the backends that Tune's
    callbacks log (``tracking_callbacks``), so that each round is tracked once, in the sweep's store."""
    names = sw["base"]["logging.backends"]
    return dict(sw["base"], **{"logging.backends": [b for b in names if b not in TUNE_TRACKED]})


def tracking_callbacks(sw: dict, exp: Path | str, name: str) -> list:
    """Ray Tune's own loggers for the sweep's ``logging.backends``: one tracked run per trial (the
    trial's config, every reported round at step = training iteration), all trials of the sweep in
    one MLflow experiment (``logging.mlflow_experiment``; store ``logging.mlflow_uri``, by default a
    local file store ``<experiment>/mlruns``, or ``./mlruns`` beside a remote experiment) or one W&B
    project (``logging.wandb_project``, grouped by the experiment's name; offline unless
    ``logging.wandb_mode`` or ``WANDB_MODE`` says otherwise, each trial's ``wandb/`` in its Tune
    trial folder)."""
    from banel_ray.report import tracking

    base = sw["base"]
    names = base["logging.backends"]
    out = []
    if "mlflow" in names:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = (
            base["logging.mlflow_uri"]
            or (Path("mlruns") if isinstance(exp, str) else Path(exp) / "mlruns").resolve().as_uri()
        )
        out.append(
            MLflowLoggerCallback(
                tracking_uri=uri, experiment_name=base["logging.mlflow_experiment"], tags={"sweep": name}
            )
        )
    if "wandb" in names:
        from ray.air.integrations.wandb import WandbLoggerCallback

        mode = tracking.wandb_mode(base)
        out.append(WandbLoggerCallback(project=base["logging.wandb_project"], group=name, mode=mode))
    tracking_env(base)
    return out


def tracking_env(base: dict) -> None:
    """What the tracking callbacks read from this process's environment: MLflow 3 opens a file
    store only with ``MLFLOW_ALLOW_FILE_STORE``; Ray's W&B callback asks for an API key unless
    ``WANDB_MODE`` is offline or disabled."""
    from banel_ray.report import tracking

    names, uri = base["logging.backends"], base["logging.mlflow_uri"]
    if "mlflow" in names and (not uri or uri.startswith("file:")):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if "wandb" in names and tracking.wandb_mode(base) in ("offline", "disabled"):
        os.environ["WANDB_MODE"] = tracking.wandb_mode(base)


def experiment(sw: dict, restore: str | None = None) -> tuple[str, str, Path | str]:
    """(Tune's storage_path, experiment name, experiment folder). A local folder is made absolute
    (Tune needs that); a URI (``s3://``, ``gs://``) passes through unchanged: Ray Tune writes it
    with pyarrow.fs, and multi-node sweeps need such shared storage. ``file://`` is a local folder."""
    if restore and remote.is_remote(restore):
        base, sep, query = restore.partition("?")
        parent, name = base.rstrip("/").rsplit("/", 1)
        return parent + sep + query, name, restore
    if restore:
        exp = remote.local_path(restore).resolve()
        return str(exp.parent), exp.name, exp
    storage = str(sw.get("storage") or "sweeps")
    name = sw.get("name") or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if remote.is_remote(storage):
        return storage, name, remote.join(storage, name)
    root = remote.local_path(storage).resolve()
    return str(root), name, root / name


def _under(exp: Path | str, name: str) -> str:
    return remote.join(exp, name) if isinstance(exp, str) else str(exp / name)


def storage_problem(sw: dict, restore: str | None) -> str | None:
    """One line for a remote storage or --restore URI that cannot be used, before Ray starts."""
    where = restore or str(sw.get("storage") or "")
    if not remote.is_uri(where):
        if restore and not (Path(restore) / "tuner.pkl").exists():
            return f"--restore: {restore} is not a Tune experiment folder (no tuner.pkl)"
        return _write_problem(restore or where or "sweeps")
    if not remote.is_remote(where):  # file://
        return storage_problem(sw, str(remote.local_path(restore))) if restore else _write_problem(where)
    msg = remote.problem(where)
    if msg:
        return f"{'--restore' if restore else 'storage'}: {msg}"
    try:
        if restore and not remote.exists(restore, "tuner.pkl"):
            return f"--restore: {restore} is not a Tune experiment folder (no tuner.pkl)"
    except remote.RemoteError as e:
        return f"--restore: {e}"
    return None


def _write_problem(folder: str) -> str | None:
    """A local experiment folder (or the storage folder above it) must take files: checked for
    real (made, written, removed) before Ray starts, not by Tune after."""
    from banel_ray import preflight

    why = preflight.write_problem(remote.local_path(folder))
    return f"storage {folder} cannot be written ({why}); allowed: a writable folder" if why else None


def init_ray(num_cpus: int = 0) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # rounds without an evaluation (eval.every > 1) report no `success`: that is not an error
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or None, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)


def main(argv=None) -> int:
    p = Parser(
        prog="python -m tuning.sweep",
        description=__doc__.split("\n\n")[0],
        epilog="sweep file keys:\n" + "\n".join(f"  {k:<22} {v}" for k, v in SWEEP_KEYS.items()),
    )
    p.add_argument("--config", metavar="SWEEP_YAML", help="sweep file (default: tuning/configs/quick_sweep.yaml)")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a BaNEL key for every trial (e.g. --set rounds=4)",
    )
    p.add_argument("--name", help="experiment name (folder under storage)")
    p.add_argument("--storage", help="folder or URI (s3://, gs://) for Tune experiments (default: sweeps/)")
    p.add_argument("--restore", metavar="EXPERIMENT_DIR", help="continue an interrupted sweep")
    p.add_argument("--dry-run", action="store_true", help="check the sweep file and print the trials' space")
    a = p.parse_args(argv)
    default = Path(__file__).parent / "configs" / "quick_sweep.yaml"
    try:
        sw = load_sweep(a.config or str(default), a.set)
    except C.ConfigError as e:
        return fail(str(e))
    for k in ("name", "storage"):
        if getattr(a, k):
            sw[k] = getattr(a, k)
    msg = storage_problem(sw, a.restore)  # before Ray starts: one line, exit 2
    if msg:
        return fail(msg)
    if a.dry_run:
        print(
            yaml.safe_dump(
                {"search": {k: str(v) for k, v in sw["param_space"].items()}, "scheduler": sw.get("scheduler", "fifo")},
                sort_keys=True,
            ),
            end="",
        )
        return 0
    init_ray(int(sw.get("ray_num_cpus", 0)))
    tuner, exp = build_tuner(sw, a.restore)
    print(
        f"[tuning] experiment {exp} (after an interruption: python -m tuning.sweep --config "
        f"{a.config or default} --restore {exp})",
        flush=True,
    )
    grid = tuner.fit()
    print(f"[tuning] {len(grid)} trials, {grid.num_errors} errored; results in {exp}", flush=True)
    try:
        best = grid.get_best_result(scope="all")
        print(
            f"[tuning] best trial by {sw.get('metric', 'success')} (any round): "
            f"{ {k: v for k, v in best.config.items() if k not in TUNE_ONLY} }",
            flush=True,
        )
    except RuntimeError:  # no trial reported the metric
        pass
    return 0 if grid.num_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
