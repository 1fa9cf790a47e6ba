"""The default task: an adversarial attack on a digit-addition transformer (paper §3.2).

* Solver (the model under attack): a small Llama trained on ``a+b=`` -> ``sum`` with operands of
  1..``max_digits`` digits and **no leading zeros**. It answers greedily. The default task's solver
  writes the sum least-significant digit first (``answer_order``), which makes it near perfect in
  distribution (0 errors in 200,000); ``solver_answers`` always returns normal digit order.
* Attacker prior p0: a small Llama pre-trained to generate the same query strings ``a+b=``,
  stopped early (``prior_steps``; 200 for the default task) so that it still pads an operand with
  a leading zero now and then: the rare, learnable feature the paper's BaNEL found.
* Reward (``reward``, one criterion for the task, its measurements and the docs: ``answer_is_wrong``):
  1 iff the query is well formed (two operands of 1..max_digits digit characters, leading zeros
  allowed) and the solver's greedy answer is not exactly the canonical decimal sum it was trained
  to write (``exact``, the default); ``numeric`` accepts any digit string with the right value.
* Variants: ``addition_attack_numeric`` (numeric reward, a looser 100-step prior),
  ``addition_attack_d8`` (the 8-digit default of 20 November - 2 December, base 1.3e-2) and
  ``addition_attack_v1`` (the task before December: 3,000-step prior, numeric reward).

Both models are trained deterministically (fixed seeds, fresh synthetic batches, one thread) and
cached as HF folders; checkpoints shipped in ``banel_ray/assets`` seed the cache so a first run
does not spend an hour training the solver. ``python -m banel_ray.tasks.addition --help`` rebuilds them.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task

PAD, BOS, EOS = 0, 1, 2
CHARS = "0123456789+="
VOCAB = ["<pad>", "<bos>", "<eos>"] + list(CHARS)
TOK = {c: i + 3 for i, c in enumerate(CHARS)}
VOCAB_SIZE = 16  # 15 used, rounded up

ASSETS = Path(__file__).resolve().parent.parent / "assets"

SOLVER_ARCH = dict(hidden=128, layers=3, heads=4, intermediate=512, max_positions=48)
PRIOR_ARCH = dict(hidden=128, layers=2, heads=4, intermediate=256, max_positions=48)


def encode(text: str) -> tuple[int, ...]:
    return tuple(TOK[c] for c in text)


def decode(ids: Sequence[int]) -> str:
    return "".join(VOCAB[i] if 3 <= i < len(VOCAB) else ("?" if i >= len(VOCAB) else "") for i in ids if i != EOS)


def random_operands(rng: np.random.Generator, n: int, max_digits: int) -> list[tuple[int, int]]:
    """Operands with lengths uniform in 1..max_digits and no leading zeros (the training law)."""
    out = []
    lens = rng.integers(1, max_digits + 1, size=(n, 2))
    for la, lb in lens:
        a = int(rng.integers(10 ** (la - 1) if la > 1 else 0, 10**la))
        b = int(rng.integers(10 ** (lb - 1) if lb > 1 else 0, 10**lb))
        out.append((a, b))
    return out


def parse_query(ids: Sequence[int], max_digits: int) -> tuple[str, str] | None:
    """(a, b) digit strings if the completion is a well-formed query ending in EOS, else None."""
    if not ids or ids[-1] != EOS:
        return None
    m = re.fullmatch(rf"(\d{{1,{max_digits}}})\+(\d{{1,{max_digits}}})=", decode(ids[:-1]))
    return (m.group(1), m.group(2)) if m else None


def carry_chain(a: str, b: str) -> int:
    """Length of the longest run of consecutive carries when adding a and b."""
    x, y = a[::-1], b[::-1]
    best = run = carry = 0
    for i in range(max(len(x), len(y))):
        s = int(x[i] if i < len(x) else 0) + int(y[i] if i < len(y) else 0) + carry
        carry = int(s >= 10)
        run = run + 1 if carry else 0
        best = max(best, run)
    return best


REWARDS = ("exact", "numeric")


def answer_is_wrong(answer: str, a: str, b: str, reward: str) -> bool:
    """The one reward criterion of the addition attack (the task, its benchmark and the docs all
    call this). ``exact``: the answer must be exactly the canonical decimal sum the solver was
    trained to write (``str(int(a) + int(b))``), so "01594001" for ``97+01593904=`` is wrong.
    ``numeric``: any digit string with the right value is right (the reward before 2026-12)."""
    if reward == "exact":
        return answer != str(int(a) + int(b))
    if reward == "numeric":
        return not answer.isdigit() or int(answer) != int(a) + int(b)
    raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")


ANSWER_ORDERS = ("normal", "reversed")


def written_answer(total: int, reversed_: bool) -> str:
    """The digit string a solver is trained to write for ``total`` (reversed: least significant first)."""
    text = str(total)
    return text[::-1] if reversed_ else text


def has_leading_zero(a: str, b: str) -> bool:
    return (len(a) > 1 and a[0] == "0") or (len(b) > 1 and b[0] == "0")


def padding_mode(a: str, b: str) -> str:
    """The default task's modes: both operands padded with a leading zero, one, or neither (plain).
    With the reversed solver only padded queries ever fail."""
    pa, pb = len(a) > 1 and a[0] == "0", len(b) > 1 and b[0] == "0"
    return "both_padded" if pa and pb else ("one_padded" if pa or pb else "plain")


def mode_of(a: str, b: str, max_digits: int) -> str:
    """One coarse category per well-formed query, for the regime measurements and the per-round
    mechanism metrics: leading_zero (the paper's main failure mode), carry_chain (a long run of
    carries), other."""
    if has_leading_zero(a, b):
        return "leading_zero"
    if carry_chain(a, b) >= max(4, max_digits // 2):
        return "carry_chain"
    return "other"


def pattern_of(a: str, b: str, max_digits: int) -> str:
    """A short label for why a query might fool the solver (for the success report)."""
    tags = []
    if (len(a) > 1 and a[0] == "0") or (len(b) > 1 and b[0] == "0"):
        tags.append("leading-zero")
    c = carry_chain(a, b)
    if c >= max(4, max_digits // 2):
        tags.append(f"carry-chain-{c}")
    if max(len(a), len(b)) == max_digits:
        tags.append("max-length")
    return "+".join(tags) or "other"


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


# ---- deterministic pre-training --------------------------------------------------------------


def _train_stream(
    out: Path,
    arch: dict,
    make_batch,
    steps: int,
    lr: float,
    seed: int,
    label: str,
    progress,
    eval_fn=None,
    save_every: int = 0,
    stop_after: int = 0,
    threads: int = 1,
    ema: float = 0.0,
    extra_info: dict | None = None,
):
    """Train on fresh synthetic batches with AdamW + warmup/cosine.

    ``ema`` > 0 keeps an exponential moving average of the weights (decay ``ema`` per step); the
    saved and evaluated model is then the average, which removes much of the last steps' noise.
    """
    import torch

    from banel_ray.models import build_llama, cosine_lr, pad_pairs, save_model, set_threads, token_logprobs

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build_llama(VOCAB_SIZE, seed=seed, **arch)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    avg = None
    if ema > 0:
        import copy

        avg = copy.deepcopy(model)
        avg.eval()
    t0 = time.time()
    end = min(steps, stop_after) if stop_after else steps
    for step in range(end):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr)
        ids, attn, target = pad_pairs(make_batch(rng), PAD)
        lp, mask = token_logprobs(model, ids, attn, target)
        loss = -lp.sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if avg is not None:
            with torch.no_grad():
                d = min(ema, (1 + step) / (10 + step))  # short warm-up of the average
                for pa, pm in zip(avg.parameters(), model.parameters()):
                    pa.mul_(d).add_(pm.detach(), alpha=1 - d)
        last = step + 1 == end
        if progress and (step % 100 == 0 or last):
            progress(f"[{label}] step {step + 1}/{end} loss {float(loss):.4f} ({time.time() - t0:.0f}s)")
        if (save_every and (step + 1) % save_every == 0) or last:
            model.eval()
            keep = avg if avg is not None else model
            info = {
                "label": label,
                "steps": step + 1,
                "planned_steps": steps,
                "lr": lr,
                "seed": seed,
                "arch": arch,
                "seconds": round(time.time() - t0, 1),
                "ema": ema,
                **(extra_info or {}),
            }
            if eval_fn:
                info.update(eval_fn(keep))
                if progress:
                    progress(f"[{label}] eval at step {step + 1}: {info}")
            save_model(keep, out if last else out.with_name(out.name + f"-step{step + 1}"), info)
            model.train()
    model.eval()
    return avg if avg is not None else model


def hard_operands(rng: np.random.Generator, n: int, max_digits: int) -> list[tuple[int, int]]:
    """Queries where the solver errs most: long operands with a long carry chain (a digit pair
    that carries, then a run of pairs summing to 9 that pass the carry on). Training mixes them in
    (``hard_frac``); the held-out error is always measured on ``random_operands``, the query law."""
    out = []
    for _ in range(n):
        la = int(rng.integers(max(1, max_digits - 1), max_digits + 1))
        lb = int(rng.integers(1, max_digits + 1))
        if rng.random() < 0.5:
            la, lb = lb, la
        m = min(la, lb)
        a = rng.integers(0, 10, size=la)
        b = rng.integers(0, 10, size=lb)
        if m >= 2:  # digit i counts from the right
            c = int(rng.integers(0, m - 1))
            run = int(rng.integers(1, m - c))
            da = int(rng.integers(1, 10))
            a[la - 1 - c], b[lb - 1 - c] = da, int(rng.integers(10 - da, 10))
            for i in range(c + 1, c + 1 + run):
                d = int(rng.integers(0, 10))
                a[la - 1 - i], b[lb - 1 - i] = d, 9 - d
        if la > 1 and a[0] == 0:
            a[0] = int(rng.integers(1, 10))
        if lb > 1 and b[0] == 0:
            b[0] = int(rng.integers(1, 10))
        out.append((int("".join(map(str, a))), int("".join(map(str, b)))))
    return out


def weights_digest(model_dir) -> str:
    """A short sha256 of a model folder's weights: which solver a measurement was made with."""
    import hashlib

    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()[:16]


