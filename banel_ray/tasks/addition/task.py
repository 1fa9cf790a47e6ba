"""The addition attack's plug-in: ``AdditionAttack`` and its variants (the classes the runner
builds from ``task: addition_attack...``), their models (shipped, cached or trained on first use by
``assets.py``), reward, reference rate and reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from banel_ray.tasks.addition.assets import train_prior, train_solver
from banel_ray.tasks.addition.common import (
    ASSETS,
    BOS,
    EOS,
    PAD,
    REWARDS,
    answer_is_wrong,
    decode,
    encode,
    has_leading_zero,
    mode_of,
    padding_mode,
    parse_query,
    pattern_of,
    weights_digest,
)
from banel_ray.tasks.base import Task


class AdditionAttack(Task):
    """The default attack, in the paper's regime (since 2026-12-02): 5-digit operands, a solver
    that writes its sum reversed (0 errors in 200,000 in-distribution queries), the ``exact``
    reward and a 200-step prior whose base rate is about 3e-4 (measured on 10^6 draws in
    ``regime.json``), nearly every success a query with a padded operand (docs/regime.md). ``addition_attack_numeric`` pays only for wrong values (a looser
    prior); ``addition_attack_d8`` is the task before it."""

    name = "addition_attack"
    free_evaluation = True  # local rewards: success-rate estimates cost nothing
    final_samples = 100_000
    # how a missing solver is trained (the shipped one was trained so): kind name in the cache, kwargs
    solver_kind = "solver_rev"
    solver_recipe = {"ema": 0.999, "answer_order": "reversed"}

    def __init__(
        self,
        max_digits: int = 5,
        solver: str = "",
        prior: str = "",
        cache_dir: str = "",
        prior_steps: int = 200,
        solver_steps: int = 3000,
        threads: int = 1,
        reward: str = "exact",
    ):
        msg = self.check_options({"reward": reward})
        if msg:
            raise ValueError(msg)
        self.reward = reward
        self.max_digits = int(max_digits)
        self.solver_path = solver
        self.prior_path = prior
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "banel_ray")
        self.prior_steps = int(prior_steps)
        self.solver_steps = int(solver_steps)
        self.threads = int(threads)
        self.prompt = (BOS,)
        self.eos_id = EOS
        self.pad_id = PAD
        self.max_new_tokens = 2 * self.max_digits + 4
        self._solver = None
        self._solver_reversed = False
        self._judged: tuple | None = None

    # ---- models -------------------------------------------------------------------------------
    def _model_dir(self, kind: str, steps: int, train, progress) -> Path:
        """The cache entry (kind, digits, steps): the shipped checkpoint when it was trained with
        exactly these settings, else ~/.cache/banel_ray, trained deterministically on first use."""
        for shipped in (
            ASSETS / f"addition_{kind}_d{self.max_digits}_s{steps}",
            ASSETS / f"addition_{kind}_d{self.max_digits}",
        ):
            info = shipped / "banel_ray.json"
            if info.exists() and json.loads(info.read_text()).get("planned_steps") == steps:
                return shipped
        out = self.cache_dir / f"addition_{kind}_d{self.max_digits}_s{steps}"
        if not (out / "model.safetensors").exists():
            progress(f"[addition] training the {kind} ({steps} steps, cached in {out})")
            train(out, self.max_digits, steps, progress=progress, threads=self.threads)
        return out

    def solver_dir(self, progress=print) -> Path:
        if self.solver_path:
            return Path(self.solver_path)
        return self._model_dir(
            self.solver_kind, self.solver_steps, partial(train_solver, **self.solver_recipe), progress
        )

    def prior_dir(self, progress=print) -> Path:
        if self.prior_path:
            return Path(self.prior_path)
        return self._model_dir("prior", self.prior_steps, train_prior, progress)

    def prepare(self, progress=print) -> str:
        self.solver_dir(progress)
        return str(self.prior_dir(progress))

    def reference_rate(self) -> dict | None:
        """The base rate measured at length (``regime.json`` beside the prior, written by
        ``python -m banel_ray.tasks.addition regime``) when it was measured with this solver (by
        weight digest) and this reward; else None."""
        f = Path(self.prior_dir(progress=lambda s: None)) / "regime.json"
        if not f.exists():
            return None
        reg = json.loads(f.read_text())
        if reg.get("reward") != self.reward or reg.get("solver_digest") != weights_digest(self.solver_dir()):
            return None
        return dict(reg["base"], reference=True, samples=reg["samples"], source=str(f))

    # ---- reward -------------------------------------------------------------------------------
    def _load_solver(self):
        if self._solver is None:
            from banel_ray.models import load_model

            folder = self.solver_dir()
            info = folder / "banel_ray.json"
            order = json.loads(info.read_text()).get("answer_order", "normal") if info.exists() else "normal"
            self._solver_reversed = order == "reversed"
            self._solver = load_model(folder)
        return self._solver

    def solver_answers(self, queries: Sequence[tuple[str, str]]) -> list[str]:
        """The solver's greedy answers in normal digit order, whatever order it writes them in."""
        from banel_ray.models import greedy_batch

        solver = self._load_solver()
        prompts = [(BOS,) + encode(f"{a}+{b}=") for a, b in queries]
        outs = greedy_batch(solver, prompts, self.max_digits + 3, EOS, PAD)
        return [decode(o)[::-1] if self._solver_reversed else decode(o) for o in outs]

    def judge(self, completions: Sequence[Sequence[int]]) -> dict[str, list[int]]:
        """Each completion under both criteria ({"exact": [...], "numeric": [...]}): malformed
        queries fail neither. The last call is remembered, so that ``diagnostics`` on the same
        draws after ``rewards`` does not ask the solver twice."""
        if self._judged is not None and self._judged[0] is completions:
            return self._judged[1]
        parsed = [parse_query(c, self.max_digits) for c in completions]
        idx = [i for i, q in enumerate(parsed) if q is not None]
        out = {r: [0] * len(completions) for r in REWARDS}
        if idx:
            answers = self.solver_answers([parsed[i] for i in idx])
            for i, ans in zip(idx, answers):
                for r in REWARDS:
                    out[r][i] = int(answer_is_wrong(ans, *parsed[i], r))
        self._judged = (completions, out)
        return out

    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        return list(self.judge(completions)[self.reward])

    @staticmethod
    def check_options(options: dict) -> str | None:
        r = options.get("reward", "exact")
        if r not in REWARDS:
            return f"'task_options.reward' must be one of {', '.join(REWARDS)}, got {r!r}"
        return None

    # ---- reporting ----------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        return decode(completion) + ("" if completion and completion[-1] == EOS else "…")

    def pattern(self, completion: Sequence[int]) -> str:
        q = parse_query(completion, self.max_digits)
        return pattern_of(*q, self.max_digits) if q else "malformed"

    def mode(self, completion: Sequence[int]) -> str:
        q = parse_query(completion, self.max_digits)
        return padding_mode(*q) if q else "malformed"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        """Well-formed and padded shares, and the success rate under both criteria with the share
        that only the format makes a success (a right value written with a leading zero)."""
        parsed = [parse_query(c, self.max_digits) for c in completions]
        ok = [q for q in parsed if q]
        lz = sum(1 for a, b in ok if has_leading_zero(a, b))
        n = max(len(completions), 1)
        out = {
            "well_formed": len(ok) / n,
            "leading_zero": lz / n,
            "mean_length": float(np.mean([len(c) for c in completions])) if completions else 0.0,
        }
        if completions:
            j = self.judge(completions)
            out.update(
                rate_exact=sum(j["exact"]) / n,
                rate_numeric=sum(j["numeric"]) / n,
                format_only=sum(e and not v for e, v in zip(j["exact"], j["numeric"])) / n,
            )
        return out


