"""``python -m banel_ray.run``: run BaNEL (or a baseline) on a local Ray instance or a cluster.

With no argument it runs the quick default (the addition attack, a few minutes on a 2-core
laptop). Under ``ray job submit -- python -m banel_ray.run ...`` it joins that cluster.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path

from banel_ray import config as C
from banel_ray.cli import Parser, fail
from banel_ray.core import imports, remote
from banel_ray.core.run_folder import RunFolder, RunFolderError
from banel_ray.runtime.job import run  # noqa: F401 - the Python entry point, re-exported

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

EPILOG = """examples:
  python -m banel_ray.run                                   # quick default (addition attack)
  python -m banel_ray.run --config banel_ray/configs/addition_paper.yaml
  python -m banel_ray.run --set rounds=3 --set filter.factor=4 --set sampler.backend=torch
  python -m banel_ray.run --set method=rnd                  # a baseline on the same actors
  python -m banel_ray.run --resume runs/addition_attack-20261127-120000
  python -m banel_ray.run --resume auto --set run_dir=/mnt/runs/a1   # continue it if it exists, else start it
  python -m banel_ray.run --set run_dir=s3://bucket/runs/a1          # staged locally, copied up every round
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
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a killed or finished run from its last checkpoint; 'auto': the run folder given by "
        "--set run_dir=... or the config, continued if a run was started there, else a new run started there "
        "(the same command for the first start and every retry)",
    )
    p.add_argument(
        "--trust-run-folder",
        action="store_true",
        help="with --resume: import the code (task class, oracle functions) the folder's config names; "
        "without it, only code shipped here or named again with --set is imported (run folders are data)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_args(argv)


AUTO = "auto"  # --resume auto (a run folder literally named auto: --resume ./auto)


def _settable(key: str) -> str:
    """The --set key that gives ``key`` (``task_options.oracle.url``: ``task_options.oracle``)."""
    if not key.startswith("task_options."):
        return key
    return "task_options." + re.split(r"[.\[]", key.split(".", 1)[1])[0]


def check_code(saved: dict, args, rd: Path, named: dict | None = None) -> None:
    """A resumed folder's config may name code; import only what is shipped here, named again on
    the command line, or everything with --trust-run-folder (banel_ray/trust.py). The same for the
    keys that can send data, read secrets or write outside the folder (``trust.SENSITIVE``): a
    non-default value is run only if ``named`` (the config this command gives: the defaults, or
    ``--resume auto``'s --config file, with its --set items) sets it to the same value."""
    from banel_ray import trust

    sets = [C.parse_set(item) for item in args.set]
    cfg, mine = dict(saved), dict(named) if named is not None else C.defaults()
    for k, v in sets:  # the config as it will be, so code replaced by --set is not asked about
        for c in (cfg, mine) if named is None else (cfg,):
            if k.startswith("task_options."):
                C.override(c, k, v)
            elif k in ("task", "task_options"):
                c[k] = v
            elif k in C.FIELDS:
                c[k] = C.coerce(k, v)
    keys = trust.unnamed_sensitive(cfg, mine)
    if keys and not args.trust_run_folder:
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        raise C.ConfigError(
            f"--resume: {rd / 'config.json'} sets {shown}, which can send data, read secrets or write "
            f"outside the run folder, and a run folder is data; allowed: name them again with --set KEY=VALUE "
            f"(e.g. --set {_settable(keys[0])}=...) "
            f"or pass --trust-run-folder for a folder you made"
        )
    bad = trust.untrusted(cfg, [v for _, v in sets])
    if bad and not args.trust_run_folder:
        names = ", ".join(f"{k}={v}" for k, v in list(bad.items())[:3]) + (", ..." if len(bad) > 3 else "")
        raise C.ConfigError(
            f"--resume: {rd / 'config.json'} names code ({names}) and a run folder is data, "
            f"not code to import; allowed: name the same code again (--set {next(iter(bad))}=...) "
            f"or pass --trust-run-folder for a folder you made"
        )


def resolve_config(args) -> tuple[dict, Path, bool]:
    """(config, local run folder, whether the run is resumed). A remote run folder (``s3://``,
    ``gs://``) is checked here, before anything is spent, and its local staging folder returned:
    pulled from the URI first for a resume (``runtime/storage.py``); ``config["run_dir"]`` keeps the URI."""
    if args.resume == AUTO:
        cfg = C.load(args.config or str(CONFIG_DIR / "quick.yaml"), args.set)
        if not cfg["run_dir"]:
            raise C.ConfigError(
                "--resume auto needs the run folder; allowed: --set run_dir=DIR or run_dir in the --config file"
            )
        rd = _local(cfg["run_dir"], True, cfg["checkpoint.dir"])
        # config.json is the run's first write (job.run): a run killed before its first checkpoint
        # is resumed too, so its ledger, not a fresh config, decides what was already paid for
        if not RunFolder(rd).has_config():
            return cfg, rd, False
        return _uri(resumed_config(rd, args, named=cfg), cfg["run_dir"]), rd, True
    if args.resume:
        rd = _local(args.resume, True)
        if remote.is_remote(args.resume) and not RunFolder(rd).has_config():
            raise C.ConfigError(f"--resume: {args.resume} is not a run folder (no config.json)")
        return _uri(resumed_config(rd, args), args.resume), rd, True
    cfg = C.load(args.config or str(CONFIG_DIR / "quick.yaml"), args.set)
    if cfg["run_dir"]:
        return cfg, _local(cfg["run_dir"], False, cfg["checkpoint.dir"]), False
    rd = Path(f"runs/{Path(cfg['task'].split(':')[-1]).name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return cfg, rd, False


def _local(run_dir: str, resume: bool, checkpoint_dir: str = "") -> Path:
    """The local folder of ``run_dir``: itself, or for a URI its checked (and, to resume, pulled) staging folder."""
    if not remote.is_remote(run_dir):
        return remote.local_path(run_dir)
    from banel_ray.runtime import storage

    try:
        msg = storage.problem(run_dir, resume, checkpoint_dir)
        if msg:
            raise C.ConfigError(msg)
        return storage.stage(run_dir, resume)
    except remote.RemoteError as e:
        raise C.ConfigError(f"run_dir {e}") from None


def _uri(cfg: dict, run_dir: str) -> dict:
    """A resumed remote run keeps its URI as ``run_dir`` (where ``job.run`` pushes)."""
    return dict(cfg, run_dir=run_dir) if remote.is_remote(run_dir) else cfg


def resumed_config(rd: Path, args, named: dict | None = None) -> dict:
    """The config a run folder was started with, with this command's --set keys applied."""
    try:
        saved = RunFolder(rd).config()
    except RunFolderError as e:
        raise C.ConfigError(f"--resume: {e}") from None
    base = dict(C.defaults(), **saved)
    check_code(base, args, rd, named)  # before anything the folder names is imported (C.load imports the task)
    from banel_ray import trust

    typed = [v for _, v in (C.parse_set(item) for item in args.set)]
    with imports.only(None if args.trust_run_folder else trust.allowed_code(typed)):  # the same rule, on import
        return C.load(None, args.set, base=base)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg, run_dir, resume = resolve_config(args)
    except C.ConfigError as e:
        return fail(str(e))
    if args.print_config:
        import yaml

        print(yaml.safe_dump(C.nest(cfg), sort_keys=True), end="")
        return 0
    from banel_ray import preflight
    from banel_ray.actors.ledger import StaleWriter
    from banel_ray.actors.reward_service import OracleDown

    rc = C.sections(cfg)
    msg = preflight.package_problem(cfg) or preflight.run_dir_problem(
        run_dir, resume, rc.checkpoint.dir or None, rc.budget
    )
    if msg:
        return fail(msg)
    shown = rc.run_dir if remote.is_remote(rc.run_dir) else run_dir  # what the user names it by
    signal.signal(signal.SIGTERM, _terminated)  # `kill PID`: stop like Ctrl-C, what the run started included
    try:
        if args.resume == AUTO:
            print(f"[banel_ray] --resume auto: {'continuing the run in' if resume else 'a new run in'} {shown}")
        run(cfg, run_dir, resume=resume)
    except C.ConfigError as e:
        return fail(str(e))
    except OracleDown as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except StaleWriter as e:  # on Ray, a task error that is also a StaleWriter; its cause is the one line
        cause = str(getattr(e, "cause", None) or e).strip().splitlines()[0]
        return fail(
            f"{cause}; this run stopped without paying again; allowed: one process per run folder: "
            f"stop the other, then --resume {shown}"
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: resume with  python -m banel_ray.run --resume {shown}", file=sys.stderr)
        return 143 if _TERMINATED else 130
    except remote.RemoteError as e:  # the final copy to the URI; the run itself is whole in its staging folder
        print(
            f"error: {e}; the run folder is whole in {run_dir}; copy it again with  "
            f"python -m banel_ray.run --resume {shown}",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # noqa: BLE001 - only a storage error is turned into one line; any other is re-raised
        what = storage_error(e, run_dir)
        if what is None:
            raise
        print(
            f"error: the run stopped: {what}; what was paid is kept in {run_dir / 'ledger.sqlite'}; once there is "
            f"room, resume with  python -m banel_ray.run --resume {shown}",
            file=sys.stderr,
        )
        return 1
    return 0


# disk full, quota, file too large, a file system remounted read-only, an I/O error
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def storage_error(e: BaseException, run_dir: Path) -> str | None:
    """What failed, for an OS write error met during a run (``OSError`` with one of
    ``STORAGE_ERRNOS``, or SQLite's "disk is full" / "disk I/O error" from the ledger), also when
    Ray wraps it in a task error; None for any other error. Such a run resumes once there is
    room: the ledger commits a transaction or none, a checkpoint is published only when whole, and
    the resume redoes what came after the last one (its metrics line included)."""
    cause = getattr(e, "cause", None) or e  # Ray: the actor's own exception
    if isinstance(cause, OSError) and cause.errno in STORAGE_ERRNOS:
        where = cause.filename or f"a write in {run_dir}"
        text = cause.strerror or os.strerror(cause.errno)
        return f"{where}: {text} ({errno.errorcode[cause.errno]})"
    if isinstance(cause, sqlite3.OperationalError) and any(m in str(cause) for m in ("disk is full", "disk I/O")):
        return f"writing the ledger {run_dir / 'ledger.sqlite'}: {cause}"
    return None


_TERMINATED: list = []  # SIGTERM seen (Ray may re-raise the interrupt as a plain KeyboardInterrupt)


def _terminated(signum, frame):
    """SIGTERM, handled as an interrupt so every ``finally`` runs (roles and Ray stopped)."""
    _TERMINATED.append(signum)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
