"""Where a per-token prior-support floor falls for a prior: the lowest per-token log p0 of its own
draws, by the task's mode (leading zero, carry chain, other, malformed), and the share of each mode
that floors of -4 .. -9 keep. The support control (``support.kind: token``) only helps when the
floor keeps the mode that succeeds and drops the one that drifts; this prints whether it can.

    .venv/bin/python benchmarks/prior_support.py                                   # the shipped prior
    .venv/bin/python benchmarks/prior_support.py --prior PATH --max-digits 5 --samples 100000

No oracle is called (modes are read from the strings), no NREs; about 20 s for 20,000 draws here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLOORS = (-4.0, -5.0, -6.0, -7.0, -8.0, -9.0)


def by_mode(least: np.ndarray, modes: list[str], floors=FLOORS) -> list[dict]:
    """Per mode: its share of the draws, quantiles of the per-token minima, and the kept share per floor."""
    rows = []
    modes = np.asarray(modes)
    for m in sorted(set(modes.tolist()), key=lambda x: (x == "malformed", x)):
        v = least[modes == m]
        q = np.quantile(v, [0.0, 0.05, 0.5, 0.95, 1.0])
        rows.append(
            {
                "mode": m,
                "n": len(v),
                "share": len(v) / len(least),
                "q": q,
                "kept": [float((v >= f).mean()) for f in floors],
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/prior_support.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default=None, help="prior folder (default: the task's shipped prior)")
    p.add_argument("--max-digits", type=int, default=8)
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.samples <= 0:
        print("error: --samples must be > 0", file=sys.stderr)
        return 2

    import torch

    from banel_ray import tasks
    from banel_ray.models import load_model, sample
    from banel_ray.models.logprobs import sequence_logprobs_and_min

    torch.set_num_threads(a.threads)
    opts = {"max_digits": a.max_digits, **({"prior": a.prior} if a.prior else {})}
    task = tasks.build("addition_attack", opts)
    prior_dir = task.prepare(progress=lambda s: None)
    model = load_model(prior_dir)
    t0 = time.perf_counter()
    draws = sample(model, task.prompt, a.samples, task.max_new_tokens, task.eos_id, seed=a.seed)
    _, least, _ = sequence_logprobs_and_min(model, [(task.prompt, d) for d in draws], pad_id=task.pad_id)
    modes = [task.mode(d) for d in draws]
    print(f"prior {prior_dir}, {a.samples:,} draws (seed {a.seed}), {time.perf_counter() - t0:.0f}s")
    print("lowest per-token log p0 of each draw, by mode; kept: share with that minimum >= the floor")
    head = f"{'mode':<13}{'share':>8}{'min':>8}{'q05':>8}{'median':>8}{'q95':>8}{'max':>8}"
    print(head + "".join(f"{'kept@' + format(f, 'g'):>9}" for f in FLOORS))
    for r in by_mode(least, modes):
        q = "".join(f"{x:>8.2f}" for x in r["q"])
        print(f"{r['mode']:<13}{r['share']:>8.2%}{q}" + "".join(f"{k:>9.3f}" for k in r["kept"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
