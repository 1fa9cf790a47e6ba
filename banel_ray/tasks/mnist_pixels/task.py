"""The ``mnist_0to6_pixels`` plug-in: ``MnistPixels`` (binarised 12x12 pixels, an importance-sampled
rate), its prior (shipped, cached or trained on first use by ``assets.py``), its rule (``typical``
or ``classifier``), the estimator's proposals and reports."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task
from banel_ray.tasks.mnist.common import BOS, EOS, PAD, TARGET
from banel_ray.tasks.mnist_pixels.assets import train_prior
from banel_ray.tasks.mnist_pixels.common import (
    PIXEL_TOKENS,
    PRIOR_DIR,
    SIX_MODEL_DIR,
    L,
    PixelClassifier,
    images_of,
    load_instrument,
    pixel_tilt,
    save_grid,
)

MIN_LLR = math.log(1e20)  # nats: log p_six(x) - log p0(x) a success needs under ``rule: typical``
# nats: log p_six(x) a success needs under ``rule: typical`` (99.5% of test sixes have more): noise
# that p0 finds even less likely than p_six does passes the ratio but is no six
MIN_SIX_LOGP = -50.0
RULES = ("typical", "classifier")
MAX_GAMMA = 3.0  # bridges past the model of sixes (gamma > 1) reach further into the success region


# ---- the task --------------------------------------------------------------------------------


class MnistPixels(Task):
    name = "mnist_0to6_pixels"
    grid_samples = 64
    free_evaluation = (
        True  # a local classifier: estimates cost nothing (the rates themselves come from importance sampling)
    )

    def __init__(
        self,
        prior: str = "",
        cache_dir: str = "",
        prior_epochs: int = 60,
        threads: int = 1,
        is_samples: int = 4000,
        is_scales: str = "",
        is_gammas: str = "0,0.5,1,1.25,1.5",
        is_seed: int = 0,
        rule: str = "typical",
        min_llr: float = MIN_LLR,
        min_six_logp: float = MIN_SIX_LOGP,
    ):
        self.prior_path = prior
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "banel_ray")
        self.prior_epochs = int(prior_epochs)
        self.threads = int(threads)
        self.is_samples = int(is_samples)
        self.is_gammas = parse_gammas(is_gammas)
        self.is_scales = parse_scales(is_scales)
        self.is_seed = int(is_seed)
        self.rule = str(rule)
        self.min_llr = float(min_llr)
        self.min_six_logp = float(min_six_logp)
        self._reference = None
        self.prompt = (BOS,)
        self.eos_id, self.pad_id = EOS, PAD
        self.max_new_tokens = L
        self._classifier = None
        self._tilt = None
        self._six_model = None

    @staticmethod
    def check_options(options: dict) -> str | None:
        if str(options.get("rule", "typical")) not in RULES:
            return f"'task_options.rule' must be one of {', '.join(RULES)}, got {options['rule']!r}"
        for key, default in (("min_llr", MIN_LLR), ("min_six_logp", MIN_SIX_LOGP)):
            v = options.get(key, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"'task_options.{key}' must be a finite number of nats, got {v!r}"
        text = str(options.get("is_gammas", "0,1"))
        try:
            gammas = parse_gammas(text)
        except ValueError:
            return (
                f"'task_options.is_gammas' must be comma-separated numbers in [0, {MAX_GAMMA:g}] starting with 0, "
                f"got {text!r}"
            )
        if gammas[0] != 0:
            return "'task_options.is_gammas' must start with 0 (the defensive component: the model itself)"
        try:
            scales = parse_scales(str(options.get("is_scales", "1")))
        except ValueError:
            return f"'task_options.is_scales' must be comma-separated numbers >= 0, got {options['is_scales']!r}"
        n = options.get("is_samples", 4000)
        if not isinstance(n, int) or isinstance(n, bool) or n < 2 * (len(gammas) + len(scales)):
            return f"'task_options.is_samples' must be an integer >= 2 per proposal, got {n!r}"
        return None

    @property
    def classifier(self) -> PixelClassifier:
        if self._classifier is None:
            self._classifier = PixelClassifier()
        return self._classifier

    @property
    def six_model(self):
        """The model of sixes: the estimator's guide (the measuring instrument; no method sees it)."""
        if self._six_model is None:
            from banel_ray.models import load_model

            self._six_model = load_model(SIX_MODEL_DIR)
        return self._six_model

    @property
    def reference(self):
        """The zeros model of the likelihood-ratio test: always the shipped prior (part of the oracle)."""
        if self._reference is None:
            from banel_ray.models import load_model

            self._reference = load_model(PRIOR_DIR)
        return self._reference

    def log_likelihoods(self, completions: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(log p_six(x), log p0(x)) for well-formed completions (144 pixel tokens each)."""
        from banel_ray.models import sequence_logprobs

        pairs = [(self.prompt, tuple(c)) for c in completions]
        six, _ = sequence_logprobs(self.six_model, pairs, pad_id=PAD)
        zero, _ = sequence_logprobs(self.reference, pairs, pad_id=PAD)
        return six, zero

    def log_likelihood_ratio(self, completions: Sequence[Sequence[int]]) -> np.ndarray:
        """log p_six(x) - log p0(x) for well-formed completions."""
        six, zero = self.log_likelihoods(completions)
        return six - zero

    @property
    def tilt(self) -> np.ndarray:
        if self._tilt is None:
            self._tilt = pixel_tilt(load_instrument())
        return self._tilt

    # ---- models -------------------------------------------------------------------------------
    def prior_dir(self, progress=print) -> Path:
        """The shipped prior when it was trained with these settings, else a cache entry."""
        if self.prior_path:
            return Path(self.prior_path)
        info = PRIOR_DIR / "banel_ray.json"
        if info.exists() and json.loads(info.read_text()).get("epochs") == self.prior_epochs:
            return PRIOR_DIR
        out = self.cache_dir / f"mnist_pixels_prior_e{self.prior_epochs}"
        if not (out / "model.safetensors").exists():
            progress(f"[mnist_pixels] training the prior on zeros ({self.prior_epochs} epochs, cached in {out})")
            train_prior(out, self.prior_epochs, progress=progress, threads=self.threads)
        return out

    def prepare(self, progress=print) -> str:
        return str(self.prior_dir(progress))

    # ---- reward and estimated rate ------------------------------------------------------------
    def rewards(self, completions: Sequence[Sequence[int]]) -> list[int]:
        return self.success(completions).astype(np.int64).tolist()

    def success(self, completions: Sequence[Sequence[int]], guide_log_p=None) -> np.ndarray:
        """The rule: 144 pixel tokens, the classifier's softmax p(6) >= 0.99 and (``rule:
        typical``) log p_six - log p0 >= ``min_llr`` and log p_six >= ``min_six_logp``
        (``guide_log_p`` is unused: the oracle scores with its own models)."""
        valid, images = images_of(completions)
        out = np.zeros(len(completions), dtype=bool)
        if valid.any():
            out[valid] = self.classifier.is_six(images[valid])
        if self.rule == "typical" and out.any():
            idx = np.flatnonzero(out)
            six, zero = self.log_likelihoods([completions[i] for i in idx])
            out[idx] = (six - zero >= self.min_llr) & (six >= self.min_six_logp)
        return out

    def success_rate(self, model, samples: int | None = None) -> dict:
        """Importance-sampling estimate of P_model(six), with its 95% interval and diagnostics.

        Proposals (a defensive mixture, balance-heuristic weights): the model itself; the model
        tilted by the six-versus-zero pixel log-odds at each scale of ``is_scales``; and the model
        bridged token by token to the six model, (1 - gamma) log g + gamma log p_six, at each
        gamma of ``is_gammas``."""
        from banel_ray.measure.tilted import estimate_rate
        from banel_ray.models import set_threads

        set_threads(self.threads)
        comps = [(0.0, 0.0)] + [(0.0, s) for s in self.is_scales] + [(g, 0.0) for g in self.is_gammas if g > 0]
        est = estimate_rate(
            model,
            self.prompt,
            PIXEL_TOKENS,
            self.tilt,
            comps,
            int(samples or self.is_samples),
            self.success,
            seed=self.is_seed,
            label=f"importance sampling over 2^{L} images",
            guide=self.six_model,
        )
        if self.rule == "typical" and self.is_reference(model):
            # every success has p0(x) <= e^-min_llr p_six(x): the sum over them is at most e^-min_llr
            est["certain_hi"] = math.exp(-self.min_llr)
        return est

    def is_reference(self, model) -> bool:
        """Whether ``model`` has the shipped prior's weights (the rule's zeros model)."""
        import torch

        ref = self.reference.state_dict()
        mine = model.state_dict()
        return mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)

    # ---- reporting ----------------------------------------------------------------------------
    def render(self, completion: Sequence[int]) -> str:
        valid, img = images_of([completion])
        if not valid[0]:
            return "malformed:" + ",".join(map(str, completion))
        return "/".join("".join("#" if v else "." for v in row) for row in img[0])

    def pattern(self, completion: Sequence[int]) -> str:
        valid, img = images_of([completion])
        return f"class-{int(self.classifier.classify(img)[0])}" if valid[0] else "malformed"

    def diagnostics(self, completions: Sequence[Sequence[int]]) -> dict:
        valid, images = images_of(completions)
        n = max(len(completions), 1)
        d = {
            "well_formed": float(valid.sum()) / n,
            "mean_length": float(np.mean([len(c) for c in completions])) if completions else 0.0,
        }
        if valid.any():
            cls = self.classifier.classify(images[valid])
            d["class_0"] = float((cls == 0).sum()) / n
            d["class_6"] = float((cls == TARGET).sum()) / n
            d["success"] = float(self.success(completions).sum()) / n
            d["ink"] = float(images[valid].mean())
            # how far towards sixes the samples are: the likelihood-ratio test's statistic
            llr = self.log_likelihood_ratio([c for c, v in zip(completions, valid) if v])
            d["llr_mean"], d["llr_max"] = float(llr.mean()), float(llr.max())
        return d

    def save_sample_grid(self, path: Path, posterior: Sequence[Sequence[int]], seed: int = 0) -> Path:
        """PNG: prior samples (left) beside the given posterior samples (right), class in corner."""
        from banel_ray.models import load_model, sample

        prior = sample(load_model(self.prior_dir()), self.prompt, len(posterior), L, EOS, seed=seed)
        return save_grid(
            path,
            [("prior p0 (zeros only)", prior), ("generator (end of run)", posterior)],
            self.classifier,
            self.success,
        )


def parse_scales(text: str) -> tuple[float, ...]:
    vals = tuple(float(x) for x in str(text).split(",") if x.strip())
    if any(not math.isfinite(v) or v < 0 for v in vals):
        raise ValueError(text)
    return vals


def parse_gammas(text: str) -> tuple[float, ...]:
    vals = tuple(float(x) for x in str(text).split(",") if x.strip())
    if not vals or any(not (0.0 <= v <= MAX_GAMMA) for v in vals):
        raise ValueError(text)
    return vals
