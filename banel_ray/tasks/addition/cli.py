"""``python -m banel_ray.tasks.addition``: rebuild the addition task's solver or prior, or measure
them (``--help``)."""

from __future__ import annotations

import json
from pathlib import Path

from banel_ray.tasks.addition.assets import (
    SOLVER_ARCH,
    measure_regime,
    solver_error,
    train_prior,
    train_solver,
)
from banel_ray.tasks.addition.common import ANSWER_ORDERS, REWARDS, weights_digest
from banel_ray.tasks.addition.task import VARIANTS


def main(argv=None) -> int:
    from banel_ray.cli import Parser

    p = Parser(
        prog="python -m banel_ray.tasks.addition",
        description="Rebuild the addition task's solver or attacker prior, or measure them "
        "(deterministic for a given seed and thread count). Defaults are the --task's own.",
    )
    p.add_argument(
        "which",
        choices=["solver", "prior", "regime", "solver-error"],
        help="solver / prior: train one; regime: measure the prior's base rate by mode "
        "(--samples draws, written to --out as JSON); solver-error: the solver's error "
        "on --samples fresh in-distribution queries",
    )
    p.add_argument("--out", required=True, help="output HF folder (solver, prior) or JSON file")
    p.add_argument(
        "--task",
        default="addition_attack",
        choices=sorted(VARIANTS),
        help="whose defaults (digits, steps, solver recipe, reward) apply",
    )
    p.add_argument("--max-digits", type=int, default=0, help="operand digits (0: the task's)")
    p.add_argument("--steps", type=int, default=0, help="planned steps, which set the LR schedule (0: the task's)")
    p.add_argument("--stop-after", type=int, default=0, help="stop early at this step (0: run all)")
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--hard-frac",
        type=float,
        default=0.0,
        help="solver: fraction of each batch with long carry chains (0: the query law only)",
    )
    p.add_argument("--ema", type=float, default=-1.0, help="solver: weight-average decay per step (-1: the task's)")
    p.add_argument("--eval-n", type=int, default=2000, help="solver: held-out queries per checkpoint")
    p.add_argument("--lr", type=float, default=1.5e-3, help="solver: peak learning rate")
    p.add_argument("--layers", type=int, default=SOLVER_ARCH["layers"], help="solver: transformer layers")
    p.add_argument(
        "--answer-order",
        default="",
        choices=["", *ANSWER_ORDERS],
        help="solver: write the sum least-significant digit first or as usual (empty: the task's)",
    )
    p.add_argument("--samples", type=int, default=1_000_000, help="regime / solver-error: draws")
    p.add_argument("--reward", default="", choices=["", *REWARDS], help="regime / solver-error: the criterion")
    p.add_argument("--prior", default="", help="regime: the prior folder (default: the task's)")
    p.add_argument("--solver", default="", help="regime / solver-error: the solver folder (default: the task's)")
    p.add_argument("--seed", type=int, default=424242, help="regime / solver-error: seed of the draws")
    a = p.parse_args(argv)
    opts = {k: v for k, v in (("max_digits", a.max_digits), ("reward", a.reward)) if v}
    if a.which in ("regime", "solver-error"):
        from banel_ray.models import set_threads

        set_threads(a.threads)
        task = VARIANTS[a.task](prior=a.prior, solver=a.solver, **opts)
        if a.which == "regime":
            res = measure_regime(task, a.samples, a.seed, progress=lambda s: print(s, flush=True))
            res.update(
                prior=str(task.prior_dir()),
                solver=str(task.solver_dir()),
                solver_digest=weights_digest(task.solver_dir()),
            )
        else:
            res = dict(
                solver_error(task, a.samples, a.seed),
                solver=str(task.solver_dir()),
                solver_digest=weights_digest(task.solver_dir()),
            )
        Path(a.out).write_text(json.dumps(res, indent=2, sort_keys=True))
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    task = VARIANTS[a.task](**opts)
    if a.which == "solver":
        recipe = dict(task.solver_recipe)
        if a.ema >= 0:
            recipe["ema"] = a.ema
        if a.answer_order:
            recipe["answer_order"] = a.answer_order
        train_solver(
            Path(a.out),
            task.max_digits,
            a.steps or task.solver_steps,
            save_every=a.save_every,
            stop_after=a.stop_after,
            threads=a.threads,
            hard_frac=a.hard_frac,
            eval_n=a.eval_n,
            lr=a.lr,
            arch=dict(SOLVER_ARCH, layers=a.layers),
            progress=lambda s: print(s, flush=True),
            **recipe,
        )
    else:
        train_prior(
            Path(a.out),
            task.max_digits,
            a.steps or task.prior_steps,
            threads=a.threads,
            save_every=a.save_every,
            stop_after=a.stop_after,
            progress=lambda s: print(s, flush=True),
        )
    print(json.dumps(json.loads((Path(a.out) / "banel_ray.json").read_text())))
    return 0
