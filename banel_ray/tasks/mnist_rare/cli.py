"""``python -m banel_ray.tasks.mnist_rare rate|prior|samples``: the rare-regime prior's exact rate
(``--check``: against the shipped record), its rebuild, its samples."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from banel_ray.tasks.mnist.common import EOS, K, save_grid
from banel_ray.tasks.mnist_rare.assets import (
    FIT,
    SHARPEN,
    SHARPEN_TEMPERATURE,
    TEMPERATURE,
    build_prior,
    build_sharpened,
    differences,
    regime,
)
from banel_ray.tasks.mnist_rare.task import PRIOR, REGIME, MnistRare


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m banel_ray.tasks.mnist_rare",
        description="The rare-regime MNIST prior: its exact six rate, its rebuild, its samples.",
    )
    sub = p.add_subparsers(dest="which", required=True)
    r = sub.add_parser("rate", help="recompute the prior's exact rate and spread (about a minute)")
    r.add_argument("--prior", default=str(PRIOR))
    r.add_argument("--out", default="", help="write the record here (the shipped one: banel_ray/assets/...)")
    r.add_argument("--check", action="store_true", help="exit 1 unless it agrees with the shipped record")
    r.add_argument("--temperature", type=float, default=1.0, help="temper the folder's prior first (options)")
    b = sub.add_parser("prior", help="rebuild the prior (deterministic, one thread)")
    b.add_argument("--out", required=True)
    b.add_argument(
        "--recipe",
        choices=["tempered_fit", "sharpen"],
        default="tempered_fit",
        help="tempered_fit: the shipped prior; sharpen: the first prior (mnist_0to6 prior + epochs, 1/0.19)",
    )
    b.add_argument("--epochs", type=int, help=f"default {FIT['epochs']} (tempered_fit), {SHARPEN['epochs']} (sharpen)")
    b.add_argument(
        "--temperature", type=float, help=f"default {TEMPERATURE} (tempered_fit), {SHARPEN_TEMPERATURE} (sharpen)"
    )
    b.add_argument("--power", type=float, help="tempered_fit: the targets' power (default: the temperature)")
    s = sub.add_parser("samples", help="a PNG of the prior's samples, class in the corner")
    s.add_argument("--out", required=True)
    s.add_argument("--prior", default=str(PRIOR))
    s.add_argument("-n", type=int, default=64)
    a = p.parse_args(argv)
    say = lambda m: print(m, flush=True)  # noqa: E731
    if a.which == "prior":
        sharpen = a.recipe == "sharpen"
        if a.epochs is None:
            a.epochs = SHARPEN["epochs"] if sharpen else FIT["epochs"]
        if a.temperature is None:
            a.temperature = SHARPEN_TEMPERATURE if sharpen else TEMPERATURE
        if a.power is not None and not 0 < a.power <= 10:
            print(f"error: --power must be in (0, 10], got {a.power}", file=sys.stderr)
            return 2
    if not 0 < getattr(a, "temperature", 1.0) <= 10:
        print(f"error: --temperature must be in (0, 10], got {a.temperature}", file=sys.stderr)
        return 2
    if a.which == "rate":
        rec = regime(a.prior, temperature=a.temperature)
        print(json.dumps(rec, indent=2))
        if a.out:
            Path(a.out).write_text(json.dumps(rec, indent=2) + "\n")
        if a.check:
            diff = differences(rec, json.loads(REGIME.read_text()))
            print("agrees with the shipped record" if not diff else "differs: " + "; ".join(diff))
            return 1 if diff else 0
    elif a.which == "prior":
        if a.recipe == "sharpen":
            build_sharpened(Path(a.out), a.epochs, a.temperature, progress=say)
        else:
            build_prior(Path(a.out), a.epochs, a.temperature, a.power, progress=say)
        print((Path(a.out) / "banel_ray.json").read_text())
    else:
        from banel_ray.models import load_model, sample

        task = MnistRare(prior=a.prior)
        draws = sample(load_model(a.prior), task.prompt, a.n, K, EOS, seed=0)
        save_grid(a.out, [(f"rare prior ({Path(a.prior).name})", draws)], task.classifier)
        print(a.out)
    return 0
