"""The ``synthetic`` plug-in: ``Synthetic`` (knobs q, s, e), its prior (trained once per law and
edited per q by ``assets.py``, cached), the planted success table, its exact rates and reports."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task, flat_code_indices
from banel_ray.tasks.synthetic.assets import set_first_rate, train_prior
from banel_ray.tasks.synthetic.common import BOS, EOS, OFFSET, PAD, RECIPE, plant

MAX_SPACE = 2**20
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

    def code_logprobs(self, model) -> np.ndarray:
        """log p of every string, shape (alphabet,) * length (Algorithm 1's exact posterior, the
        exact distillation target)."""
        from banel_ray.models import set_threads
        from banel_ray.models.exact_rate import all_logprobs

        set_threads(self.threads)
        return all_logprobs(model, self.prompt, self.symbols, self.length)

    def success_codes(self) -> np.ndarray:
        return self.success_table()

    def code_completions(self, indices) -> list[tuple[int, ...]]:
        rows = np.stack(np.unravel_index(np.asarray(indices, dtype=np.int64), (self.alphabet,) * self.length), axis=1)
        return [tuple(int(t) + OFFSET for t in r) for r in rows]

    def code_indices(self, completions) -> np.ndarray:
        return flat_code_indices(completions, OFFSET, self.alphabet, self.length)

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
