"""Full-copy vs LoRA negative models on the same run configuration (the paper's first open question).

    .venv/bin/python benchmarks/negative_lora.py [--config FILE] [--set key=value ...] \
        [--lora-r 16] [--lora-alpha 32] [--lora-lr 1e-3] [--out runs/lora-compare]

Runs ``banel_ray.run`` twice on one local Ray instance, same seed and keys, once with a full copy of
g_t as p_phi (``negative.lora.r=0``) and once with a LoRA adapter (``negative.lora.r=R``; its
learning rate may differ, adapters usually want a larger one), and prints one row per variant:
held-out NLL of p_phi and of g_t on the held-out negatives (mean over rounds), the fraction of the
pool that s(x) = log g - log p_phi >= 0 would accept (a threshold filter at tau = 1), final and best
success with Clopper-Pearson intervals, fit time per round, peak RSS of the negative trainer
process, trainable parameters and wall time. Until round 1's fit the two runs are identical.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np


def run_variant(cfg_file, sets, out: Path, name: str):
    from banel_ray import config as C
    from banel_ray import report
    from banel_ray.run import run

    cfg = C.load(cfg_file, list(sets) + [f"run_dir={out / name}"])
    t = time.time()
    s = run(cfg, out / name)
    hist = report.read_metrics(out / name)
    mean = lambda k: float(np.nanmean([m[k] for m in hist if k in m])) if hist else float("nan")  # noqa: E731
    return {"variant": name, "neg_heldout_nll": mean("neg_heldout_nll"), "gen_heldout_nll": mean("gen_heldout_nll"),
            "neg_train_nll": mean("neg_train_nll"), "accept_s>=0": mean("score_pos_frac"),
            "final": s["final"], "best": s["best"], "base": s["base"], "t_fit_s": mean("t_fit"),
            "neg_peak_rss_mb": max((m.get("neg_peak_rss_mb", 0) for m in hist), default=0),
            "trainable_params": int(hist[-1].get("neg_trainable_params", 0)) if hist else 0,
            "wall_s": time.time() - t}


def main():
    from banel_ray import report
    from banel_ray.run import init_ray
    from banel_ray import config as C

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--lora-lr", type=float, default=0.0, help="negative.lr for LoRA (0: same as full)")
    p.add_argument("--out", default="runs/lora-compare")
    a = p.parse_args()
    out = Path(a.out)
    init_ray(C.load(a.config, a.set))
    lora_sets = [f"negative.lora.r={a.lora_r}", f"negative.lora.alpha={a.lora_alpha}"]
    if a.lora_lr > 0:
        lora_sets.append(f"negative.lr={a.lora_lr}")
    rows = [run_variant(a.config, a.set + ["negative.lora.r=0"], out, "full"),
            run_variant(a.config, a.set + lora_sets, out, f"lora-r{a.lora_r}")]
    (out / "comparison.json").write_text(json.dumps(rows, indent=2, default=float))
    print("\n| variant | p_phi held-out NLL | g_t held-out NLL | accept (s>=0) | final success | best success "
          "| fit s/round | neg trainer peak RSS MB | trainable params | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['neg_heldout_nll']:.4f} | {r['gen_heldout_nll']:.4f} | {r['accept_s>=0']:.3f} "
              f"| {report.fmt_rate(r['final'])} | {report.fmt_rate(r['best'])} | {r['t_fit_s']:.1f} "
              f"| {r['neg_peak_rss_mb']:.0f} | {r['trainable_params']:,} | {r['wall_s']:.0f} |")
    print(f"base success {report.fmt_rate(rows[0]['base'])}; results in {out / 'comparison.json'}")


if __name__ == "__main__":
    main()
