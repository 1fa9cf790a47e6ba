"""MNIST 0-to-6 on binarised 12x12 pixels (paper §3.1), with an importance-sampled rate.

Image space. MNIST digits are averaged down to 14x14 (``mnist.downsample``), cropped to the
central 12x12 (the border holds 0.2% of the ink) and binarised (a pixel is on iff its 2x2 mean is
at least 128 of 255). An image is a string of 144 pixel tokens in raster order: 2**144 = 2.2e43
images, far too many to enumerate, so the success rate is *estimated* by importance sampling
(``success_rate``: ``banel_ray.measure.tilted`` + ``banel_ray.measure.importance``), with a 95%
interval and diagnostics; the estimator is validated against exact enumeration on the 4-token
task (``tasks.mnist_coverage``, docs/mnist.md).

* Prior p0: a Llama-style causal LM over the 144 pixels (after BOS), trained only on the 5,923
  training zeros; deterministic, shipped in ``assets/mnist/pixels_prior``.
* Oracle (``rule: typical``, the default): reward 1 iff the completion is exactly 144 pixel
  tokens, a 10-class MLP (144-256-10, all ten digits) gives class 6 a softmax probability >= 0.99,
  and the image is at least e^46.05 = 1e20 times likelier under a model of sixes
  (``assets/mnist/pixels_six_model``) than under the shipped zeros prior (the likelihood-ratio
  test: zero-like images the MLP calls 6 cannot pass it). Hence P_p0(success) <= e^-min_llr =
  1e-20 for the shipped prior by construction, and an importance weight p0/p_six on a success is
  at most 1e-20. A success must also be typical of sixes (log p_six >= -50 nats, as 99.5% of test
  sixes are): noise that p0 finds even less likely than p_six does passes the ratio alone.
  ``rule: classifier`` is the MLP alone (base rate about 1e-4). EOS or a special token:
  malformed, reward 0.
* Measuring instrument (never seen by a method): the same model of sixes; the proposals bridge the
  evaluated model to it token by token.
  Per-pixel on-counts of training sixes and zeros (``pixels_instrument.npz``) give an alternative
  ladder of fixed tilts (``pixel_tilt``).

Measured (docs/mnist.md): the prior's rate is about 1e-4, not the paper's 1e-25: the prior draws
zero-like images the classifier calls 6. ``mnist_0to6`` (``tasks/mnist.py``) is the 4-token code
task, kept unchanged.
Data: MNIST, Y. LeCun, C. Cortes, C. J. C. Burges, CC BY-SA 3.0 (see assets/mnist/LICENSE-MNIST.md).
``python -m banel_ray.tasks.mnist_pixels oracle|prior|six --out ...`` rebuilds the shipped assets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from banel_ray.tasks.base import Task
from banel_ray.tasks.mnist import ASSETS, BOS, EOS, HIDDEN, MIN_PROB, PAD, SHARED_MNIST, TARGET, downsample, load_data

SIDE = 12  # the central 12x12 of the 14x14 image
CROP = slice(1, 13)
L = SIDE * SIDE  # 144 pixel tokens
MIN_LLR = math.log(1e20)  # nats: log p_six(x) - log p0(x) a success needs under ``rule: typical``
# nats: log p_six(x) a success needs under ``rule: typical`` (99.5% of test sixes have more): noise
# that p0 finds even less likely than p_six does passes the ratio but is no six
MIN_SIX_LOGP = -50.0
RULES = ("typical", "classifier")
MAX_GAMMA = 3.0  # bridges past the model of sixes (gamma > 1) reach further into the success region
THRESHOLD = 128  # a pixel is on iff its 14x14 value (a 2x2 mean of the 28x28 image) is >= this
OFF, ON = 3, 4  # pixel tokens
PIXEL_TOKENS = (OFF, ON)
VOCAB_SIZE = 5
PRIOR_ARCH = dict(hidden=64, layers=2, heads=2, intermediate=256, max_positions=160)
PRIOR_DIR = ASSETS / "pixels_prior"
SIX_MODEL_DIR = ASSETS / "pixels_six_model"
ORACLE = ASSETS / "pixels_oracle.npz"
INSTRUMENT = ASSETS / "pixels_instrument.npz"


# ---- images ----------------------------------------------------------------------------------


def binarise(x14: np.ndarray) -> np.ndarray:
    """(n, 14, 14) uint8 -> (n, 12, 12) bool: the central crop, on iff >= THRESHOLD."""
    return np.asarray(x14)[:, CROP, CROP] >= THRESHOLD


def tokens_of(images: np.ndarray) -> list[tuple[int, ...]]:
    """(n, 12, 12) bool -> completions (144 pixel tokens each)."""
    flat = np.asarray(images, dtype=bool).reshape(len(images), L)
    return [tuple(row) for row in np.where(flat, ON, OFF).tolist()]


def images_of(completions: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, (n, 12, 12) float images in {0, 1}; rows of malformed completions are 0)."""
    n = len(completions)
    valid = np.zeros(n, dtype=bool)
    out = np.zeros((n, L), dtype=np.float64)
    for i, c in enumerate(completions):
        if len(c) == L:
            row = np.asarray(c)
            if ((row == OFF) | (row == ON)).all():
                valid[i] = True
                out[i] = row == ON
    return valid, out.reshape(n, SIDE, SIDE)


