"""NRE throughput of the oracle actor against a slow oracle, as a fraction of the rate limit.

    .venv/bin/python benchmarks/oracle_throughput.py [--latency 0.2] [--rates 4 10] [--seconds 5]

The oracle is ``FlakyOracle`` with no failures: ``latency`` seconds per call, one sample per call.
For each rate limit and each k in 1, 2, 4 requests in flight, two ways of loading the actor:

- ``callers``: k driver threads, each sending one-sample ``pay`` requests back to back
  (actor cap ``max_in_flight=8``, so in flight = k);
- ``fan-out``: one ``pay`` request with all the samples, the actor's cap ``max_in_flight=k``
  (how the driver pays a round).

Each cell pays ``rate * seconds`` fresh samples. ``ratio`` = NREs / wall time / rate (end to end,
first request to last answer); ``start ratio`` = the rate at which oracle calls started, over the
limit (it can never exceed 1 beyond the bucket's burst of 1). With one call in flight the best is
``1 / latency`` calls/s, so the ratio is ``min(1, 1 / (latency * rate))``; target >= 0.95 once
``k * (1 / latency) >= rate`` with some margin.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CALLABLE = "banel_ray.reward_plugins:CallableTask"


def make(path: str, rate: float, latency: float, cap: int):
    import ray

    from banel_ray.actors.reward_service import RewardService
    from banel_ray.runtime.actors import ROLES

    spec = {"kind": "flaky", "latency_s": latency, "batch_size": 1}
    return (
        ray.remote(**ROLES["reward_service"])(RewardService)
        .options(num_cpus=0)
        .remote(CALLABLE, {"oracle": spec}, path, 10**9, rate_limit=rate, max_in_flight=cap, threads=0)
    )


def run_cell(oracle, mode: str, k: int, n: int, base: int) -> tuple[float, list]:
    import ray

    from banel_ray.records import SampleBatch

    samples = [(base + i,) for i in range(n)]
    ray.get(oracle.spent.remote())  # started
    before = len(ray.get(oracle.stats.remote())["starts"])
    time.sleep(1.0)  # the bucket refills to its burst: every cell starts alike
    t = time.perf_counter()
    if mode == "fan-out":
        r = ray.get(oracle.pay.remote(0, SampleBatch(samples)))
        assert r.paid == n, r.paid
    else:
        it = iter(samples)
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    s = next(it, None)
                if s is None:
                    return
                assert ray.get(oracle.pay.remote(0, SampleBatch([s]))).paid == 1

        ts = [threading.Thread(target=worker) for _ in range(k)]
        [x.start() for x in ts]
        [x.join() for x in ts]
    wall = time.perf_counter() - t
    starts = ray.get(oracle.stats.remote())["starts"][before:]
    return wall, starts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per oracle call")
    ap.add_argument("--rates", type=float, nargs="+", default=[4.0, 10.0], help="rate limits (NREs/s)")
    ap.add_argument("--inflight", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=5.0, help="work per cell, at the rate limit")
    ap.add_argument("--modes", nargs="+", default=["callers", "fan-out"], choices=["callers", "fan-out"])
    a = ap.parse_args()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    rows = []
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as d:
            base = 0
            for rate in a.rates:
                n = max(4, int(round(rate * a.seconds)))
                shared = make(f"{d}/callers-{rate}.sqlite", rate, a.latency, 8) if "callers" in a.modes else None
                for k in a.inflight:
                    for mode in a.modes:
                        o = shared if mode == "callers" else make(f"{d}/fan-{rate}-{k}.sqlite", rate, a.latency, k)
                        wall, starts = run_cell(o, mode, k, n, base)
                        base += n
                        ts = sorted(t for t, _ in starts)
                        start_rate = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 else float("nan")
                        rows.append((mode, rate, k, n, wall, n / wall, n / wall / rate, start_rate / rate))
                        print(f"  {mode:8s} rate {rate:g}/s  in flight {k}: {n} NREs in {wall:.2f}s", flush=True)
                        if o is not shared:
                            ray.kill(o)
                if shared is not None:
                    ray.kill(shared)
    finally:
        ray.shutdown()

    print(
        f"\nOracle NRE throughput: {a.latency * 1000:.0f} ms per call, one sample per call | "
        f"Ray {ray.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs | "
        f"{time.perf_counter() - t0:.0f}s"
    )
    head = (
        f"{'mode':8s} {'limit/s':>7s} {'in flight':>9s} {'NREs':>5s} {'wall s':>7s} {'NRE/s':>7s} "
        f"{'ratio':>6s} {'start ratio':>11s} {'ceiling':>7s}"
    )
    print(head)
    print("-" * len(head))
    for mode, rate, k, n, wall, thr, ratio, sratio in rows:
        ceiling = min(1.0, k / (a.latency * rate))
        print(f"{mode:8s} {rate:7g} {k:9d} {n:5d} {wall:7.2f} {thr:7.2f} {ratio:6.3f} {sratio:11.3f} {ceiling:7.2f}")
    print(
        "ratio: NREs / wall / limit (end to end); start ratio: rate of call starts / limit; "
        "ceiling: min(1, in flight / (latency * limit))."
    )


if __name__ == "__main__":
    main()
