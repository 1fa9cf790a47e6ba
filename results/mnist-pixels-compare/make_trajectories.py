"""Trajectories of the pixel-task compare runs: the estimate at each evaluated round beside the
generator's drift (KL to p0, well-formed share, the MLP's class shares, the rule's statistic), and
the final generator's re-estimate (``python -m banel_ray.evaluate``) with its certain lower bound.

    python results/mnist-pixels-compare/make_trajectories.py results/mnist-pixels-compare/runs \\
        > results/mnist-pixels-compare/trajectories.md
"""

import json
import sys
from pathlib import Path


def fmt(e: dict) -> str:
    return f"{e['rate']:.2e} [{e['lo']:.2e}, {e['hi']:.2e}] | {e['ess']:.1f} | {'yes' if e['reliable'] else 'no'}"


def main(root: str) -> None:
    print(
        "| run | round | estimate [95% CI] | ESS | reliable | certain lower bound | KL(g \\|\\| p0) | well-formed "
        "| MLP class 0 | MLP class 6 | mean LLR | max LLR |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in sorted(Path(root).iterdir()):
        if not (run / "summary.json").exists():
            continue
        s = json.loads((run / "summary.json").read_text())
        ms = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        evals = [(0, s["base"], None)] + [(m["round"], m["eval"], m.get("kl_to_prior")) for m in ms if m.get("eval")]
        for r, e, kl in evals:
            drift = (
                f"{'' if kl is None else f'{kl:.1f}'} | {e['eval_well_formed']:.2f} | {e.get('eval_class_0', 0):.2f} "
                f"| {e.get('eval_class_6', 0):.3f} | {e.get('eval_llr_mean', float('nan')):.1f} "
                f"| {e.get('eval_llr_max', float('nan')):.1f}"
            )
            print(f"| {run.name} | {r} (in run, {e['n']:,} draws) | {fmt(e)} | | {drift} |")
        later = run / "evals" / f"round_{s['rounds']:04d}.json"
        if later.exists() and "ess" in json.loads(later.read_text()):
            e = json.loads(later.read_text())
            print(
                f"| {run.name} | {s['rounds']} (re-estimated, {e['n']:,} draws) | {fmt(e)} "
                f"| {e.get('certain_lo', float('nan')):.2e} ({e.get('distinct_hits', 0)} found) | | | | | | |"
            )


if __name__ == "__main__":
    main(sys.argv[1])
