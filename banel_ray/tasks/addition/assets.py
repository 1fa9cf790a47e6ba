"""Building and measuring the addition task's assets: deterministic pre-training of the solver and
the attacker prior, and the measurements shipped beside them (the solver's in-distribution error,
``solver_error.json``; the prior's base rate by mode, ``regime.json``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from banel_ray.tasks.addition.common import (
    ANSWER_ORDERS,
    BOS,
    EOS,
    PAD,
    REWARDS,
    VOCAB_SIZE,
    answer_is_wrong,
    decode,
    encode,
    random_operands,
    written_answer,
)
from banel_ray.tasks.base import Task

SOLVER_ARCH = dict(hidden=128, layers=3, heads=4, intermediate=512, max_positions=48)
PRIOR_ARCH = dict(hidden=128, layers=2, heads=4, intermediate=256, max_positions=48)


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


def solver_error(task: Task, n: int = 200_000, seed: int = 777, batch: int = 20_000) -> dict:
    """The solver's error on ``n`` fresh queries of its own training law (no leading zeros), under
    the task's reward criterion, with a 95% Clopper-Pearson interval (and under the other
    criterion, from the same answers, in ``by_reward``). ``task``: an ``AdditionAttack`` (``task.py``)."""
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


def measure_regime(task: Task, n: int = 1_000_000, seed: int = 424242, batch: int = 20_000, progress=None) -> dict:
    """The prior's base success rate under the task's own reward, decomposed by mode: each mode's
    share of the draws, P(success | mode) and its share of the successes, all with 95%
    Clopper-Pearson intervals; and the same base rate under both criteria, with the share of
    ``exact`` successes whose value is right (format only). Shipped beside the prior as ``regime.json``;
    ``task``: an ``AdditionAttack`` (``task.py``)."""
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
