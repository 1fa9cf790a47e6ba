"""``python -m banel_ray.run``: run BaNEL rounds on a local Ray instance or a cluster.

With no argument it runs the quick default (the addition attack, about 10-15 minutes on a 2-core
laptop). Under ``ray job submit -- python -m banel_ray.run ...`` it joins that cluster.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from banel_ray import config as C

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

EPILOG = """examples:
  python -m banel_ray.run                                   # quick default (addition attack)
  python -m banel_ray.run --config banel_ray/configs/addition_paper.yaml
  python -m banel_ray.run --set rounds=3 --set filter.factor=4 --set sampler.backend=torch
  python -m banel_ray.run --resume runs/addition_attack-20261127-120000
  ray job submit --working-dir . -- python -m banel_ray.run --set sampler.num_actors=4

configuration keys (--set key=value; YAML files use the same dotted or nested keys):
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage too)
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None):
    p = _Parser(prog="python -m banel_ray.run", description=__doc__.split("\n\n")[0].strip(),
                epilog=EPILOG + C.help_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML config (default: banel_ray/configs/quick.yaml)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override one key, repeatable (e.g. --set filter.factor=4)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run from its last checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_args(argv)


def resolve_config(args) -> tuple[dict, Path]:
    if args.resume:
        rd = Path(args.resume)
        if not (rd / "config.json").is_file():
            raise C.ConfigError(f"--resume: {rd} is not a run folder (no config.json)")
        saved = json.loads((rd / "config.json").read_text())
        cfg = C.defaults()
        cfg.update(saved)
        for item in args.set:
            k, v = C.parse_set(item)
            if k.startswith("task_options."):
                cfg["task_options"] = dict(cfg["task_options"], **{k.split(".", 1)[1]: v})
            else:
                cfg[k] = C._coerce(k, v)
        return C.validate(cfg), rd
    cfg = C.load(args.config or str(CONFIG_DIR / "quick.yaml"), args.set)
    rd = Path(cfg["run_dir"] or f"runs/{Path(cfg['task'].split(':')[-1]).name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg, rd


def init_ray(cfg: dict) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    addr = cfg["ray.address"] or os.environ.get("RAY_ADDRESS", "")
    if ray.is_initialized():
        return
    if addr:
        ray.init(address=addr, log_to_driver=False)
    else:  # a private local instance, bound to loopback, no dashboard
        ray.init(num_cpus=cfg["ray.num_cpus"] or None, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)


def log(msg: str) -> None:
    print(msg, flush=True)


def run(cfg: dict, run_dir: Path, resume: bool = False, on_round=None) -> dict:
    """Run (or resume) BaNEL rounds. ``on_round(metrics, run_dir)`` is called after each round's
    checkpoint (e.g. a Tune trial reports there); it may return True to stop after that round."""
    import ray

    from banel_ray import algorithm as alg
    from banel_ray import report, tasks
    from banel_ray.checkpoint import read_state, save_checkpoint
    from banel_ray.baselines import driver_class

    t_start = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    import yaml
    (run_dir / "config.yaml").write_text(yaml.safe_dump(C.nest(cfg), sort_keys=True))
    task = tasks.build(cfg["task"], cfg["task_options"])
    log(f"[banel_ray] task {cfg['task']}: preparing models (cached after the first run)")
    prior_dir = task.prepare(progress=log)
    init_ray(cfg)
    log(f"[banel_ray] run folder {run_dir} | Ray {ray.__version__} with "
        f"{int(ray.cluster_resources().get('CPU', 0))} CPUs | sampler backend {cfg['sampler.backend']}")
    need = (cfg["sampler.num_actors"] * cfg["sampler.num_cpus"] + 2 * cfg["trainer.num_cpus"]
            + cfg["oracle.num_cpus"])
    have = ray.cluster_resources().get("CPU", 0)
    if need > have and not (cfg["ray.address"] or os.environ.get("RAY_ADDRESS")):
        raise C.ConfigError(f"the actors need {need:g} CPUs but the local Ray instance has {have:g}; "
                            f"lower sampler.num_actors or the *.num_cpus keys")
    drv = driver_class(cfg["method"])(cfg, run_dir, prior_dir, log=log)  # BaNEL or a baseline
    base = None
    state = read_state(run_dir) if resume else None
    done = state["round"] if state else 0
    if resume:  # drop metrics of a round that was cut short: it is redone from its start
        kept = [m for m in report.read_metrics(run_dir) if m["round"] <= done]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m, default=float) + "\n" for m in kept))
    writer = report.MetricsWriter(run_dir)
    if state:  # the actors restored the generator (and regions) from the same checkpoint themselves
        drv.round, drv.version, drv.history = state["round"], state["version"], state["history"]
        drv.seen = {tuple(s) for s in state["seen"]}
        base = state.get("base")
        if drv.version > 0:  # for samplers that fall behind later: the trainer's copy, by ref
            drv.weights_ref = drv.gen.weights.remote()
        log(f"[banel_ray] resumed after round {drv.round} (generator version {drv.version})")
    if resume:  # evaluations in flight when the run died: settled by oracle.pending_rule
        settled = ray.get(drv.oracle.resolve_pending.remote())
        if settled:
            log(f"[banel_ray] settled {settled} evaluations left pending by the killed run")
    if base is None:
        t = time.perf_counter()
        base = drv.evaluate(-1)
        if base:
            log(f"[banel_ray] base success rate {report.fmt_rate(base)} "
                f"({time.perf_counter() - t:.0f}s; not NREs)")
    budget = cfg["budget"]
    ev_every = cfg["eval.every"]
    while drv.round < cfg["rounds"]:
        # stop once a completed round has spent the budget (a round cut short by a crash is
        # redone even if it had already paid: its evaluations come back from the ledger, free)
        if drv.history and drv.history[-1]["nres"] >= budget:
            log(f"[banel_ray] NRE budget {budget} spent: stopping")
            break
        m = drv.run_round()
        last = drv.round >= cfg["rounds"] or m["nres"] >= budget
        if ev_every and (drv.round % ev_every == 0) or last:
            m["eval"] = drv.evaluate(drv.round)
        drv.history.append(m)
        writer.write(m)
        log(report.progress_line(m, budget))
        gen_w = ray.get(drv.gen.weights.remote()) if cfg["mode"] == "distill" and drv.gen is not None else None
        need_neg = drv.neg is not None and (cfg["mode"] == "sequential" or cfg["negative.data"] == "all")
        neg_state = ray.get(drv.neg.get_state.remote()) if need_neg else {}
        regions = neg_state["regions"] if cfg["mode"] == "sequential" else None
        state = dict(drv.state(), base=base)
        if cfg["negative.data"] == "all":
            state["negatives"] = [list(x) for x in neg_state["negatives"]]
        save_checkpoint(run_dir, drv.round, state, gen_w, regions)
        if on_round is not None and on_round(m, run_dir):
            log(f"[banel_ray] stopped by on_round after round {drv.round}")
            break
    writer.close()
    grid = None
    if task.grid_samples:  # the task draws its prior samples beside these from the final generator
        tag = 20_000_000
        refs = drv._accepted(task.grid_samples, tag) if cfg["mode"] == "sequential" else drv._sample(task.grid_samples, tag)
        grid = task.save_sample_grid(run_dir / "samples.png", [tuple(s) for b in ray.get(refs) for s in b["samples"]])
    hist = drv.history
    evals = [(m["round"], m["eval"]) for m in hist if m.get("eval")]
    final = evals[-1][1] if evals else None
    best_round, best = max(evals, key=lambda e: e[1]["rate"]) if evals else (None, None)
    found = [x for m in hist for x in m.get("found", [])]
    final_patterns = (final or {}).get("patterns", [])
    summary = {
        "task": cfg["task"], "method": cfg["method"], "mode": cfg["mode"], "run_dir": str(run_dir), "budget": budget,
        "nres": ray.get(drv.oracle.spent.remote()), "rounds": drv.round,
        "base": base, "final": final, "best": best, "best_round": best_round,
        "improvement_final": alg.improvement_factor(final["rate"], base["rate"]) if final and base else float("nan"),
        "improvement_best": alg.improvement_factor(best["rate"], base["rate"]) if best and base else float("nan"),
        "positives_found": len(found), "found": found[:200], "final_patterns": final_patterns,
        "wall_s": time.time() - t_start,
        "ledger_rows": len(ray.get(drv.oracle.ledger_rows.remote())),
        "sample_grid": str(grid) if grid else None,
    }
    drv.shutdown()
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    report.plot(run_dir, base, hist)
    log(report.closing_table(summary))
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg, run_dir = resolve_config(args)
    except C.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml
        print(yaml.safe_dump(C.nest(cfg), sort_keys=True), end="")
        return 0
    try:
        run(cfg, run_dir, resume=bool(args.resume))
    except C.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: resume with  python -m banel_ray.run --resume {run_dir}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