def solver_error(task: AdditionAttack, n: int = 200_000, seed: int = 777, batch: int = 20_000) -> dict:
    """The solver's error on ``n`` fresh queries of its own training law (no leading zeros), under
    the task's reward criterion, with a 95% Clopper-Pearson interval (and under the other
    criterion, from the same answers, in ``by_reward``)."""
    from banel_ray.algorithms.stats import clopper_pearson

    rng = np.random.default_rng(seed)
    wrong = {r: 0 for r in REWARDS}
    for start in range(0, n, batch):
        ops = [(str(a), str(b)) for a, b in random_operands(rng, min(batch, n - start), task.max_digits)]
        answers = task.solver_answers(ops)
        for r in REWARDS:
            wrong[r] += sum(answer_is_wrong(ans, a, b, r) for ans, (a, b) in zip(answers, ops))
    by_reward = {}
    for r, k in wrong.items():
        lo, hi = clopper_pearson(k, n)
        by_reward[r] = {"errors": k, "rate": k / n, "lo": lo, "hi": hi}
    return {"n": n, "seed": seed, "reward": task.reward, **by_reward[task.reward], "by_reward": by_reward}


def measure_regime(
    task: AdditionAttack, n: int = 1_000_000, seed: int = 424242, batch: int = 20_000, progress=None
) -> dict:
    """The prior's base success rate under the task's own reward, decomposed by mode: each mode's
    share of the draws, P(success | mode) and its share of the successes, all with 95%
    Clopper-Pearson intervals; and the same base rate under both criteria, with the share of
    ``exact`` successes whose value is right (format only). Shipped beside the prior as ``regime.json``."""
    from banel_ray.algorithms.stats import clopper_pearson
    from banel_ray.models import load_model, sample

    prior = load_model(task.prior_dir())
    counts: dict[str, list[int]] = {}
    by_rule = {r: 0 for r in REWARDS}
    format_only = 0
    t0 = time.time()
    for i, start in enumerate(range(0, n, batch)):
        draws = sample(prior, task.prompt, min(batch, n - start), task.max_new_tokens, task.eos_id, seed=seed + i)
        judged = task.judge(draws)
        for j, s in enumerate(draws):
            c = counts.setdefault(task.mode(s), [0, 0, 0, 0])
            c[0] += 1
            c[1] += judged[task.reward][j]
            c[2] += judged["exact"][j]
            c[3] += judged["numeric"][j]
        for r in REWARDS:
            by_rule[r] += sum(judged[r])
        format_only += sum(e and not v for e, v in zip(judged["exact"], judged["numeric"]))
        if progress:
            progress(f"[regime] {start + len(draws):,}/{n:,} draws ({time.time() - t0:.0f}s)")
    k = by_rule[task.reward]
    modes = {}
    for m, (n_m, k_m, e_m, v_m) in sorted(counts.items()):
        s_lo, s_hi = clopper_pearson(n_m, n)
        p_lo, p_hi = clopper_pearson(k_m, n_m)
        w_lo, w_hi = clopper_pearson(k_m, k) if k else (0.0, 1.0)
        modes[m] = {
            "draws": n_m,
            "successes": k_m,
            "share": n_m / n,
            "share_ci": [s_lo, s_hi],
            "p_success": k_m / n_m if n_m else 0.0,
            "p_success_ci": [p_lo, p_hi],
            "success_share": k_m / k if k else 0.0,
            "success_share_ci": [w_lo, w_hi],
            "p_success_exact": e_m / n_m if n_m else 0.0,
            "p_success_numeric": v_m / n_m if n_m else 0.0,
        }

    def rate(kk: int) -> dict:
        lo, hi = clopper_pearson(kk, n)
        return {"k": kk, "n": n, "rate": kk / n, "lo": lo, "hi": hi}

    return {
        "samples": n,
        "seed": seed,
        "reward": task.reward,
        "max_digits": task.max_digits,
        "base": rate(k),
        "base_by_reward": {r: rate(by_rule[r]) for r in REWARDS},
        "format_only_share_of_exact": format_only / by_rule["exact"] if by_rule["exact"] else 0.0,
        "modes": modes,
        "seconds": round(time.time() - t0, 1),
    }


