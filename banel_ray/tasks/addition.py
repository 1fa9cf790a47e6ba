"""The default task: an adversarial attack on a digit-addition transformer (paper §3.2).

* Solver (the model under attack): a small Llama trained on ``a+b=`` -> ``sum`` with operands of
  1..``max_digits`` digits and **no leading zeros**. It answers greedily.
* Attacker prior p0: a small Llama pre-trained to generate the same query strings ``a+b=``.
* Reward: 1 iff the query is well formed (two operands of 1..max_digits digit characters, leading
  zeros allowed) and the solver's greedy answer is not the integer a+b.

Both models are trained deterministically (fixed seeds, fresh synthetic batches, one thread) and
cached as HF folders; checkpoints shipped in ``banel_ray/assets`` seed the cache so a first run
does not spend an hour training the solver. ``python -m banel_ray.tasks.addition --help`` rebuilds them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Sequence

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
        a = int(rng.integers(10 ** (la - 1) if la > 1 else 0, 10 ** la))
        b = int(rng.integers(10 ** (lb - 1) if lb > 1 else 0, 10 ** lb))
        out.append((a, b))
    return out


def parse_query(ids: Sequence[int], max_digits: int) -> tuple[str, str] | None:
    """(a, b) digit strings if the completion is a well-formed query ending in EOS, else None."""
    if not ids or ids[-1] != EOS:
        return None
    m = re.fullmatch(r"(\d{1,%d})\+(\d{1,%d})=" % (max_digits, max_digits), decode(ids[:-1]))
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
    name = "addition_attack"

    def __init__(self, max_digits: int = 8, solver: str = "", prior: str = "",
                 cache_dir: str = "", prior_steps: int = 3000, solver_steps: int = 16000,
                 threads: int = 1):
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

    # ---- models -------------------------------------------------------------------------------
    def _model_dir(self, kind: str, steps: int, train, progress) -> Path:
        """The cache entry (kind, digits, steps): the shipped checkpoint when it was trained with
        exactly these settings, else ~/.cache/banel_ray, trained deterministically on first use."""
        shipped = ASSETS / f"addition_{kind}_d{self.max_digits}"
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
        return self._model_dir("solver", self.solver_steps, train_solver, progress)

    def prior_dir(self, progress=print) -> Path:
        if self.prior_path:
            return Path(self.prior_path)
        return self._model_dir("prior", self.prior_steps, train_prior, progress)

    def prepare(self, progress=print) -> str:
        self.solver_dir(progress)
        return str(self.prior_dir(progress))

    # ---- reward -------------------------------------------------------------------------------
    def _load_solver(self):
        if self._solver is None:
            from banel_ray.models import load_model
            self._solver = load_model(self.solver_dir())
        return self._solver

    def solver_answers(self, queries: Sequence[tuple[str, str]]) -> list[str]:
        from banel_ray.models import greedy_batch
        prompts = [(BOS,) + encode(f"{a}+{b}=") for a, b in queries]
        outs = greedy_batch(self._load_solver(), prompts, self.max_digits + 3, EOS, PAD)
        return [decode(o) for o in outs]

    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        parsed = [parse_query(c, self.max_digits) for c in completions]
        idx = [i for i, q in enumerate(parsed) if q is not None]
        out = [0] * len(completions)
        if idx:
            answers = self.solver_answers([parsed[i] for i in idx])
            for i, ans in zip(idx, answers):
                a, b = parsed[i]
                out[i] = int(not ans.isdigit() or int(ans) != int(a) + int(b))
        return out

    # ---- reporting ----------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        return decode(completion) + ("" if completion and completion[-1] == EOS else "…")

    def pattern(self, completion: Sequence[int]) -> str:
        q = parse_query(completion, self.max_digits)
        return pattern_of(*q, self.max_digits) if q else "malformed"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        parsed = [parse_query(c, self.max_digits) for c in completions]
        ok = [q for q in parsed if q]
        lz = sum(1 for a, b in ok if (len(a) > 1 and a[0] == "0") or (len(b) > 1 and b[0] == "0"))
        n = max(len(completions), 1)
        return {"well_formed": len(ok) / n, "leading_zero": lz / n,
                "mean_length": float(np.mean([len(c) for c in completions])) if completions else 0.0}


# ---- deterministic pre-training --------------------------------------------------------------

def _train_stream(out: Path, arch: dict, make_batch, steps: int, lr: float, seed: int,
                  label: str, progress, eval_fn=None, save_every: int = 0, stop_after: int = 0,
                  threads: int = 1):
    """Train on fresh synthetic batches with AdamW + warmup/cosine; resumable from out.tmp-ckpt."""
    import torch
    from banel_ray.models import build_llama, cosine_lr, save_model, set_threads, _pad, _token_logprobs

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = build_llama(VOCAB_SIZE, seed=seed, **arch)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    end = min(steps, stop_after) if stop_after else steps
    for step in range(end):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr)
        ids, attn, target = _pad(make_batch(rng), PAD)
        lp, mask = _token_logprobs(model, ids, attn, target)
        loss = -lp.sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        last = step + 1 == end
        if progress and (step % 100 == 0 or last):
            progress(f"[{label}] step {step + 1}/{end} loss {float(loss):.4f} "
                     f"({time.time() - t0:.0f}s)")
        if (save_every and (step + 1) % save_every == 0) or last:
            model.eval()
            info = {"label": label, "steps": step + 1, "planned_steps": steps, "lr": lr, "seed": seed,
                    "arch": arch, "seconds": round(time.time() - t0, 1)}
            if eval_fn:
                info.update(eval_fn(model))
                if progress:
                    progress(f"[{label}] eval at step {step + 1}: {info}")
            save_model(model, out if last else out.with_name(out.name + f"-step{step + 1}"), info)
            model.train()
    model.eval()
    return model


def solver_accuracy(model, max_digits: int, n: int = 2000, seed: int = 12345) -> float:
    from banel_ray.models import greedy_batch
    rng = np.random.default_rng(seed)
    ops = random_operands(rng, n, max_digits)
    prompts = [(BOS,) + encode(f"{a}+{b}=") for a, b in ops]
    outs = greedy_batch(model, prompts, max_digits + 3, EOS, PAD)
    return float(np.mean([decode(o) == str(a + b) for o, (a, b) in zip(outs, ops)]))


def train_solver(out: Path, max_digits: int, steps: int, batch: int = 128, lr: float = 1.5e-3,
                 seed: int = 1, progress=print, save_every: int = 0, stop_after: int = 0,
                 threads: int = 1):
    def make_batch(rng):
        return [((BOS,) + encode(f"{a}+{b}="), encode(str(a + b)) + (EOS,))
                for a, b in random_operands(rng, batch, max_digits)]

    return _train_stream(Path(out), SOLVER_ARCH, make_batch, steps, lr, seed, "solver", progress,
                         eval_fn=lambda m: {"accuracy": solver_accuracy(m, max_digits)},
                         save_every=save_every, stop_after=stop_after, threads=threads)


def train_prior(out: Path, max_digits: int, steps: int, batch: int = 128, lr: float = 2e-3,
                seed: int = 2, progress=print, threads: int = 1):
    def make_batch(rng):
        return [((BOS,), encode(f"{a}+{b}=") + (EOS,))
                for a, b in random_operands(rng, batch, max_digits)]

    return _train_stream(Path(out), PRIOR_ARCH, make_batch, steps, lr, seed, "prior", progress,
                         threads=threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m banel_ray.tasks.addition",
                                description="Rebuild the addition task's solver or attacker prior "
                                            "(deterministic for a given seed and thread count).")
    p.add_argument("which", choices=["solver", "prior"])
    p.add_argument("--out", required=True, help="output HF folder")
    p.add_argument("--max-digits", type=int, default=8)
    p.add_argument("--steps", type=int, default=16000, help="planned steps (sets the LR schedule)")
    p.add_argument("--stop-after", type=int, default=0, help="stop early at this step (0: run all)")
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.which == "solver":
        train_solver(Path(a.out), a.max_digits, a.steps, save_every=a.save_every,
                     stop_after=a.stop_after, threads=a.threads,
                     progress=lambda s: print(s, flush=True))
    else:
        train_prior(Path(a.out), a.max_digits, a.steps, threads=a.threads,
                    progress=lambda s: print(s, flush=True))
    print(json.dumps(json.loads((Path(a.out) / "banel_ray.json").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
