"""The ``mnist_0to6`` plug-in: ``MnistZeroToSix`` (4-token codes, exact rates by enumeration), its
prior (shipped, cached or trained on first use by ``assets.py``), reward, exact rate and reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task, flat_code_indices
from banel_ray.tasks.mnist.assets import train_prior
from banel_ray.tasks.mnist.common import (
    ASSETS,
    BOS,
    EOS,
    OFFSET,
    PAD,
    TARGET,
    VOCAB_SIZE,
    Classifier,
    K,
    V,
    codes_of,
    decode,
    save_grid,
    save_six_codes,
)


class MnistZeroToSix(Task):
    name = "mnist_0to6"
    free_evaluation = True  # local rewards: success-rate estimates cost nothing
    grid_samples = 64

    def __init__(self, prior: str = "", cache_dir: str = "", prior_epochs: int = 100, threads: int = 1):
        self.prior_path = prior
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "banel_ray")
        self.prior_epochs = int(prior_epochs)
        self.threads = int(threads)
        self.prompt = (BOS,)
        self.eos_id, self.pad_id = EOS, PAD
        self.max_new_tokens = K
        self._classifier = None
        self._success = None

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = Classifier()
        return self._classifier

    # ---- models -------------------------------------------------------------------------------
    def prior_dir(self, progress=print) -> Path:
        """The shipped prior when it was trained with these settings, else a cache entry."""
        if self.prior_path:
            return Path(self.prior_path)
        shipped = ASSETS / "prior"
        info = shipped / "banel_ray.json"
        if info.exists() and json.loads(info.read_text()).get("epochs") == self.prior_epochs:
            return shipped
        out = self.cache_dir / f"mnist_prior_e{self.prior_epochs}_{self.classifier.digest}"
        if not (out / "model.safetensors").exists():
            progress(f"[mnist] training the prior on zeros ({self.prior_epochs} epochs, cached in {out})")
            train_prior(out, self.prior_epochs, progress=progress, threads=self.threads)
        return out

    def prepare(self, progress=print) -> str:
        self.success_table(progress)
        return str(self.prior_dir(progress))

    def success_table(self, progress=print) -> np.ndarray:
        """Boolean (V,)*4 table: which codes the oracle calls a six. Shipped for the shipped
        oracle (assets/mnist/six_codes.npz), else computed once (about a minute) and cached."""
        if self._success is None:
            shipped = ASSETS / "six_codes.npz"
            path = self.cache_dir / f"mnist_six_codes_{self.classifier.digest}.npz"
            for p in (shipped, path):
                if p.exists():
                    with np.load(p) as d:
                        if str(d["digest"]) == self.classifier.digest:
                            self._success = np.unpackbits(d["bits"])[: V**K].reshape((V,) * K).astype(bool)
                            return self._success
            progress(f"[mnist] classifying all {V**K:,} codes once (a few minutes; cached in {path})")
            self._success = self.classifier.six_table()
            save_six_codes(path, self._success, self.classifier.digest)
        return self._success

    # ---- reward and exact rate ------------------------------------------------------------------
    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        valid, codes = codes_of(completions)
        out = np.zeros(len(completions), dtype=np.int64)
        if valid.any():
            out[valid] = self.classifier.is_six(decode(codes[valid], self.classifier.codebook))
        return out.tolist()

    def code_logprobs(self, model) -> np.ndarray:
        """log p(x) of every code, shape (V,)*4 (one pass over the 64**3 prefixes)."""
        from banel_ray.models import set_threads
        from banel_ray.models.exact_rate import all_logprobs

        set_threads(self.threads)
        return all_logprobs(model, self.prompt, range(OFFSET, VOCAB_SIZE), K)

    def success_codes(self) -> np.ndarray:
        return self.success_table()

    def code_completions(self, indices) -> list[tuple[int, ...]]:
        codes = np.stack(np.unravel_index(np.asarray(indices, dtype=np.int64), (V,) * K), axis=1) + OFFSET
        return [tuple(int(t) for t in row) for row in codes]

    def code_indices(self, completions) -> np.ndarray:
        return flat_code_indices(completions, OFFSET, V, K)

    def success_rate(self, model, samples: int | None = None) -> dict:  # exact: no draws
        from banel_ray.models.exact_rate import exact_estimate

        logp = self.code_logprobs(model)
        est = exact_estimate(logp, self.success_table(), f"exact over {V**K:,} codes")
        est["n_success_codes"] = int(self.success_table().sum())
        return est

    # ---- reporting ------------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        valid, codes = codes_of([completion])
        return "-".join(map(str, codes[0])) if valid[0] else "malformed:" + ",".join(map(str, completion))

    def pattern(self, completion: Sequence[int]) -> str:
        valid, codes = codes_of([completion])
        return f"class-{int(self.classifier.classify_codes(codes)[0])}" if valid[0] else "malformed"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        valid, codes = codes_of(completions)
        n = max(len(completions), 1)
        d = {
            "well_formed": float(valid.sum()) / n,
            "mean_length": float(np.mean([len(c) for c in completions])) if completions else 0.0,
        }
        if valid.any():
            cls = self.classifier.classify_codes(codes[valid])
            d["class_0"] = float((cls == 0).sum()) / n
            d["class_6"] = float((cls == TARGET).sum()) / n
            d["success"] = float(self.classifier.is_six(decode(codes[valid], self.classifier.codebook)).sum()) / n
        return d

    def save_sample_grid(self, path: Path, posterior: Sequence[Sequence[int]], seed: int = 0) -> Path:
        """PNG: prior samples (left) beside the given posterior samples (right), class in corner."""
        from banel_ray.models import load_model, sample

        prior = sample(load_model(self.prior_dir()), self.prompt, len(posterior), K, EOS, seed=seed)
        return save_grid(
            path, [("prior p0 (zeros only)", prior), ("BaNEL generator (end of run)", posterior)], self.classifier
        )
