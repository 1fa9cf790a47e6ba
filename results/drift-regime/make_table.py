"""The drift-control study in the paper's regime, rebuilt from its run folders:

    .venv/bin/python results/drift-regime/make_table.py [RUNS_DIR ...] > results/drift-regime/table.md

RUNS_DIR (default: results/drift-regime/runs and, for BaNEL's own tuning arms kl_*, the slim
copies of results/tuning-regime/runs) holds <arm>_s<seed> folders made by arms.py. Writes trajectories.png beside this file. The base rate is the shipped
prior's measurement beside it (banel_ray/assets/addition_prior_d5_s200/regime.json)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from banel_ray.compare import collect
from banel_ray.report import read_metrics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from arms import ARMS  # noqa: E402

REGIME = json.loads(
    (HERE.parent.parent / "banel_ray" / "assets" / "addition_prior_d5_s200" / "regime.json").read_text()
)
BASE = REGIME["base"]["rate"]  # exact, the task's reward
BASE_NUMERIC = REGIME["base_by_reward"]["numeric"]["rate"]
PAPER = 278.0  # the paper's factor on its attack (0.0004 -> 0.1112)


DEFAULT = "kl"  # the arm attack_compare.yaml now holds


def prob_better(a: list[float], b: list[float]) -> float:
    """P(a random run of a beats a random run of b), ties counting half."""
    if not a or not b:
        return float("nan")
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def padded(modes: dict) -> float:
    return sum(modes.get(m, {}).get("share", 0.0) for m in ("one_padded", "both_padded"))


def main(dirs: list[Path]) -> None:
    recs = {}
    for d in dirs:
        # the tuning folder also holds the baselines' learning-rate arms: only BaNEL's are read there
        keep = (lambda n: True) if d == HERE / "runs" else (lambda n: n.startswith("kl_"))
        recs |= {Path(r["dir"]).name: r for r in collect(d) if keep(Path(r["dir"]).name)}
    rows, summary, traj = [], [], []
    finals_by_arm = {
        arm: [(recs[n]["final_fresh"] or recs[n]["final"])["rate"] for n in recs if n.rsplit("_s", 1)[0] == arm]
        for arm in ARMS
    }
    for arm in ARMS:
        finals = []
        for name in sorted(n for n in recs if n.rsplit("_s", 1)[0] == arm):
            r = recs[name]
            f = r["final_fresh"] or r["final"]
            seed = name.rsplit("_s", 1)[1]
            modes = f.get("modes", {})
            wf = 1 - modes.get("malformed", {}).get("share", 0.0)
            numeric = f.get("eval_rate_numeric", float("nan"))
            fo = f.get("eval_format_only", float("nan"))
            first = r["first_success_nres"]
            finals.append(f["rate"])
            rows.append(
                f"| {arm} | {seed} | {f['rate']:.4g} [{f['lo']:.3g}, {f['hi']:.3g}] | {f['n']:,} | "
                f"{f['rate'] / BASE:,.0f}x | {numeric:.4g} ({numeric / max(BASE_NUMERIC, 1e-12):,.1f}x) | {fo:.3g} | {wf:.3f} | "
                f"{padded(modes):.3f} | {r['successes']:,} | {'none' if math.isinf(first) else f'{first:,.0f}'} | "
                f"{r['success_auc']:.1f} |"
            )
            hist = read_metrics(Path(r["dir"]))
            per5 = [sum(m["successes"] for m in hist[i : i + 5]) for i in range(0, len(hist), 5)]
            wfs = [hist[i].get("round_well_formed", float("nan")) for i in (9, 19, 29) if i < len(hist)]
            kls = [hist[i].get("kl_to_prior", float("nan")) for i in (9, 19, 29) if i < len(hist)]
            traj.append(
                f"| {arm} | {seed} | {' '.join(str(x) for x in per5)} | "
                f"{' / '.join(f'{x:.2f}' for x in wfs)} | {' / '.join(f'{x:.1f}' for x in kls)} |"
            )
        if finals:
            x = np.array(finals) / BASE
            p = prob_better(finals_by_arm.get(DEFAULT, []), finals) if arm != DEFAULT else float("nan")
            summary.append(
                f"| {arm} | {len(x)} | {np.mean(finals):.4g} | {np.median(finals):.4g} | {x.mean():,.0f}x | "
                f"{x.min():,.0f}x | {int((x >= PAPER).sum())} of {len(x)} | "
                f"{'' if math.isnan(p) else f'{p:.2f}'} |"
            )
    print(
        f"Base rate of the prior ({REGIME['samples']:,} draws): exact (the task's reward) {BASE:.3g} "
        f"[{REGIME['base']['lo']:.3g}, {REGIME['base']['hi']:.3g}], numeric {BASE_NUMERIC:.3g}.\n"
    )
    print(
        f"| arm | seeds | mean fresh final | median | mean x base | worst x base | seeds at 278x or more | "
        f"P({DEFAULT} run > this) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(summary))
    print()
    print(
        "| arm | seed | fresh final, exact [95% CI] | draws | x base | numeric (x numeric base) | format only | "
        "well formed | padded | distinct successes | NREs to first | success AUC |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("Paid successes per 5 rounds; well-formed share of the paid batch and KL(g || p0) at rounds 10 / 20 / 30:\n")
    print("| arm | seed | successes per 5 rounds | well formed | KL |")
    print("|---|---|---|---|---|")
    print("\n".join(traj))
    plot(recs)


def plot(recs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ARMS if any(n.rsplit("_s", 1)[0] == a for n in recs)]
    cols = 4
    rows = math.ceil(len(arms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), sharex=True, squeeze=False)
    for ax, arm in zip(axes.flat, arms):
        for name in sorted(n for n in recs if n.rsplit("_s", 1)[0] == arm):
            hist = read_metrics(Path(recs[name]["dir"]))
            ax.plot([m["round"] for m in hist], np.cumsum([m["successes"] for m in hist]), label=name[-2:])
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(arm, fontsize=9)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(arms) :]:
        ax.axis("off")
    fig.supxlabel("round (250 NREs each)")
    fig.supylabel("distinct paid successes so far")
    fig.tight_layout()
    fig.savefig(HERE / "trajectories.png", dpi=90)


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or [HERE / "runs", HERE.parent / "tuning-regime" / "runs"])
