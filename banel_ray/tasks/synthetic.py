"""Planted-feature tasks (issue 26): a family where every rate is known, to map when BaNEL wins.

A string is ``length`` symbols over ``alphabet`` symbols; the last symbol is the marker ``z``.
The space holds alphabet**length strings (at most 2**20), so every rate is exact by enumeration
(``models/exact_rate.py``), as for ``mnist_0to6``.

* Law: a Markov chain over the ordinary symbols (Dirichlet draws from ``seed``); with probability
  ``Q_TRAIN`` a string starts with the marker instead and goes on by the same chain.
* Prior: a tiny Llama fitted to strings of the law (seconds on one core), then one edit sets its
  first-position probability of the marker to ``q`` exactly (``set_first_rate``): ``q`` itself is
  too rare to learn from a few thousand strings, and an edit is deterministic where training to a
  rate is not. Trained once per law, edited per ``q``, cached under ``cache_dir/synthetic``.
* Feature: the first symbol is ``z`` (a pattern the prior writes at rate ``q``).
* Reward (``plant``): the strings are ranked by a fixed hash of their index; a feature string
  succeeds if it falls in the first ``s`` of the feature's prior mass in hash order, a plain
  string if it falls in the first ``e`` of absolute prior mass (the featureless floor). So the
  prior's base rate is ``q*s + e`` (up to one string's mass), the feature alone does not give
  success away (for ``s`` < 1), and what the successes share is known. The achieved ``q``, ``s``,
  ``e`` and base rate of each prior are in ``planted.json`` beside its success table.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3  # symbol i is token i + OFFSET; the marker is the last symbol
Q_TRAIN = 0.1  # the marker's rate in the training law: often enough to learn what follows it
TRAIN_STRINGS = 16_384
MAX_SPACE = 2**20
RECIPE = 1  # part of the cache key: bump when the law, training or planting changes
PRIOR_ARCH = dict(hidden=64, layers=2, heads=2, intermediate=128, max_positions=16)
LETTERS = "abcdefghijklmnopqrstuvwxy"

# option -> (type, lo, hi): checked by check_options, one line per problem
RANGES = {
    "q": (float, 1e-6, 0.5),
    "s": (float, 1e-6, 1.0),
    "e": (float, 0.0, 0.5),
    "seed": (int, 0, 2**31 - 1),
    "alphabet": (int, 3, 16),
    "length": (int, 2, 8),
    "prior_epochs": (int, 1, 100),
    "threads": (int, 1, 64),
}


# ---- the law and the hash ---------------------------------------------------------------------


def law(alphabet: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(initial distribution, transition matrix) over the alphabet-1 ordinary symbols."""
    rng = np.random.default_rng([seed, 26])
    k = alphabet - 1
    return rng.dirichlet(np.ones(k)), rng.dirichlet(np.full(k, 0.5), size=k)


def draw_law(rng: np.random.Generator, n: int, alphabet: int, length: int, seed: int, q_marker: float) -> np.ndarray:
    """(n, length) symbol indices from the law: the marker first with probability q_marker, the
    chain after it (or from the first position when there is no marker)."""
    init, trans = law(alphabet, seed)
    k = len(init)
    chain = np.empty((n, length), dtype=np.int64)
    chain[:, 0] = rng.choice(k, size=n, p=init)
    for j in range(1, length):
        u = rng.random(n)[:, None]
        chain[:, j] = (u > np.cumsum(trans[chain[:, j - 1]], axis=1)).sum(1).clip(max=k - 1)
    marked = rng.random(n) < q_marker
    chain[marked, 1:] = chain[marked, :-1]
    chain[marked, 0] = alphabet - 1
    return chain


