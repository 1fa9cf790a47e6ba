"""Building and measuring the ``mnist_0to6_rare`` prior: the tempered fit (``FIT``, ``TEMPERATURE``)
and the first, sharpened prior (``SHARPEN``), deterministic; the record of its exact rate and spread
(``regime``) and how a recomputed record differs from the shipped one (``differences``)."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

from banel_ray.tasks.mnist.assets import zero_pairs
from banel_ray.tasks.mnist.common import (
    ASSETS,
    BOS,
    OFFSET,
    VOCAB_SIZE,
    Classifier,
    K,
    V,
    epoch_progress,
    torch_deterministic,
)
from banel_ray.tasks.mnist_rare.task import PRIOR, MnistRare

# the recipe of the shipped prior: a fit to the zeros' next-code distributions to the power T
# (architecture, cosine learning rate lr -> final_lr, batch, seed), then 1/T
FIT = dict(
    arch=dict(hidden=128, layers=2, heads=2, intermediate=512, max_positions=8),
    epochs=200,
    lr=2e-3,
    final_lr=1e-5,
    batch_size=64,
    seed=3,
)
TEMPERATURE = 0.2
# the first prior's recipe (issue 22, kept to reproduce docs/mnist.md's rows): the mnist_0to6 prior,
# further epochs on the zeros (lr, batch, seed), then 1/0.19
SHARPEN = dict(epochs=300, lr=2e-3, batch_size=256, seed=5)
SHARPEN_TEMPERATURE = 0.19
TOP = 16  # the record keeps the likeliest codes and their log-probabilities (a fast check of the weights)


# ---- the prior ---------------------------------------------------------------------------------


def temper(model, temperature: float):
    """Divide the model's next-token logits by ``temperature`` at every position (in place)."""
    import torch

    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.mul_(1.0 / temperature)
        if getattr(head, "bias", None) is not None:
            head.bias.mul_(1.0 / temperature)
    return model


def weights_digest(model) -> str:
    """Digest of the weights (not of the file), so a record names the model it describes."""
    sd = model.state_dict()
    return hashlib.sha256(b"".join(sd[k].detach().cpu().numpy().tobytes() for k in sorted(sd))).hexdigest()[:16]


def zero_codes(classifier: Classifier) -> np.ndarray:
    """The codes of the training zeros the prior is fitted to, (n, K) code indices (``zero_pairs``)."""
    pairs, _ = zero_pairs(classifier)
    return np.array([[t - OFFSET for t in c] for _, c in pairs], dtype=np.int64)


def tempered_targets(codes: np.ndarray, power: float) -> np.ndarray:
    """(n, K, V): for each code and position t, the empirical distribution of the next code after
    its prefix codes[:t] (over all ``codes``), raised to ``power`` and renormalised."""
    n = len(codes)
    out = np.zeros((n, K, V))
    for t in range(K):
        key = np.zeros(n, dtype=np.int64)
        for j in range(t):
            key = key * V + codes[:, j]
        uniq, inv = np.unique(key, return_inverse=True)
        counts = np.zeros((len(uniq), V))
        np.add.at(counts, (inv, codes[:, t]), 1)
        p = np.where(counts > 0, counts**power, 0.0)
        out[:, t] = (p / p.sum(1, keepdims=True))[inv]
    return out


def fit_tempered(
    model,
    codes: np.ndarray,
    power: float,
    epochs: int,
    lr: float,
    final_lr: float,
    batch_size: int,
    seed: int,
    progress=None,
) -> list[float]:
    """Fit ``model`` (after BOS) to ``tempered_targets(codes, power)`` by cross-entropy at all K
    positions (AdamW, shuffled mini-batches, cosine learning rate lr -> final_lr). Returns the KL
    from the targets per token, one value per epoch (0 is a perfect fit)."""
    import torch

    tg = tempered_targets(codes, power)
    target_entropy = float(-(tg * np.log(np.where(tg > 0, tg, 1.0))).sum(-1).mean())
    targets = torch.tensor(tg, dtype=torch.float32)
    n = len(codes)
    ids = torch.tensor(np.concatenate([np.full((n, 1), BOS), codes[:, :-1] + OFFSET], 1), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps, step = epochs * math.ceil(n / batch_size), 0
    model.train()
    kls = []
    for ep in range(1, epochs + 1):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, batch_size):
            b = order[s : s + batch_size]
            for g in opt.param_groups:
                g["lr"] = final_lr + (lr - final_lr) * 0.5 * (1 + math.cos(math.pi * step / max(1, steps - 1)))
            step += 1
            logsm = torch.log_softmax(model(input_ids=ids[b]).logits.float(), -1)[..., OFFSET:]
            loss = -(targets[b] * logsm).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += float(loss.detach()) * len(b)
        kls.append(total / n - target_entropy)
        if progress:
            progress(ep, epochs, kls[-1])
    model.eval()
    return kls


