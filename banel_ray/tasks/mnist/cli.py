"""``python -m banel_ray.tasks.mnist data|oracle|prior --out ...``: rebuild the shipped assets of
``mnist_0to6`` (deterministic, one thread)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from banel_ray.tasks.mnist.assets import build_data, build_oracle, train_prior
from banel_ray.tasks.mnist.common import SHARED_MNIST, missing_mnist


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m banel_ray.tasks.mnist",
        description="Rebuild the MNIST 0-to-6 assets (deterministic, one thread).",
    )
    p.add_argument(
        "which",
        choices=["data", "oracle", "prior"],
        help="data: 14x14 zeros + test set (.npz); oracle: codebook + classifier (.npz, with six_codes.npz "
        "beside it); "
        "prior: the zeros-only Llama (HF folder)",
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--mnist",
        default=str(SHARED_MNIST),
        help="full MNIST uint8 .npz (x_train, y_train, x_test, y_test); data and oracle only",
    )
    p.add_argument("--epochs", type=int, default=0, help="oracle: 15, prior: 100 when 0")
    a = p.parse_args(argv)
    say = lambda s: print(s, flush=True)  # noqa: E731
    if a.which in ("data", "oracle") and missing_mnist(a.mnist):
        return 2
    if a.which == "data":
        print(json.dumps(build_data(Path(a.mnist), Path(a.out))))
    elif a.which == "oracle":
        print(json.dumps(build_oracle(Path(a.mnist), Path(a.out), epochs=a.epochs or 15, progress=say)))
    else:
        train_prior(Path(a.out), a.epochs or 100, progress=say)
        print((Path(a.out) / "banel_ray.json").read_text())
    return 0