# ---- the classifier (the oracle) ---------------------------------------------------------------


class PixelClassifier:
    """MLP on the binary 12x12 image (float64 numpy; no torch needed to pay for a sample)."""

    def __init__(self, path: Path | None = None):
        with np.load(path or ORACLE) as d:
            self.w1, self.b1 = d["w1"].astype(np.float64), d["b1"].astype(np.float64)
            self.w2, self.b2 = d["w2"].astype(np.float64), d["b2"].astype(np.float64)
        self.digest = hashlib.sha256(
            b"".join(np.ascontiguousarray(a).tobytes() for a in (self.w1, self.b1, self.w2, self.b2))
        ).hexdigest()[:16]

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        return np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(-1)

    def log_p6(self, images: np.ndarray) -> np.ndarray:
        z = self.logits(images)
        m = z.max(-1, keepdims=True)
        return z[:, TARGET] - (m[:, 0] + np.log(np.exp(z - m).sum(-1)))

    def is_six(self, images: np.ndarray) -> np.ndarray:
        """The reward rule: softmax probability of class 6 >= MIN_PROB (float64)."""
        return self.log_p6(images) >= math.log(MIN_PROB)


def load_instrument(path: Path | None = None) -> dict:
    """Per-pixel on-counts of the training sixes and zeros (the proposals' tilt; never a method's)."""
    with np.load(path or INSTRUMENT) as d:
        return {k: d[k] for k in d.files}


def pixel_tilt(instrument: dict, smoothing: float = 1.0, clip: float = 4.0) -> np.ndarray:
    """(144, 2) additive logits [off, on] per pixel: the six-versus-zero log-odds of 'on'.

    Added (times a scale lambda) to a model's logits while sampling, it pulls each pixel towards
    what sixes have and zeros do not; ``clip`` bounds the pull of pixels no zero ever sets."""

    def logit(on, n):
        p = (on + smoothing) / (n + 2 * smoothing)
        return np.log(p) - np.log1p(-p)

    w = logit(instrument["six_on"], float(instrument["n_six"])) - logit(
        instrument["zero_on"], float(instrument["n_zero"])
    )
    w = np.clip(w.astype(np.float64), -clip, clip)
    return np.stack([np.zeros_like(w), w], axis=1)


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


def save_grid(path: Path, panels, classifier: PixelClassifier, success=None, cols: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.6))
    for ax, (title, comps) in zip(np.atleast_1d(axes), panels):
        valid, imgs = images_of(comps)
        imgs[~valid] = 0.5  # malformed: grey
        cls = classifier.classify(imgs)
        six = (success(comps) if success else classifier.is_six(imgs)) & valid
        rows = math.ceil(len(comps) / cols)
        canvas = np.ones((rows * (SIDE + 1), cols * (SIDE + 1)))
        for i, im in enumerate(imgs):
            r, c = divmod(i, cols)
            canvas[r * (SIDE + 1) : r * (SIDE + 1) + SIDE, c * (SIDE + 1) : c * (SIDE + 1) + SIDE] = 1 - im
            ax.text(
                c * (SIDE + 1) + 0.3,
                r * (SIDE + 1) + 2.0,
                "x" if not valid[i] else str(cls[i]),
                color="red" if six[i] else "tab:blue",
                fontsize=7,
            )
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n{int(six.sum())}/{len(comps)} successes (red), digit: the MLP's class", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- rebuilding the shipped assets (deterministic) -------------------------------------------