def build_prior(
    out: Path,
    epochs: int = FIT["epochs"],
    temperature: float = TEMPERATURE,
    power: float | None = None,
    progress=print,
):
    """The shipped prior: ``FIT`` to the zeros' next-code distributions to the ``power`` (default:
    ``temperature``), then logits divided by ``temperature`` (1: the fitted model as it is)."""
    from banel_ray.models import build_llama

    power = temperature if power is None else power
    torch_deterministic(1)
    classifier = Classifier()
    codes = zero_codes(classifier)
    _, test0 = zero_pairs(classifier)
    model = build_llama(VOCAB_SIZE, seed=FIT["seed"], **FIT["arch"])
    t0 = time.time()
    kls = fit_tempered(
        model,
        codes,
        power,
        epochs,
        FIT["lr"],
        FIT["final_lr"],
        FIT["batch_size"],
        FIT["seed"],
        progress=(
            lambda e, n, k: progress(f"[mnist_rare prior] epoch {e}/{n} KL/token {k:.5f} ({time.time() - t0:.0f}s)")
        )
        if progress
        else None,
    )
    temper(model, temperature)
    info = {
        "label": "mnist_rare_prior",
        "recipe": "tempered_fit",
        "fit": dict(FIT, epochs=epochs),
        "power": power,
        "temperature": temperature,
        "zeros": len(codes),
        "fit_kl_per_token": kls[-1] if kls else None,
    }
    return _save_prior(model, out, info, classifier, test0, t0)


def _save_prior(model, out: Path, info: dict, classifier, test0, t0: float):
    """Save a built prior with what every recipe records: held-out zero NLL, the oracle and
    weights digests, the build time."""
    from banel_ray.models import mean_nll, save_model

    info |= {
        "test_zero_nll_per_token": mean_nll(model, test0),
        "oracle_digest": classifier.digest,
        "weights_digest": weights_digest(model),
        "seconds": round(time.time() - t0, 1),
    }
    save_model(model, out, info)
    return model


def build_sharpened(
    out: Path,
    epochs: int = SHARPEN["epochs"],
    temperature: float = SHARPEN_TEMPERATURE,
    start: Path = ASSETS / "prior",
    progress=print,
):
    """The first prior of issue 22: the ``mnist_0to6`` prior (``start``), ``epochs`` more on the
    zeros, then 1/T (its options are rows of docs/mnist.md's table)."""
    from banel_ray.models import load_model, train_mle

    torch_deterministic(1)
    classifier = Classifier()
    pairs, test0 = zero_pairs(classifier)
    model = load_model(start)
    t0 = time.time()
    losses = train_mle(
        model,
        pairs,
        epochs,
        SHARPEN["lr"],
        SHARPEN["batch_size"],
        SHARPEN["seed"],
        progress=epoch_progress(progress, "mnist_rare prior", t0),
    )
    temper(model, temperature)
    info = {
        "label": "mnist_rare_prior",
        "recipe": "sharpen",
        "start": str(Path(start).relative_to(ASSETS)) if Path(start).is_relative_to(ASSETS) else str(start),
        "sharpen": dict(SHARPEN, epochs=epochs),
        "temperature": temperature,
        "train_nll_per_token_before_temper": losses[-1] if losses else None,
    }
    return _save_prior(model, out, info, classifier, test0, t0)


# ---- the record: exact rate and spread ---------------------------------------------------------


def regime(prior_dir: Path | str = PRIOR, threads: int = 1, temperature: float = 1.0) -> dict:
    """The prior's exact six rate (log-sum-exp over every success code), how widely it spreads and
    its mass on codes no training zero has;
    ``temperature``: of the folder's model tempered first (how each option in docs/mnist.md was measured)."""
    from banel_ray.models import load_model, set_threads
    from banel_ray.models.exact_rate import all_logprobs, log_rate, spread

    set_threads(threads)
    task = MnistRare(prior=str(prior_dir))
    model = load_model(prior_dir)
    if temperature != 1.0:
        temper(model, temperature)
    t0 = time.time()
    logp = all_logprobs(model, task.prompt, range(OFFSET, VOCAB_SIZE), K)
    success = task.success_table()
    lr = log_rate(logp, success)
    seen = np.zeros(logp.shape, dtype=bool)  # the codes of the training zeros
    seen[tuple(zero_codes(task.classifier).T)] = True
    flat = logp.ravel()
    top = np.argsort(-flat)[:TOP]
    return {
        "task": MnistRare.name,
        "codes": V**K,
        "success_codes": int(success.sum()),
        "rate": math.exp(lr),
        "log10_rate": lr / math.log(10),
        **spread(logp),
        "log10_unseen_mass": log_rate(logp, ~seen) / math.log(10),  # on codes no training zero has
        "top_codes": [list(map(int, np.unravel_index(i, logp.shape))) for i in top],
        "top_logp": [float(flat[i]) for i in top],
        "weights_digest": weights_digest(model),
        "oracle_digest": task.classifier.digest,
        "measured_temperature": temperature,
        "seconds": round(time.time() - t0, 1),
    }


def differences(record: dict, shipped: dict, tol: float = 1e-6) -> list[str]:
    """What a recomputed record says differently from the shipped one (empty: they agree)."""
    out = []
    for k in ("codes", "success_codes", "weights_digest", "oracle_digest", "top_codes"):
        if record[k] != shipped[k]:
            out.append(f"{k}: {record[k]} != {shipped[k]}")
    for k in ("log10_rate", "entropy_nats", "valid_mass"):
        if abs(record[k] - shipped[k]) > tol * max(1.0, abs(shipped[k])):
            out.append(f"{k}: {record[k]} != {shipped[k]}")
    for k in ("codes_for_50pct", "codes_for_99pct"):
        if abs(record[k] - shipped[k]) > max(1, 1e-4 * shipped[k]):  # ties at the cut may move by one
            out.append(f"{k}: {record[k]} != {shipped[k]}")
    if not np.allclose(record["top_logp"], shipped["top_logp"], atol=1e-5):
        out.append("top_logp differ")
    return out
