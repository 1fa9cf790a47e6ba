"""How BaNEL rounds scale with the number of sampler actors: samples/s and NREs/s with 1, 2 and 4
samplers, with the real addition oracle and with a slow one, as ratios to the 1-sampler case.

    .venv/bin/python benchmarks/scaling.py [--backend torch|vllm] [--actors 1 2 4] [--delay-ms 4]

For each oracle, one ``Runner`` (the real actors: samplers, two trainers, the reward service) is
started with max(--actors) samplers; each row uses the first k of them (weights kept in sync), so
actor start-up is paid once, and one unmeasured round warms everything up. Per row:

- ``samples/s``: ``--samples`` candidates drawn from the k samplers (split evenly, as the driver
  does), wall time to the last one back; median of ``--repeats``.
- ``NRE/s pay``: NREs paid / time of the round's propose+pay step (sample ``samples_per_round``,
  send them to the oracle, wait for the rewards), over ``--rounds`` real distill rounds.
- ``NRE/s round``: NREs paid / whole round time (propose+pay, fit p_phi, score the pool, distil,
  load the new weights into the samplers).

The slow oracle is ``SlowAddition`` below, the addition task with a ``delay_ms`` sleep per sample
in its reward (``task: benchmarks.scaling:SlowAddition``): a stand-in for an expensive external
oracle. Ray gets ``--ray-cpus`` logical CPUs whatever the machine has, so that 4 samplers fit;
more samplers than cores contend for the same cores, which the table shows.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `benchmarks.scaling:SlowAddition` must import in the driver too

from banel_ray.tasks.addition import AdditionAttack  # noqa: E402


class SlowAddition(AdditionAttack):
    """The addition attack with an expensive oracle: ``delay_ms`` of sleep per rewarded sample."""

    name = "addition_attack_slow"

    def __init__(self, delay_ms: float = 4.0, **kw):
        super().__init__(**kw)
        self.delay_ms = float(delay_ms)

    def rewards(self, completions):
        time.sleep(self.delay_ms / 1000.0 * len(completions))
        return super().rewards(completions)


def machine_facts() -> list[str]:
    import ray
    import torch

    load = os.getloadavg()
    facts = [
        f"command: {shlex.join([sys.executable] + sys.argv)}",
        f"python {platform.python_version()}, ray {ray.__version__}, torch {torch.__version__}",
        f"machine: {platform.machine()}, {os.cpu_count()} logical cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start",
        f"cpu: {_cpu_model()}",
    ]
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        facts[-1] += f", {mem:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return facts


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(task: str, task_options: dict, args) -> list[dict]:
    import ray

    from banel_ray import config as C
    from banel_ray.runtime.actors import RayRuntime
    from banel_ray.runtime.runner import Runner
    from banel_ray.tasks import build

    kmax = max(args.actors)
    run_dir = Path(tempfile.mkdtemp(prefix="banel-scaling-"))
    cfg = C.load(
        None,
        [
            f"task={task}",
            f"sampler.backend={args.backend}",
            f"sampler.num_actors={kmax}",
            "sampler.num_cpus=0.5",
            "trainer.num_cpus=0.25",
            "oracle.num_cpus=0.25",
            "budget=1000000",
            f"samples_per_round={args.per_round}",
            f"pool_size={args.pool}",
            "negative.epochs=1",
            "generator.epochs=1",
            "eval.samples=0",
            f"run_dir={run_dir}",
        ],
    )
    cfg["task_options"] = dict(task_options)
    C.validate(cfg)
    prior = build(task, task_options).prepare(progress=lambda s: None)
    t0 = time.perf_counter()
    drv = Runner.build(cfg, run_dir, RayRuntime(), prior, log=lambda s: None)
    everyone = list(drv.samplers.handles)
    ray.get([s.sample.remote(8, 1) for s in everyone])  # start-up and first-call costs, not measured
    drv.run_round()  # one round, not measured: the oracle loads its solver, first fit/distil, weights
    startup = time.perf_counter() - t0
    rows = []
    tag = 0
    try:
        for k in args.actors:
            drv.samplers.handles = everyone[:k]
            if drv.version > 0:  # all samplers serve the newest generator
                ray.get([s.load_weights.remote(drv.version, drv.weights_ref) for s in everyone])
            ray.get(drv.samplers.draw(4 * k, 900_000 + k))  # warm the split path
            times = []
            for _ in range(args.repeats):
                tag += 1
                t = time.perf_counter()
                batches = ray.get(drv.samplers.draw(args.samples, 1_000_000 + tag))
                times.append(time.perf_counter() - t)
                assert sum(len(b.samples) for b in batches) == args.samples
            hist = [drv.run_round() for _ in range(args.rounds)]
            paid = sum(m["paid"] for m in hist)
            rows.append(
                {
                    "k": k,
                    "samples_s": args.samples / statistics.median(times),
                    "nre_pay_s": paid / sum(m["t_propose_pay"] for m in hist),
                    "nre_round_s": paid / sum(m["t_round"] for m in hist),
                    "paid": paid,
                }
            )
    finally:
        drv.samplers = everyone
        drv.shutdown()
    return rows, startup


def table(results: dict, actors: list[int]) -> str:
    head = (
        f"{'oracle':<24}{'samplers':>9}{'samples/s':>11}{'ratio':>7}"
        f"{'NRE/s pay':>11}{'ratio':>7}{'NRE/s round':>13}{'ratio':>7}"
    )
    lines = [head, "-" * len(head)]
    for name, rows in results.items():
        base = rows[0]
        for r in rows:
            lines.append(
                f"{name:<24}{r['k']:>9}{r['samples_s']:>11.0f}{r['samples_s'] / base['samples_s']:>6.2f}x"
                f"{r['nre_pay_s']:>11.0f}{r['nre_pay_s'] / base['nre_pay_s']:>6.2f}x"
                f"{r['nre_round_s']:>13.0f}{r['nre_round_s'] / base['nre_round_s']:>6.2f}x"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("torch", "vllm"), default="torch")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--samples", type=int, default=2000, help="candidates per samples/s measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="distill rounds per row (NRE/s)")
    p.add_argument("--per-round", type=int, default=250, help="samples_per_round (m)")
    p.add_argument("--pool", type=int, default=500, help="pool_size")
    p.add_argument("--delay-ms", type=float, default=4.0, help="slow oracle: sleep per sample")
    p.add_argument("--ray-cpus", type=int, default=8, help="logical CPUs given to Ray")
    p.add_argument("--oracles", nargs="+", choices=("fast", "slow"), default=["fast", "slow"])
    args = p.parse_args(argv)
    args.actors = sorted(set(args.actors))
    if args.actors[0] != 1:
        p.error("--actors must include 1 (the ratios are to the 1-sampler case)")

    import ray

    os.chdir(REPO)  # actors find `benchmarks.scaling` through the driver's working directory
    facts = machine_facts()
    print("\n".join(facts), flush=True)
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    t_all = time.perf_counter()
    results, startups = {}, {}
    try:
        for key, name, task, opts in [
            ("fast", "addition (fast)", "addition_attack", {}),
            (
                "slow",
                f"slow ({args.delay_ms:g} ms/sample)",
                "benchmarks.scaling:SlowAddition",
                {"delay_ms": args.delay_ms},
            ),
        ]:
            if key not in args.oracles:
                continue
            print(
                f"[scaling] {name}: starting {max(args.actors)} {args.backend} samplers, 2 trainers, 1 oracle",
                flush=True,
            )
            results[name], startups[name] = measure(task, opts, args)
    finally:
        ray.shutdown()
    print()
    print(
        f"sampler backend {args.backend}; {args.samples} samples per samples/s measurement (median of "
        f"{args.repeats}); {args.rounds} distill rounds of m={args.per_round}, pool {args.pool} per row; "
        f"Ray with {args.ray_cpus} logical CPUs on {os.cpu_count()} cores"
    )
    print(table(results, args.actors))
    print(
        "\nactor start-up and warm-up round (not in the table): "
        + ", ".join(f"{n} {s:.0f}s" for n, s in startups.items())
        + f"; total wall time {time.perf_counter() - t_all:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