class AdditionAttackNumeric(AdditionAttack):
    """The regime task paying only for wrong values (``task: addition_attack_numeric``): with the
    reversed solver a value goes wrong only on padded queries (about 9% of the prior's), so the
    prior must pad often enough: a 100-step prior, base about 3e-4, but 5% of its draws malformed,
    and every method measured here drifted into those (docs/regime.md)."""

    name = "addition_attack_numeric"

    def __init__(
        self,
        max_digits: int = 5,
        solver: str = "",
        prior: str = "",
        cache_dir: str = "",
        prior_steps: int = 100,
        solver_steps: int = 3000,
        threads: int = 1,
        reward: str = "numeric",
    ):
        super().__init__(max_digits, solver, prior, cache_dir, prior_steps, solver_steps, threads, reward)


class AdditionAttackD8(AdditionAttack):
    """The default task of 2026-11-20 to 2026-12-02 (``task: addition_attack_d8``): 8-digit
    operands, a solver writing its sum in the usual order (0.57% in-distribution error), the
    ``exact`` reward and the 600-step prior (base 1.29e-2). Kept so that ``results/drift-addition``
    and ``results/compare-addition-d8`` reproduce; its modes are leading_zero / carry_chain /
    other / malformed."""

    name = "addition_attack_d8"
    solver_kind = "solver"
    solver_recipe: dict = {}

    def __init__(
        self,
        max_digits: int = 8,
        solver: str = "",
        prior: str = "",
        cache_dir: str = "",
        prior_steps: int = 600,
        solver_steps: int = 16000,
        threads: int = 1,
        reward: str = "exact",
    ):
        super().__init__(max_digits, solver, prior, cache_dir, prior_steps, solver_steps, threads, reward)

    def mode(self, completion: Sequence[int]) -> str:
        q = parse_query(completion, self.max_digits)
        return mode_of(*q, self.max_digits) if q else "malformed"


class AdditionAttackV1(AdditionAttackD8):
    """The task as it was before 2026-12 (``task: addition_attack_v1``): operands of up to 8
    digits, the shipped 3,000-step prior (leading zeros in 1e-5 of its samples), the 16,000-step
    solver (0.67% in-distribution error) and the numeric reward. Kept so that earlier results
    (``results/compare-addition``, ``banel_ray/configs/addition_v1_*.yaml``) stay reproducible."""

    name = "addition_attack_v1"

    def __init__(
        self,
        max_digits: int = 8,
        solver: str = "",
        prior: str = "",
        cache_dir: str = "",
        prior_steps: int = 3000,
        solver_steps: int = 16000,
        threads: int = 1,
        reward: str = "numeric",
    ):
        super().__init__(max_digits, solver, prior, cache_dir, prior_steps, solver_steps, threads, reward)


VARIANTS = {c.name: c for c in (AdditionAttack, AdditionAttackNumeric, AdditionAttackD8, AdditionAttackV1)}