def build_oracle(mnist_full: Path, out: Path, epochs: int = 15, seed: int = 0, progress=print) -> dict:
    """The classifier of binary 12x12 images (all ten digits) and, beside it, the instrument."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with np.load(mnist_full) as d:
        x_train, y_train = binarise(downsample(d["x_train"])), d["y_train"]
        x_test, y_test = binarise(downsample(d["x_test"])), d["y_test"]
    t0 = time.time()
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(L, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    X = torch.from_numpy(x_train.reshape(len(x_train), L).astype(np.float32))
    Y = torch.from_numpy(y_train.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 128):
            b = perm[i : i + 128]
            loss = torch.nn.functional.cross_entropy(net(X[b]), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        progress(f"[mnist_pixels] classifier epoch {ep + 1}/{epochs} loss {float(loss):.4f} ({time.time() - t0:.0f}s)")
    w = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, w1=w["0.weight"].T.copy(), b1=w["0.bias"], w2=w["2.weight"].T.copy(), b2=w["2.bias"])
    o = PixelClassifier(out)
    sixes, zeros = x_train[y_train == TARGET], x_train[y_train == 0]
    np.savez_compressed(
        out.with_name(INSTRUMENT.name),
        six_on=sixes.reshape(-1, L).sum(0).astype(np.int64),
        n_six=np.array(len(sixes)),
        zero_on=zeros.reshape(-1, L).sum(0).astype(np.int64),
        n_zero=np.array(len(zeros)),
    )
    pred = o.classify(x_test)
    six_rule = o.is_six(x_test)
    info = {
        "test_accuracy": float((pred == y_test).mean()),
        "test_sixes_accepted": float(six_rule[y_test == TARGET].mean()),
        "test_zeros_accepted": float(six_rule[y_test == 0].mean()),
        "train_zeros_accepted": int(o.is_six(zeros).sum()),
        "epochs": epochs,
        "seed": seed,
        "hidden": HIDDEN,
        "threshold": THRESHOLD,
        "digest": o.digest,
        "seconds": round(time.time() - t0, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def zero_pairs(x14: np.ndarray) -> list:
    return [((BOS,), t) for t in tokens_of(binarise(x14))]


def train_prior(
    out: Path,
    epochs: int,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 3,
    progress=print,
    threads: int = 1,
    arch: dict | None = None,
    data: np.ndarray | None = None,
    heldout: np.ndarray | None = None,
    label: str = "mnist_pixels_prior",
):
    """The prior: a small Llama fitted to the binary pixels of the 5,923 training zeros only.

    ``data`` / ``heldout`` (14x14 uint8 images) replace the training / test zeros: the six model
    (``build_six_model``) and the tests' small models use them."""
    import torch

    from banel_ray.models import build_llama, mean_nll, save_model, set_threads, train_mle

    set_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    d = load_data()
    t0 = time.time()
    pairs = zero_pairs(d["zeros"] if data is None else data)
    held = zero_pairs(d["x_test"][d["y_test"] == 0] if heldout is None else heldout)
    arch = dict(arch or PRIOR_ARCH)
    model = build_llama(VOCAB_SIZE, seed=seed, **arch)
    losses = train_mle(
        model,
        pairs,
        epochs,
        lr,
        batch_size,
        seed,
        progress=(lambda e, n, l: progress(f"[{label}] epoch {e}/{n} NLL {l:.4f} ({time.time() - t0:.0f}s)"))
        if progress
        else None,
    )
    info = {
        "label": label,
        "epochs": epochs,
        "images": len(pairs),
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "arch": arch,
        "train_nll": losses[-1] if losses else float("nan"),
        "heldout_nll": mean_nll(model, held),
        "seconds": round(time.time() - t0, 1),
    }
    save_model(model, out, info)
    return model


def build_six_model(mnist_full: Path, out: Path, epochs: int = 8, progress=print) -> dict:
    """The model of sixes (the 5,918 training sixes only): the estimator's guide. Held-out NLL on
    the shipped test sixes. Part of the measuring instrument, never a method's."""
    with np.load(mnist_full) as d:
        sixes = downsample(d["x_train"][d["y_train"] == TARGET])
    data = load_data()
    test6 = data["x_test"][data["y_test"] == TARGET]
    train_prior(out, epochs, progress=progress, data=sixes, heldout=test6, label="mnist_pixels_six_model")
    return json.loads((out / "banel_ray.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m banel_ray.tasks.mnist_pixels",
        description="Rebuild the binarised-pixel MNIST 0-to-6 assets (deterministic, one thread).",
    )
    p.add_argument(
        "which",
        choices=["oracle", "prior", "six"],
        help="oracle: the classifier (.npz) with pixels_instrument.npz beside it; prior: the zeros-only Llama; "
        "six: the model of sixes (the estimator's guide)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--mnist", default=str(SHARED_MNIST), help="full MNIST uint8 .npz (oracle and six)")
    p.add_argument("--epochs", type=int, default=0, help="oracle: 15, prior: 60, six: 8 when 0")
    a = p.parse_args(argv)
    say = lambda s: print(s, flush=True)  # noqa: E731
    if a.which in ("oracle", "six") and not Path(a.mnist).is_file():
        print(f"error: --mnist file not found: {a.mnist}", file=sys.stderr)
        return 2
    if a.which == "oracle":
        print(json.dumps(build_oracle(Path(a.mnist), Path(a.out), epochs=a.epochs or 15, progress=say)))
    elif a.which == "six":
        print(json.dumps(build_six_model(Path(a.mnist), Path(a.out), epochs=a.epochs or 8, progress=say)))
    else:
        train_prior(Path(a.out), a.epochs or 60, progress=say)
        print((Path(a.out) / "banel_ray.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