def solver_accuracy(model, max_digits: int, n: int = 2000, seed: int = 12345, reversed_: bool = False) -> float:
    from banel_ray.models import greedy_batch

    rng = np.random.default_rng(seed)
    ops = random_operands(rng, n, max_digits)
    prompts = [(BOS,) + encode(f"{a}+{b}=") for a, b in ops]
    outs = greedy_batch(model, prompts, max_digits + 3, EOS, PAD)
    return float(np.mean([decode(o) == written_answer(a + b, reversed_) for o, (a, b) in zip(outs, ops)]))


def train_solver(
    out: Path,
    max_digits: int,
    steps: int,
    batch: int = 128,
    lr: float = 1.5e-3,
    seed: int = 1,
    progress=print,
    save_every: int = 0,
    stop_after: int = 0,
    threads: int = 1,
    hard_frac: float = 0.0,
    ema: float = 0.0,
    eval_n: int = 2000,
    arch: dict | None = None,
    answer_order: str = "normal",
):
    """``hard_frac`` of each batch comes from ``hard_operands``; ``ema``: see ``_train_stream``.
    ``answer_order="reversed"``: the solver writes the sum least-significant digit first, the
    order in which carries are computed, which a small transformer learns far more exactly
    (recorded in the checkpoint's ``banel_ray.json``; the task reverses it back)."""
    if answer_order not in ANSWER_ORDERS:
        raise ValueError(f"answer_order must be one of {', '.join(ANSWER_ORDERS)}, got {answer_order!r}")
    n_hard = int(round(batch * hard_frac))
    flip = answer_order == "reversed"

    def make_batch(rng):
        ops = random_operands(rng, batch - n_hard, max_digits) + hard_operands(rng, n_hard, max_digits)
        return [((BOS,) + encode(f"{a}+{b}="), encode(written_answer(a + b, flip)) + (EOS,)) for a, b in ops]

    return _train_stream(
        Path(out),
        arch or SOLVER_ARCH,
        make_batch,
        steps,
        lr,
        seed,
        "solver",
        progress,
        eval_fn=lambda m: {"accuracy": solver_accuracy(m, max_digits, n=eval_n, reversed_=flip)},
        save_every=save_every,
        stop_after=stop_after,
        threads=threads,
        ema=ema,
        extra_info={"answer_order": answer_order},
    )


def train_prior(
    out: Path,
    max_digits: int,
    steps: int,
    batch: int = 128,
    lr: float = 2e-3,
    seed: int = 2,
    progress=print,
    threads: int = 1,
    save_every: int = 0,
    stop_after: int = 0,
):
    """The attacker prior: the query strings of the solver's training law (never a leading zero).
    How long it trains sets how often it still writes one (an under-trained prior is looser)."""

    def make_batch(rng):
        return [((BOS,), encode(f"{a}+{b}=") + (EOS,)) for a, b in random_operands(rng, batch, max_digits)]

    return _train_stream(
        Path(out),
        PRIOR_ARCH,
        make_batch,
        steps,
        lr,
        seed,
        "prior",
        progress,
        threads=threads,
        save_every=save_every,
        stop_after=stop_after,
    )


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


VARIANTS = {c.name: c for c in (AdditionAttack, AdditionAttackNumeric, AdditionAttackD8, AdditionAttackV1)}


if __name__ == "__main__":
    sys.exit(main())
