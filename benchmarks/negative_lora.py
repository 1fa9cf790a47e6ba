"""Full-copy vs LoRA negative models on the same run configuration (the paper's first open question).

    .venv/bin/python benchmarks/negative_lora.py [--config FILE] [--set key=value ...] \
        [--lora-r 16] [--lora-alpha 32] [--lora-lr 1e-3] [--out runs/lora-compare]
    .venv/bin/python benchmarks/negative_lora.py --from-run RUN_DIR [--lora-r 16] [--lora-lr 5e-4]

Runs ``banel_ray.run`` twice on one local Ray instance, same seed and keys, once with a full copy of
g_t as p_phi (``negative.lora.r=0``) and once with a LoRA adapter (``negative.lora.r=R``; its
learning rate may differ, adapters usually want a larger one), and prints one row per variant:
held-out NLL of p_phi and of g_t on the held-out negatives (mean over rounds), the fraction of the
pool that s(x) = log g - log p_phi >= 0 would accept (a threshold filter at tau = 1), final and best
success with Clopper-Pearson intervals, fit time per round, peak RSS of the negative trainer
process, trainable parameters and wall time. Until round 1's fit the two runs are identical.

``--from-run`` starts no run: it fits both variants on one finished run's round-1 negatives, each
in a fresh process, and scores the later rounds' samples (for LLMs, where two runs cost too much).
"""

import argparse
import json
import multiprocessing as mp
import sqlite3
import time
from pathlib import Path

import numpy as np


def _fit_in_process(cfg, prior_dir, negs, fresh, lora, q):
    """One p_phi fit in a fresh process (so its peak RSS is its own), as the negative trainer does it."""
    import dataclasses
    import resource

    from banel_ray import config as C
    from banel_ray.actors.trainers import NegativeTrainer
    from banel_ray.records import PaidBatch, SampleBatch

    rc = C.sections(cfg)
    neg = dataclasses.replace(
        rc.negative, lora_r=lora[0], lora_alpha=lora[1], lr=lora[2] or rc.negative.lr, data="round"
    )
    tr = NegativeTrainer(
        cfg["task"], cfg["task_options"], prior_dir, seed=cfg["seed"], trainer=rc.trainer, negative=neg, score=rc.score
    )
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    fit = tr.fit(1, PaidBatch(samples=negs, rewards=[0] * len(negs), versions=[0] * len(negs)))
    fit["t_fit_s"] = time.perf_counter() - t
    fit["rss_before_fit_mb"] = rss0
    s = np.array(tr.score(SampleBatch(fresh)).scores)
    fit["accept_s>=0"] = float((s >= 0).mean()) if len(s) else float("nan")
    q.put(fit)


