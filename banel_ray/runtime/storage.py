"""A run whose ``run_dir`` is a URI (``s3://``, ``gs://``): it runs in a local staging folder,
and the URI gets a copy after every checkpoint and at the end (``job.run`` pushes).

The ledger of record is the local SQLite file: every paid evaluation is committed there before
its result is used. The URI holds a copy as of the last push, sent before the checkpoint pointer
that copy covers, so a folder pulled from the URI always resumes without paying for what it
remembers twice. A resume pulls the URI first and keeps whichever copy remembers more paid
evaluations (the local one on the machine that ran, unless the run went on elsewhere).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from banel_ray import preflight
from banel_ray.core import remote, runlock
from banel_ray.core.run_folder import CONFIG, RunFolder


def _paid(folder: Path) -> int:
    try:
        return preflight.paid_rows(folder / remote.LEDGER)
    except Exception:  # noqa: BLE001 - an unreadable copy remembers nothing; preflight names it later
        return -1


def stage(uri: str, resume: bool, log=print) -> Path:
    """The local folder of ``uri``, ready: for a resume, the URI's copy unless the local folder
    already remembers at least as many paid evaluations. A replaced local folder is kept aside
    (``<name>.replaced-<time>``), never deleted: a ledger is not thrown away."""
    local = remote.staging_dir(uri)
    if not resume:  # the URI holds no run (``problem``): an older local copy is set aside, unless it runs
        if local.exists() and runlock.holder(local) is None:
            _aside(local)
        return local
    if runlock.holder(local) is not None:  # a live run: left as it is (preflight says it is busy)
        return local
    pulled = local.with_name(local.name + ".pull")
    shutil.rmtree(pulled, ignore_errors=True)
    n = remote.download(uri, pulled)
    if RunFolder(local).has_config() and _paid(local) >= _paid(pulled):
        shutil.rmtree(pulled, ignore_errors=True)
        log(f"[banel_ray] {uri}: resuming from the local copy {local} (the ledger of record)")
        return local
    if local.exists():
        _aside(local)
    if n:
        pulled.rename(local)
        log(f"[banel_ray] {uri}: pulled {n} files into {local}")
    else:
        shutil.rmtree(pulled, ignore_errors=True)
    return local


def _aside(local: Path) -> None:
    local.rename(local.with_name(f"{local.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"))


def problem(uri: str, resume: bool, checkpoint_dir: str = "") -> str | None:
    """One line for a URI that cannot hold the run: unknown scheme, unreachable, not writable;
    a new run where one already is; ``checkpoint.dir`` elsewhere (it would not be copied)."""
    if checkpoint_dir:
        return (
            f"run_dir {uri} is remote and checkpoint.dir is set ({checkpoint_dir}); allowed: leave "
            f"checkpoint.dir empty (the checkpoints then go to the URI with the run)"
        )
    msg = remote.problem(uri)
    if msg:
        return f"run_dir {msg}"
    if not resume and remote.exists(uri, CONFIG):
        return f"run_dir {uri} already holds a run (config.json); allowed: --resume {uri} to continue it, or another run_dir"
    return None


def pusher(local: Path, uri: str | None, log=print):
    """``push(final)`` for ``job.run``: sends the run folder's changes to ``uri``. A failed push
    after a checkpoint is logged and retried at the next one (the local folder has everything);
    a failed final push raises ``RemoteError``. Without a URI, a no-op."""
    if not uri:
        return lambda final=False: None
    mirror = remote.Mirror(local, uri)

    def push(final: bool = False) -> None:
        try:
            mirror.push()
        except remote.RemoteError as e:
            if final:
                raise
            log(f"[banel_ray] warning: {e}; the run goes on (everything is in {local}); next try after the next round")

    return push
