"""Rebuilding the shipped assets of ``mnist_0to6`` (deterministic): the 14x14 data, the oracle
(codebook + classifier, with the success table of all codes beside it) and the zeros-only prior."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from banel_ray.tasks.mnist.common import (
    BOS,
    HIDDEN,
    OFFSET,
    VOCAB_SIZE,
    Classifier,
    K,
    V,
    decode,
    downsample,
    encode,
    epoch_progress,
    load_data,
    patches,
    save_six_codes,
    torch_deterministic,
    train_mlp,
)

PRIOR_ARCH = dict(hidden=64, layers=2, heads=2, intermediate=256, max_positions=8)


def build_data(mnist_full: Path, out: Path) -> dict:
    with np.load(mnist_full) as d:
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, zeros=downsample(x_train[y_train == 0]), x_test=downsample(x_test), y_test=y_test.astype(np.uint8)
    )
    return {"zeros": int((y_train == 0).sum()), "test": len(y_test)}


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """Lloyd's algorithm with k-means++ seeding (torch, deterministic for a given seed)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    centres = [X[int(torch.randint(len(X), (1,), generator=g))]]
    d2 = ((X - centres[0]) ** 2).sum(1)
    for _ in range(k - 1):
        centres.append(X[int(torch.multinomial(d2, 1, generator=g))])
        d2 = torch.minimum(d2, ((X - centres[-1]) ** 2).sum(1))
    C = torch.stack(centres)
    for _ in range(iters):
        a = torch.cdist(X, C).argmin(1)
        for j in range(k):
            m = a == j
            if bool(m.any()):
                C[j] = X[m].mean(0)
    return C.numpy()


def build_oracle(mnist_full: Path, out: Path, epochs: int = 15, seed: int = 0, progress=print) -> dict:
    """Codebook (k-means per quadrant, no labels) and the MLP classifier of decoded images."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with np.load(mnist_full) as d:
        x_train, y_train, x_test, y_test = downsample(d["x_train"]), d["y_train"], downsample(d["x_test"]), d["y_test"]
    t0 = time.time()
    p = patches(x_train)
    codebook = np.stack([kmeans(p[:, q], V, 25, seed + q) for q in range(K)]).astype(np.float32)
    progress(f"[mnist] codebook {codebook.shape} ({time.time() - t0:.0f}s)")
    rec_tr = decode(encode(x_train, codebook), codebook).reshape(len(x_train), -1).astype(np.float32)
    mlp = train_mlp(rec_tr, y_train, epochs, seed, "mnist", progress, t0)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, codebook=codebook, **mlp)
    o = Classifier(out)
    info = {
        "decoded_test_accuracy": float((o.classify_codes(encode(x_test, codebook)) == y_test).mean()),
        "raw_test_accuracy": float((o.classify(x_test / 255.0) == y_test).mean()),
        "epochs": epochs,
        "seed": seed,
        "hidden": HIDDEN,
        "digest": o.digest,
        "seconds": round(time.time() - t0, 1),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    progress(f"[mnist] classifying all {V**K:,} codes (a few minutes)")
    save_six_codes(out.with_name("six_codes.npz"), o.six_table(), o.digest)
    return info


def zero_pairs(classifier: Classifier) -> tuple[list, list]:
    """(prompt, completion) pairs of the prior's training codes and of the test zeros.

    The 2% of training zeros whose code the oracle does not call a 0 (0.5% it calls a 6) are left
    out: a prior that copied them would start with a success rate of 5e-3, which sampling can see.
    """
    data = load_data()
    codes = encode(data["zeros"], classifier.codebook)
    codes = codes[classifier.classify_codes(codes) == 0]
    test = encode(data["x_test"][data["y_test"] == 0], classifier.codebook)
    as_pairs = lambda rows: [((BOS,), tuple(int(c) + OFFSET for c in row)) for row in rows]  # noqa: E731
    return as_pairs(codes), as_pairs(test)


def train_prior(
    out: Path,
    epochs: int,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 3,
    progress=print,
    threads: int = 1,
    classifier: Classifier | None = None,
):
    """The prior: a small Llama fitted to the codes of the training zeros (nothing else)."""
    from banel_ray.models import build_llama, mean_nll, save_model, train_mle

    torch_deterministic(threads)
    classifier = classifier or Classifier()
    t0 = time.time()
    pairs, test0 = zero_pairs(classifier)
    model = build_llama(VOCAB_SIZE, seed=seed, **PRIOR_ARCH)
    losses = train_mle(model, pairs, epochs, lr, batch_size, seed, progress=epoch_progress(progress, "mnist prior", t0))
    info = {
        "label": "mnist_prior",
        "epochs": epochs,
        "zeros": len(pairs),
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "arch": PRIOR_ARCH,
        "train_nll": losses[-1],
        "test_zero_nll": mean_nll(model, test0),
        "oracle_digest": classifier.digest,
        "seconds": round(time.time() - t0, 1),
    }
    save_model(model, out, info)
    return model
