"""``python -m banel_ray.run``: run BaNEL (or a baseline) on a local Ray instance or a cluster.

With no argument it runs the quick default (the addition attack, a few minutes on a 2-core
laptop). Under ``ray job submit -- python -m banel_ray.run ...`` it joins that cluster.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from banel_ray import config as C
from banel_ray.cli import Parser, fail
from banel_ray.runtime.job import run  # noqa: F401 - the Python entry point, re-exported

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

EPILOG = """examples:
  python -m banel_ray.run                                   # quick default (addition attack)
  python -m banel_ray.run --config banel_ray/configs/addition_paper.yaml
  python -m banel_ray.run --set rounds=3 --set filter.factor=4 --set sampler.backend=torch
  python -m banel_ray.run --set method=rnd                  # a baseline on the same actors
  python -m banel_ray.run --resume runs/addition_attack-20261127-120000
  ray job submit --working-dir . -- python -m banel_ray.run --set sampler.num_actors=4

configuration keys (--set key=value; YAML files use the same dotted or nested keys):
"""


def parse_args(argv=None):
    p = Parser(
        prog="python -m banel_ray.run", description=__doc__.split("\n\n")[0].strip(), epilog=EPILOG + C.help_table()
    )
    p.add_argument("--config", metavar="FILE", help="YAML config (default: banel_ray/configs/quick.yaml)")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one key, repeatable (e.g. --set filter.factor=4)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run from its last checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_args(argv)


def resolve_config(args) -> tuple[dict, Path]:
    if args.resume:
        rd = Path(args.resume)
        if not (rd / "config.json").is_file():
            raise C.ConfigError(f"--resume: {rd} is not a run folder (no config.json)")
        try:
            saved = json.loads((rd / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise C.ConfigError(f"--resume: {rd / 'config.json'} is damaged ({type(e).__name__})") from None
        return C.load(None, args.set, base=dict(C.defaults(), **saved)), rd
    cfg = C.load(args.config or str(CONFIG_DIR / "quick.yaml"), args.set)
    rd = Path(cfg["run_dir"] or f"runs/{Path(cfg['task'].split(':')[-1]).name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg, rd


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg, run_dir = resolve_config(args)
    except C.ConfigError as e:
        return fail(str(e))
    if args.print_config:
        import yaml

        print(yaml.safe_dump(C.nest(cfg), sort_keys=True), end="")
        return 0
    try:
        run(cfg, run_dir, resume=bool(args.resume))
    except C.ConfigError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        print(f"\ninterrupted: resume with  python -m banel_ray.run --resume {run_dir}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
