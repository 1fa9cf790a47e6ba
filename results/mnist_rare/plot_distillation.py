"""Distillation error on mnist_0to6_rare, exactly (issue 22, item 3), from one run's metrics.jsonl:

    .venv/bin/python results/mnist_rare/plot_distillation.py RUN_DIR [OUT.png]

A distill run with ``negative.exact_alg1=true`` records, per round, Algorithm 1's exact posterior
built from the same negatives (``alg1_exact_rate``), KL(posterior || generator)
(``kl_posterior_to_generator``), the generator's mass inside the posterior's accepted region
(``generator_accepted_mass``) and the share of distinct draws, and where measured each step's exact
filter target (``target_exact_rate``) and KL(target || g_{t+1}) (``kl_target_to_generator``); the generator's own exact rate comes
at each evaluation (``eval.rate``) and the prior's from summary.json. Writes a 3-panel PNG
(default RUN_DIR/distillation.png) and prints one line per round."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def rows(run: Path) -> tuple[list[dict], float]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = run / "summary.json"
    base = math.nan
    if summary.exists():
        base = json.loads(summary.read_text()).get("base", {}).get("rate", math.nan)
    return recs, base


def main(argv: list[str]) -> int:
    if not argv or not (Path(argv[0]) / "metrics.jsonl").is_file():
        print(
            "usage: plot_distillation.py RUN_DIR [OUT.png] (RUN_DIR: a run folder with metrics.jsonl)", file=sys.stderr
        )
        return 2
    run = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else run / "distillation.png"
    recs, base = rows(run)
    rounds = [r["round"] for r in recs]
    alg1 = [r.get("alg1_exact_rate", math.nan) for r in recs]
    kl = [r.get("kl_posterior_to_generator", math.nan) for r in recs]
    acc = [r.get("generator_accepted_mass", math.nan) for r in recs]
    distinct = [r.get("distinct_frac", math.nan) for r in recs]
    target = [r.get("target_exact_rate", math.nan) for r in recs]  # the exact filter's target (if measured)
    step = [r.get("kl_target_to_generator", math.nan) for r in recs]
    gen = [(r["round"], r["eval"]["rate"]) for r in recs if isinstance(r.get("eval"), dict) and "rate" in r["eval"]]
    for r, a, k, m, d, q, e in zip(rounds, alg1, kl, acc, distinct, target, step):
        g = dict(gen).get(r)
        print(
            f"round {r:2d}  alg1 posterior {a:.3g}  generator {'' if g is None else f'{g:.3g}'}  "
            f"KL(post||g) {k:.3g}  g's accepted mass {m:.3g}  distinct {d:.2f}  "
            f"target {q:.3g}  KL(target||g) {e:.3g}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    lg = lambda xs: [math.log10(x) if x and x > 0 else math.nan for x in xs]
    ax[0].plot(rounds, lg(alg1), "o-", ms=3, label="Algorithm 1 posterior (exact)")
    if any(math.isfinite(x) for x in target):
        ax[0].plot(rounds, lg(target), "^-", ms=3, label="exact filter target of each step")
    if gen:
        ax[0].plot([g[0] for g in gen], lg([g[1] for g in gen]), "s-", label="Algorithm 2 generator (exact)")
    if math.isfinite(base):
        ax[0].axhline(math.log10(base), color="grey", ls="--", label="prior")
    ax[0].set(xlabel="round", ylabel="log10 P(six)", title="six rate")
    ax[0].legend(fontsize=7)
    ax[1].plot(rounds, kl, "o-", ms=3, label="KL(Alg 1 posterior || generator)")
    if any(math.isfinite(x) for x in step):
        ax[1].plot(rounds, step, "^-", ms=3, label="KL(step's exact target || generator)")
    ax[1].set(xlabel="round", ylabel="nats", title="distillation error")
    ax[1].legend(fontsize=7)
    ax[2].plot(rounds, lg(acc), "o-", ms=3, label="log10 generator mass in Alg 1's region")
    ax[2].plot(rounds, distinct, "s-", ms=3, label="distinct share of draws")
    ax[2].set(xlabel="round", title="where the generator goes")
    ax[2].legend(fontsize=7)
    fig.suptitle(f"{run.name}: distillation error, every quantity exact over 64^4 codes", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
