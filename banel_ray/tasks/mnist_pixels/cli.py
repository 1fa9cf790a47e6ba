"""``python -m banel_ray.tasks.mnist_pixels oracle|prior|six --out ...``: rebuild the shipped assets
of ``mnist_0to6_pixels`` (deterministic, one thread)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from banel_ray.tasks.mnist.common import SHARED_MNIST, missing_mnist
from banel_ray.tasks.mnist_pixels.assets import build_oracle, build_six_model, train_prior


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
    if a.which in ("oracle", "six") and missing_mnist(a.mnist):
        return 2
    if a.which == "oracle":
        print(json.dumps(build_oracle(Path(a.mnist), Path(a.out), epochs=a.epochs or 15, progress=say)))
    elif a.which == "six":
        print(json.dumps(build_six_model(Path(a.mnist), Path(a.out), epochs=a.epochs or 8, progress=say)))
    else:
        train_prior(Path(a.out), a.epochs or 60, progress=say)
        print((Path(a.out) / "banel_ray.json").read_text())
    return 0