def from_run(run_dir: Path, r: int, alpha: float, lora_lr: float, full_lr: float):
    """Fit full and LoRA p_phi on round 1's negatives of one finished run; fresh = later rounds' samples."""
    from banel_ray import tasks

    cfg = json.loads((run_dir / "config.json").read_text())
    prior_dir = tasks.build(cfg["task"], cfg["task_options"]).prepare()
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    rows = db.execute("SELECT sample, reward, round FROM evaluations WHERE status='ok' ORDER BY seq").fetchall()
    negs = [tuple(json.loads(x)) for x, y, k in rows if k == 1 and y == 0]
    fresh = [tuple(json.loads(x)) for x, y, k in rows if k > 1]
    ctx = mp.get_context("spawn")
    out = []
    for name, lora in (("full", (0, alpha, full_lr)), (f"lora-r{r}", (r, alpha, lora_lr))):
        q = ctx.Queue()
        p = ctx.Process(target=_fit_in_process, args=(cfg, prior_dir, negs, fresh, lora, q))
        p.start()
        res = q.get()
        p.join()
        out.append(dict(res, variant=name))
    print(
        f"\n{len(negs)} negatives of round 1 ({cfg['negative.epochs']} epochs, batch {cfg['negative.batch_size']}), "
        f"{len(fresh)} later samples scored"
    )
    print(
        "| variant | p_phi held-out NLL | g_t held-out NLL | p_phi train NLL | accept (s>=0) on later samples "
        "| fit s | peak RSS MB (before fit) | trainable params |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for x in out:
        print(
            f"| {x['variant']} | {x['neg_heldout_nll']:.4f} | {x['gen_heldout_nll']:.4f} | {x['neg_train_nll']:.4f} "
            f"| {x['accept_s>=0']:.3f} | {x['t_fit_s']:.0f} | {x['neg_peak_rss_mb']:.0f} ({x['rss_before_fit_mb']:.0f}) "
            f"| {x['neg_trainable_params']:,} |"
        )


def run_variant(cfg_file, sets, out: Path, name: str):
    from banel_ray import config as C
    from banel_ray import report
    from banel_ray.runtime.job import run

    cfg = C.load(cfg_file, list(sets) + [f"run_dir={out / name}"])
    t = time.time()
    s = run(cfg, out / name)
    hist = report.read_metrics(out / name)
    mean = lambda k: float(np.nanmean([m[k] for m in hist if k in m])) if hist else float("nan")  # noqa: E731
    return {
        "variant": name,
        "neg_heldout_nll": mean("neg_heldout_nll"),
        "gen_heldout_nll": mean("gen_heldout_nll"),
        "neg_train_nll": mean("neg_train_nll"),
        "accept_s>=0": mean("score_pos_frac"),
        "final": s["final"],
        "best": s["best"],
        "base": s["base"],
        "t_fit_s": mean("t_fit"),
        "neg_peak_rss_mb": max((m.get("neg_peak_rss_mb", 0) for m in hist), default=0),
        "trainable_params": int(hist[-1].get("neg_trainable_params", 0)) if hist else 0,
        "wall_s": time.time() - t,
    }


def main():
    from banel_ray import config as C
    from banel_ray import report
    from banel_ray.runtime.job import init_ray

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--lora-lr", type=float, default=0.0, help="negative.lr for LoRA (0: same as full)")
    p.add_argument("--full-lr", type=float, default=0.0, help="--from-run: negative.lr of the full copy (0: the run's)")
    p.add_argument("--out", default="runs/lora-compare")
    p.add_argument(
        "--from-run",
        metavar="RUN_DIR",
        help="no new runs: fit both variants on this run's "
        "round-1 negatives, each in a fresh process (time, peak memory, NLL, acceptance)",
    )
    a = p.parse_args()
    if a.from_run:
        return from_run(Path(a.from_run), a.lora_r, a.lora_alpha, a.lora_lr, a.full_lr)
    out = Path(a.out)
    init_ray(C.load(a.config, a.set))
    lora_sets = [f"negative.lora.r={a.lora_r}", f"negative.lora.alpha={a.lora_alpha}"]
    if a.lora_lr > 0:
        lora_sets.append(f"negative.lr={a.lora_lr}")
    rows = [
        run_variant(a.config, a.set + ["negative.lora.r=0"], out, "full"),
        run_variant(a.config, a.set + lora_sets, out, f"lora-r{a.lora_r}"),
    ]
    (out / "comparison.json").write_text(json.dumps(rows, indent=2, default=float))
    print(
        "\n| variant | p_phi held-out NLL | g_t held-out NLL | accept (s>=0) | final success | best success "
        "| fit s/round | neg trainer peak RSS MB | trainable params | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['neg_heldout_nll']:.4f} | {r['gen_heldout_nll']:.4f} | {r['accept_s>=0']:.3f} "
            f"| {report.fmt_rate(r['final'])} | {report.fmt_rate(r['best'])} | {r['t_fit_s']:.1f} "
            f"| {r['neg_peak_rss_mb']:.0f} | {r['trainable_params']:,} | {r['wall_s']:.0f} |"
        )
    print(f"base success {report.fmt_rate(rows[0]['base'])}; results in {out / 'comparison.json'}")


if __name__ == "__main__":
    main()
