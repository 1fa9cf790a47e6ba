"""The drift-control study in the paper's regime: arms (name -> --set overrides on
banel_ray/configs/attack_compare.yaml) x seeds, run two at a time, one process each, resumable
(a run whose summary.json exists is skipped; a killed one is resumed from its checkpoint).

    .venv/bin/python results/drift-regime/arms.py RUNS_DIR ARM[,ARM...] SEEDS [--parallel 2] [--set KEY=VALUE ...]

``--set`` adds overrides after the arm's own (the Algorithm 1 seeds 1-2 used it for cheaper
evaluations: ``--set eval.every=10 --set eval.final_samples=2000``; its final draws are capped at
64 x the samples asked, see ``algorithms.banel.ACCEPT_CAP``).

Run folders land in RUNS_DIR/<arm>_s<seed>; ``make_table.py`` reads the slim copies kept here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

CONFIG = "banel_ray/configs/attack_compare.yaml"
# every arm starts from the study's base (the constant floor -6, no KL anchor and generator.lr 5e-4,
# as the config was when the study ran; the config now holds the chosen arm, "kl"), so an arm means the same thing
# whatever the config's default becomes
BASE = ["support.kind=token", "support.threshold=-6.0", "generator.kl_coef=0.0", "generator.lr=5e-4"]
NO_FLOOR = ["support.kind=none"]
ARMS: dict[str, list[str]] = {
    # reference rows of ../shared/notes/probe-regime-2.md, sections 4-5
    "floor6": [],  # the constant floor as shipped for the 8-digit task
    "floor12": ["support.threshold=-12.0"],
    "floor9": ["support.threshold=-9.0"],  # between the padded mode's minima (-9.2 to -6.3)
    "floor9_tau": ["support.threshold=-9.0", "filter.kind=threshold", "filter.tau=1.032"],
    "floor12_tau": ["support.threshold=-12.0", "filter.kind=threshold", "filter.tau=1.032"],
    "none": NO_FLOOR,
    # drift controls that do not rely on a constant token floor
    "quantile": ["support.quantile=0.0002"],  # the floor read off the prior's own tail
    "drift4": ["support.kind=drift", "support.max_ratio=4.0"],  # a floor on the change from p0
    "drift6": ["support.kind=drift", "support.max_ratio=6.0"],
    "mix": [*NO_FLOOR, "generator.prior_mix=0.25"],  # p0 mixed into the distillation set
    "kl": [*NO_FLOOR, "generator.kl_coef=0.1"],  # the KL anchor
    "tau": [*NO_FLOOR, "filter.kind=threshold", "filter.tau=1.032"],  # the paper's ratio threshold
    "kappa": [*NO_FLOOR, "score.negative_power=0.5"],  # a tempered negative model
    "alg1": [*NO_FLOOR, "mode=sequential", "filter.factor=1.2"],  # Algorithm 1, a gentler filter
    "negall": [*NO_FLOOR, "negative.data=all"],  # negatives from all rounds
    # combinations: remembered negatives (so a failure mode once paid for stays rejected) with a
    # floor or with p0 mixed in
    "floor12_negall": ["support.threshold=-12.0", "negative.data=all"],
    "negall_mix": [*NO_FLOOR, "negative.data=all", "generator.prior_mix=0.25"],
    "mix_tau": [*NO_FLOOR, "generator.prior_mix=0.25", "filter.kind=threshold", "filter.tau=1.032"],
    # a larger distillation set for the same NREs (1,000 -> 4,000 candidates a round, half kept):
    # less sampling noise in each self-distillation step, which is where drift accumulates
    "pool4k": [*NO_FLOOR, "pool_size=4000"],
    "pool4k_floor12": ["support.threshold=-12.0", "pool_size=4000"],
    # Q2 re-asked in the regime (issue 21, item 7): decay schedules, alone and on the chosen KL
    # anchor; f 2 -> 1 and generator.lr 5e-4 -> 5e-5 linearly over the 30 rounds, as on 8 digits
    "fdecay": [*NO_FLOOR, "filter.schedule=linear"],
    "lrdecay": [*NO_FLOOR, "generator.schedule=linear"],
    "reset": [*NO_FLOOR, "generator.reset=true"],
    "kl_fdecay": [*NO_FLOOR, "generator.kl_coef=0.1", "filter.schedule=linear"],
    "kl_lrdecay": [*NO_FLOOR, "generator.kl_coef=0.1", "generator.schedule=linear"],
    # baselines of the regime comparison at the settings tuned on the 8-digit task
    # (results/tuning_addition/tune_*.yaml: tuned on seed 100 there, not on this task)
    "count": ["method=count", "count.coef=0.3", "pg.lr=3e-4"],
    "reinforce": ["method=reinforce", "pg.lr=3e-4"],
    "rnd": ["method=rnd", "rnd.coef=0.3", "pg.lr=3e-4"],
    "nsr": ["method=nsr", "pg.lr=1e-4"],
    "w_reinforce": ["method=w_reinforce", "pg.lr=1e-4"],
    "npo": ["method=npo"],
    "random": ["method=random"],
}

# the regime tuning of every baseline (results/tuning-regime): the same budget for each, three
# learning rates around its 8-digit setting on tuning seeds 0 and 1 (disjoint from the comparison's
# reporting seeds 10-14); the middle value is the arm above, named without a suffix
LR_GRID = {
    "reinforce": ("1e-4", "1e-3"),
    "count": ("1e-4", "1e-3"),
    "rnd": ("1e-4", "1e-3"),
    "npo": ("1e-4", "1e-3"),
    "nsr": ("3e-5", "3e-4"),
    "w_reinforce": ("3e-5", "3e-4"),
}
for _m, _lrs in LR_GRID.items():
    for _lr in _lrs:
        ARMS[f"{_m}_lr{_lr}"] = [*[x for x in ARMS[_m] if not x.startswith("pg.lr=")], f"pg.lr={_lr}"]

# BaNEL's own learning-rate grid on the chosen KL anchor, the same budget as every baseline's
# (generator.lr at half and twice the shipped 5e-4; tuning seeds 0 and 1)
for _lr in ("2.5e-4", "1e-3", "2e-3", "4e-3"):
    ARMS[f"kl_lr{_lr}"] = [*ARMS["kl"], f"generator.lr={_lr}"]
# 3 December: the chosen lr 1e-3 sat at the grid's edge, so 2e-3 and then 4e-3 were added above; and two pushes on
# the chosen setting, as the lr 1e-3 runs plateaued at 0.02-0.08 on 4 of 5 seeds: a harder filter
# (keep the top quarter, f = 4) and remembered negatives (every paid failure stays in p_phi's data)
ARMS["kl_f4"] = [*ARMS["kl_lr1e-3"], "filter.factor=4"]
ARMS["kl_negall"] = [*ARMS["kl_lr1e-3"], "negative.data=all"]

# the study's finals: 20,000 fresh draws (the chosen arm is re-evaluated on 100,000 with
# python -m banel_ray.evaluate RUN --samples 100000; the table reads the largest evaluation)
STUDY = ["eval.final_samples=20000", "eval.samples=2000"]


def command(runs: Path, arm: str, seed: int, extra: list[str] = ()) -> list[str]:
    d = runs / f"{arm}_s{seed}"
    if (d / "config.json").exists():
        return [sys.executable, "-m", "banel_ray.run", "--resume", str(d)]
    sets = [f"seed={seed}", f"run_dir={d}", *STUDY, *BASE, *ARMS[arm], *extra]
    return [sys.executable, "-m", "banel_ray.run", "--config", CONFIG] + [x for s in sets for x in ("--set", s)]


def main(argv: list[str]) -> int:
    runs, arms, seeds = Path(argv[0]), argv[1].split(","), argv[2]
    parallel = int(argv[argv.index("--parallel") + 1]) if "--parallel" in argv else 2
    extra = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]
    lo, _, hi = seeds.partition("-")
    seed_list = list(range(int(lo), int(hi or lo) + 1)) if "," not in seeds else [int(s) for s in seeds.split(",")]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"unknown arm(s) {', '.join(unknown)}; allowed: {', '.join(ARMS)}", file=sys.stderr)
        return 2
    todo = [(a, s) for s in seed_list for a in arms if not (runs / f"{a}_s{s}" / "summary.json").exists()]
    runs.mkdir(parents=True, exist_ok=True)
    live: list[tuple[subprocess.Popen, str]] = []
    while todo or live:
        while todo and len(live) < parallel:
            arm, seed = todo.pop(0)
            log = open(runs / f"{arm}_s{seed}.log", "a")
            live.append(
                (
                    subprocess.Popen(command(runs, arm, seed, extra), stdout=log, stderr=subprocess.STDOUT),
                    f"{arm}_s{seed}",
                )
            )
            print(f"[study] start {arm}_s{seed} ({len(todo)} queued)", flush=True)
        time.sleep(5)
        for p, name in list(live):
            if p.poll() is not None:
                live.remove((p, name))
                print(f"[study] {name} exit {p.returncode}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
