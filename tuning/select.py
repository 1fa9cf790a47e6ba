"""``python -m tuning.select``: the tuned settings of a method, from its sweep's run folders.

Every trial of a sweep is a full run whose final generator was evaluated on a fresh sample
(``summary.json``: ``final_fresh``). The trial with the highest fresh final wins (ties: the first
in search order); its searched keys are the method's settings for the comparison. Writes
``<out>/<sweep>.md`` (every trial, the choice) and ``<out>/<sweep>.yaml`` (the chosen keys), and
prints the table.

  python -m tuning.select --experiment sweeps/tune_nsr --out results/tuning_addition
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from banel_ray.cli import Parser, fail
from banel_ray.core.run_folder import RunFolder
from tuning import results

SKIP = ("base", "runs_root", "trial_cpus", "seed")


def trials(exp: Path) -> list[dict]:
    """(searched keys, seed, fresh final, run folder) of each finished trial of an experiment, read
    with Tune's ResultGrid (``tuning.results``); a trial's run folder is ``runs_root/<trial id>``."""
    out = []
    for res in results.trials(exp):
        params, tid = res.config, results.trial_id(res)
        run = RunFolder(Path(params["runs_root"]) / tid) if tid and params.get("runs_root") else None
        s = run.summary() if run is not None else None
        if not s or not s.get("final_fresh"):
            continue
        out.append(
            {
                "keys": {k: v for k, v in params.items() if k not in SKIP},
                "seed": params.get("seed"),
                "final_fresh": s["final_fresh"],
                "base_fresh": s.get("base_fresh"),
                "run_dir": str(run.path),
                "nres": s["nres"],
                "trial": Path(res.path).name,
            }
        )
    return out


def choose(ts: list[dict]) -> dict:
    return max(ts, key=lambda t: t["final_fresh"]["rate"])


def main(argv=None) -> int:
    p = Parser(prog="python -m tuning.select", description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--experiment", required=True, help="a Tune experiment folder (sweeps/<name>)")
    p.add_argument("--out", default="results/tuning_addition", help="folder for <name>.md and <name>.yaml")
    a = p.parse_args(argv)
    exp = Path(a.experiment)
    if not exp.is_dir():
        return fail(f"--experiment: folder not found: {exp}")
    try:
        ts = trials(exp)
    except results.NotAnExperiment as e:
        return fail(f"--experiment: {e}")
    if not ts:
        return fail(f"no finished trial with a fresh-sample final under {exp}")
    best = choose(ts)
    lines = [
        f"Sweep `{exp.name}`: {len(ts)} trials, each a full run; chosen: the highest fresh-sample final.",
        "",
        "| trial | settings | seed | fresh final [95% CI] | x prior | NREs |",
        "|---|---|---|---|---|---|",
    ]
    for t in ts:
        f, b = t["final_fresh"], t["base_fresh"] or {}
        mark = " **chosen**" if t is best else ""
        lines.append(
            f"| {Path(t['run_dir']).name}{mark} | "
            f"{', '.join(f'{k}={v}' for k, v in sorted(t['keys'].items()))} | {t['seed']} | "
            f"{f['rate']:.3e} [{f['lo']:.3e}, {f['hi']:.3e}] | "
            f"{f['rate'] / b['rate'] if b.get('rate') else float('nan'):.3g}x | {t['nres']} |"
        )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{exp.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{exp.name}.yaml").write_text(yaml.safe_dump(dict(sorted(best["keys"].items())), sort_keys=True))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
