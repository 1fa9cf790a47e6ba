"""Benchmarks for the foundation: (a) one BaNEL round on Ray vs the same round in one process,
(b) vLLM sampling vs ``transformers.generate`` (and our torch KV-cache sampler) on the same model.

    .venv/bin/python benchmarks/round_and_sampling.py [--rounds 3] [--samples 4000]

Prints one table per part with ratios side by side. Uses the shipped addition-attack prior and
solver; every round does real work (sample, pay, fit p_phi, score a pool, distil, load weights).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def bench_round(rounds: int, backend: str) -> dict:
    """The same Runner and roles, on Ray actors and in this process (``runtime=local``)."""
    import ray

    from banel_ray import config as C
    from banel_ray.runtime.actors import LocalRuntime, RayRuntime
    from banel_ray.runtime.runner import Runner
    from banel_ray.tasks import build

    cfg = C.load(None, [f"sampler.backend={backend}", "budget=100000", "rounds=1000", "eval.samples=0"])
    prior = build(cfg["task"], {}).prepare(progress=lambda s: None)
    out = {}
    for name in ("ray", "local"):
        tmp = Path(tempfile.mkdtemp())
        if name == "ray":
            ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
            rt = RayRuntime()
        else:
            rt = LocalRuntime()
        r = Runner.build(dict(cfg, runtime=name), tmp, rt, prior, log=lambda s: None)
        r.round = 100
        r.run_round()  # warm-up (first-call compilation in vLLM), other seeds than the timed rounds
        r.round = 0
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            r.run_round()
            times.append(time.perf_counter() - t0)
        r.shutdown()
        if name == "ray":
            ray.shutdown()
        import torch

        out[name] = statistics.median(times)
        out["threads"] = torch.get_num_threads()
    return out


def bench_sampling(n: int, size: str) -> dict:
    """Tokens/s of each sampler on the shipped prior (0.3M parameters) or a random 25M-parameter
    Llama of the same vocabulary ("medium"), where per-token framework overhead matters less."""
    import torch

    from banel_ray.actors.sampler import VllmBackend
    from banel_ray.models import build_llama, load_model, sample, save_model, set_threads
    from banel_ray.tasks import build

    set_threads(1)
    task = build("addition_attack", {})
    prior = task.prepare(progress=lambda s: None)
    if size == "medium":
        model = build_llama(16, hidden=512, layers=8, heads=8, intermediate=1536, max_positions=48)
        prior = str(save_model(model, Path(tempfile.mkdtemp()) / "medium"))
    model = load_model(prior)
    res = {"params": sum(p.numel() for p in model.parameters())}

    def tokens(samples):
        return sum(len(s) for s in samples)

    t0 = time.perf_counter()
    out = model.generate(
        input_ids=torch.ones((n, 1), dtype=torch.long),
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=task.max_new_tokens,
        eos_token_id=task.eos_id,
        pad_token_id=task.pad_id,
    )
    dt = time.perf_counter() - t0
    gen = [tuple(r[1:]) for r in out.tolist()]
    gen = [g[: g.index(task.eos_id) + 1] if task.eos_id in g else g for g in gen]
    res["transformers.generate"] = tokens(gen) / dt
    res["mean_tokens"] = tokens(gen) / n
    t0 = time.perf_counter()
    s = sample(model, task.prompt, n, task.max_new_tokens, task.eos_id, seed=0)
    res["torch KV-cache sampler"] = tokens(s) / (time.perf_counter() - t0)
    v = VllmBackend(prior, task, seed=0, kv_cache_mb=64)
    v.sample(256, seed=1)  # warm-up
    t0 = time.perf_counter()
    s = v.sample(n, seed=0)
    res["vLLM (seeded per request)"] = tokens(s) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    s = v.sample(n, seed=None)
    res["vLLM (engine seed)"] = tokens(s) / (time.perf_counter() - t0)
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--backend", default="vllm", choices=["vllm", "torch"])
    p.add_argument("--skip-round", action="store_true")
    p.add_argument("--skip-sampling", action="store_true")
    p.add_argument("--sizes", default="prior,medium", help="models for (b): prior, medium")
    a = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if not a.skip_round:
        r = bench_round(a.rounds, a.backend)
        print(
            f"\n(a) one quick-config round (m=250, pool 1000, neg 5 epochs, distil 2 epochs), "
            f"{a.backend} sampler, median of {a.rounds}"
        )
        print(f"  {'one process':<14}{r['local']:8.2f} s   (runtime=local, torch threads: {r['threads']})")
        print(f"  {'Ray actors':<14}{r['ray']:8.2f} s   ratio {r['ray'] / r['local']:.2f}x (target <= 1.10x)")
    for size in [] if a.skip_sampling else a.sizes.split(","):
        n = a.samples if size == "prior" else max(a.samples // 8, 64)
        s = bench_sampling(n, size)
        base = s["transformers.generate"]
        print(
            f"\n(b) sampling {n} sequences from the {size} model ({s.pop('params') / 1e6:.1f}M params, "
            f"{s.pop('mean_tokens'):.1f} tokens each, 1 thread), temperature 1, no truncation"
        )
        for k, v in s.items():
            print(f"  {k:<28}{v:10.0f} tok/s   {v / base:5.2f}x transformers.generate")


if __name__ == "__main__":
    main()
