"""Rebuilding the shipped assets of ``mnist_0to6_pixels`` (deterministic): the pixel classifier
with the instrument's counts beside it, the zeros-only prior and the model of sixes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from banel_ray.tasks.mnist.common import (
    BOS,
    HIDDEN,
    TARGET,
    downsample,
    epoch_progress,
    load_data,
    torch_deterministic,
    train_mlp,
)
from banel_ray.tasks.mnist_pixels.common import (
    INSTRUMENT,
    THRESHOLD,
    VOCAB_SIZE,
    L,
    PixelClassifier,
    binarise,
    tokens_of,
)

PRIOR_ARCH = dict(hidden=64, layers=2, heads=2, intermediate=256, max_positions=160)


def build_oracle(mnist_full: Path, out: Path, epochs: int = 15, seed: int = 0, progress=print) -> dict:
    """The classifier of binary 12x12 images (all ten digits) and, beside it, the instrument."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with np.load(mnist_full) as d:
        x_train, y_train = binarise(downsample(d["x_train"])), d["y_train"]
        x_test, y_test = binarise(downsample(d["x_test"])), d["y_test"]
    t0 = time.time()
    mlp = train_mlp(
        x_train.reshape(len(x_train), L).astype(np.float32), y_train, epochs, seed, "mnist_pixels", progress, t0
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **mlp)
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
    from banel_ray.models import build_llama, mean_nll, save_model, train_mle

    torch_deterministic(threads)
    d = load_data()
    t0 = time.time()
    pairs = zero_pairs(d["zeros"] if data is None else data)
    held = zero_pairs(d["x_test"][d["y_test"] == 0] if heldout is None else heldout)
    arch = dict(arch or PRIOR_ARCH)
    model = build_llama(VOCAB_SIZE, seed=seed, **arch)
    losses = train_mle(model, pairs, epochs, lr, batch_size, seed, progress=epoch_progress(progress, label, t0))
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