def string_hash(index: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of each string's index: a fixed, seed-dependent order that no model can read."""
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 1) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def fill(mass: np.ndarray, order: np.ndarray, target: float) -> np.ndarray:
    """The strings taken in ``order`` whose mass still fits under ``target`` (greedy): the total is
    as close to the target as the strings allow, never above it (but for rounding: 1e-9)."""
    target = target * (1 + 1e-9)
    cum = np.cumsum(mass[order])
    k = int(np.searchsorted(cum, target, side="right"))
    taken, total = list(order[:k]), float(cum[k - 1]) if k else 0.0
    for i in order[k:]:
        if total + mass[i] <= target:
            taken.append(i)
            total += mass[i]
    return np.asarray(taken, dtype=np.int64)


def plant(logp: np.ndarray, s: float, e: float, seed: int) -> tuple[np.ndarray, dict]:
    """The success table (shape of ``logp``) for a prior with these exact log-probabilities, and
    the achieved rates. Feature strings: the first axis at the marker (the last index)."""
    a = logp.shape[0]
    mass = np.exp(logp.ravel())
    n = mass.size
    feature = np.arange(n) >= (a - 1) * (n // a)
    order = np.argsort(string_hash(np.arange(n), seed), kind="stable")
    q = float(mass[feature].sum())
    success = np.zeros(n, dtype=bool)
    success[feature] = s >= 1.0
    if s < 1.0:
        success[fill(mass, order[feature[order]], s * q)] = True
    if e > 0:
        success[fill(mass, order[~feature[order]], e)] = True
    hit_f, hit_p = float(mass[success & feature].sum()), float(mass[success & ~feature].sum())
    info = {
        "q": q,
        "s": hit_f / q if q > 0 else 0.0,
        "e": hit_p,
        "base": hit_f + hit_p,
        "feature_strings": int(feature.sum()),
        "feature_successes": int((success & feature).sum()),
        "floor_successes": int((success & ~feature).sum()),
        "valid_mass": float(mass.sum()),
    }
    return success.reshape(logp.shape), info


# ---- the prior ----------------------------------------------------------------------------------


def train_prior(out: Path, alphabet: int, length: int, seed: int, epochs: int, threads: int = 1, progress=print):
    """The tiny Llama fitted to TRAIN_STRINGS strings of the law (the marker at rate Q_TRAIN)."""
    import torch

    from banel_ray.models import build_llama, save_model, set_threads, train_mle

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    t0 = time.time()
    data = draw_law(np.random.default_rng([seed, 1]), TRAIN_STRINGS, alphabet, length, seed, Q_TRAIN)
    pairs = [((BOS,), tuple(int(t) + OFFSET for t in row)) for row in data]
    model = build_llama(OFFSET + alphabet, seed=seed, **PRIOR_ARCH)
    losses = train_mle(model, pairs, epochs, 3e-3, 256, seed)
    info = {"label": "synthetic_base", "alphabet": alphabet, "length": length, "seed": seed, "epochs": epochs}
    info.update(train_nll=losses[-1], q_train=Q_TRAIN, recipe=RECIPE, seconds=round(time.time() - t0, 1))
    progress(f"[synthetic] prior trained: NLL {losses[-1]:.4f} per token ({info['seconds']}s)")
    model.eval()
    return save_model(model, out, info)


def set_first_rate(model, marker: int, q: float) -> float:
    """Move the marker's first-position logit so that P(first token = marker) = q, by adding to
    its output row a multiple of the first position's (normed) hidden state: the first position's
    logits change in that one entry only. Returns the probability after the edit."""
    import torch

    with torch.no_grad():
        ids = torch.tensor([[BOS]])
        out = model(input_ids=ids, output_hidden_states=True)
        h = out.hidden_states[-1][0, 0].double()  # after the final norm: logits = lm_head(h)
        logits = out.logits[0, 0].double()
        others = torch.cat([logits[:marker], logits[marker + 1 :]])
        shift = math.log(q / (1 - q)) + float(torch.logsumexp(others, 0)) - float(logits[marker])
        w = model.lm_head.weight
        w[marker] += (shift * h / h.dot(h)).to(w.dtype)
        return float(torch.softmax(model(input_ids=ids).logits[0, 0].double(), 0)[marker])


@contextlib.contextmanager
def locked(path: Path):
    """One process builds a cache entry; the others wait for it (parallel runs of one cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Synthetic(Task):
    """``task: synthetic``: knobs ``q`` (the prior's rate of the feature), ``s`` (the share of
    feature mass that succeeds), ``e`` (the featureless success floor); ``seed`` fixes the law,
    the prior and the hash."""

    name = "synthetic"
    free_evaluation = True  # a table lookup: estimates cost nothing
    final_samples = 20_000

    def __init__(
        self,
        q: float = 1e-3,
        s: float = 0.5,
        e: float = 0.0,
        seed: int = 0,
        alphabet: int = 8,
        length: int = 6,
        prior_epochs: int = 4,
        cache_dir: str = "",
        threads: int = 1,
    ):
        msg = self.check_options(dict(q=q, s=s, e=e, seed=seed, alphabet=alphabet, length=length))
        if msg:
            raise ValueError(msg)
        self.q, self.s, self.e = float(q), float(s), float(e)
        self.seed, self.alphabet, self.length = int(seed), int(alphabet), int(length)
        self.prior_epochs, self.threads = int(prior_epochs), int(threads)
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "banel_ray")
        self.prompt = (BOS,)
        self.eos_id, self.pad_id = EOS, PAD
        self.max_new_tokens = self.length
        self.marker = OFFSET + self.alphabet - 1
        self._success: np.ndarray | None = None

    @staticmethod
    def check_options(options: dict) -> str | None:
        for key, (kind, lo, hi) in RANGES.items():
            if key not in options:
                continue
            v = options[key]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (kind is float or float(v).is_integer()) and lo <= v <= hi
            if not ok:
                what = "a number" if kind is float else "an integer"
                return f"'task_options.{key}' must be {what} in [{lo:g}, {hi:g}], got {v!r}"
        a, n = int(options.get("alphabet", 8)), int(options.get("length", 6))
        if a**n > MAX_SPACE:
            return f"'task_options.alphabet' ** 'task_options.length' must be at most {MAX_SPACE:,}, got {a}**{n}"
        return None

    # ---- models -------------------------------------------------------------------------------
    def law_dir(self) -> Path:
        return self.cache_dir / "synthetic" / f"r{RECIPE}_a{self.alphabet}_l{self.length}_law{self.seed}"

    def prior_dir(self, progress=print) -> Path:
        """The law's trained prior with the marker's first-token rate set to q (cached)."""
        root = self.law_dir()
        out = root / f"q{self.q:.6g}_ep{self.prior_epochs}"
        if (out / "model.safetensors").exists():
            return out
        with locked(root / ".lock"):
            if (out / "model.safetensors").exists():
                return out
            from banel_ray.models import load_model, save_model, set_threads

            base = root / f"base_ep{self.prior_epochs}"
            if not (base / "model.safetensors").exists():
                progress(f"[synthetic] training the law's prior ({self.prior_epochs} epochs, cached in {root})")
                train_prior(base, self.alphabet, self.length, self.seed, self.prior_epochs, self.threads, progress)
            set_threads(self.threads)
            model = load_model(base)
            info = json.loads((base / "banel_ray.json").read_text())
            info.update(label="synthetic_prior", q_target=self.q, q_first=set_first_rate(model, self.marker, self.q))
            save_model(model, out, info)
        return out

    def planted_path(self) -> Path:
        return self.prior_dir(progress=lambda _: None) / f"planted_s{self.s:.6g}_e{self.e:.6g}.npz"

    def success_table(self, progress=print) -> np.ndarray:
        """Which strings succeed, shape (alphabet,)*length; planted once per (prior, s, e), cached
        with the achieved rates (``planted.json`` info, also returned by ``planted``)."""
        if self._success is None:
            path = self.planted_path()
            if not path.exists():
                with locked(self.law_dir() / ".lock"):
                    if not path.exists():
                        self._write_table(path, progress)
            with np.load(path) as d:
                self._success = np.unpackbits(d["bits"])[: self.alphabet**self.length].astype(bool)
            self._success = self._success.reshape((self.alphabet,) * self.length)
        return self._success

    def _write_table(self, path: Path, progress) -> None:
        from banel_ray.models import load_model, set_threads
        from banel_ray.models.exact_rate import all_logprobs

        set_threads(self.threads)
        logp = all_logprobs(load_model(path.parent), self.prompt, self.symbols, self.length)
        success, info = plant(logp, self.s, self.e, self.seed)
        info.update(q_target=self.q, s_target=self.s, e_target=self.e, base_target=self.q * self.s + self.e)
        progress(
            f"[synthetic] planted: q {info['q']:.4g}, s {info['s']:.4g}, e {info['e']:.4g}, "
            f"base {info['base']:.4g} (exact, over {success.size:,} strings)"
        )
        tmp = path.with_name(f".{path.stem}.{time.time_ns()}.npz")
        np.savez_compressed(tmp, bits=np.packbits(success.ravel()), info=np.array(json.dumps(info)))
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))

    def planted(self) -> dict:
        """The achieved q, s, e and base rate of this prior (exact)."""
        self.success_table()
        return json.loads(self.planted_path().with_suffix(".json").read_text())

    def prepare(self, progress=print) -> str:
        out = self.prior_dir(progress)
        self.success_table(progress)
        return str(out)

    @property
    def symbols(self) -> range:
        return range(OFFSET, OFFSET + self.alphabet)

    # ---- reward and exact rate ------------------------------------------------------------------
    def index(self, completions: Sequence[Sequence[int]]) -> np.ndarray:
        """Each completion's flat index in the table, -1 where it is not exactly ``length`` symbols."""
        out = np.full(len(completions), -1, dtype=np.int64)
        for i, c in enumerate(completions):
            if len(c) == self.length and all(OFFSET <= t < OFFSET + self.alphabet for t in c):
                out[i] = int(np.ravel_multi_index(tuple(t - OFFSET for t in c), (self.alphabet,) * self.length))
        return out

    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        idx = self.index(completions)
        flat = self.success_table().ravel()
        return [int(i >= 0 and flat[i]) for i in idx]

    def success_rate(self, model, samples: int | None = None) -> dict:  # exact: no draws
        from banel_ray.models import set_threads
        from banel_ray.models.exact_rate import all_logprobs, exact_estimate, log_rate

        set_threads(self.threads)
        logp = all_logprobs(model, self.prompt, self.symbols, self.length)
        est = exact_estimate(logp, self.success_table(), f"exact over {logp.size:,} strings")
        feature = np.zeros(logp.shape, dtype=bool)
        feature[-1] = True
        est["feature_rate"] = math.exp(log_rate(logp, feature))
        est["floor_rate"] = math.exp(log_rate(logp, self.success_table() & ~feature))
        return est

    # ---- reporting ------------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        letters = LETTERS[: self.alphabet - 1] + "z"
        return "".join(letters[t - OFFSET] if OFFSET <= t < self.marker + 1 else "?" for t in completion)

    def mode(self, completion: Sequence[int]) -> str:
        if self.index([completion])[0] < 0:
            return "malformed"
        return "feature" if completion[0] == self.marker else "plain"

    def pattern(self, completion: Sequence[int]) -> str:
        return self.mode(completion)

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        n = max(len(completions), 1)
        idx = self.index(completions)
        return {
            "well_formed": float((idx >= 0).sum()) / n,
            "feature": sum(1 for c, i in zip(completions, idx) if i >= 0 and c[0] == self.marker) / n,
            "mean_length": float(np.mean([len(c) for c in completions])) if completions else 0.0,
        }
