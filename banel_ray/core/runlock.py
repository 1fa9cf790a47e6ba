"""One process per run folder: an advisory lock on ``<run_dir>/.run.lock``, held for the run's life.

Two processes on one folder would both pay (each reward service takes the ledger's lease in turn)
and overwrite each other's checkpoints and metrics. The lock is ``fcntl.flock``: the OS drops it
when its holder exits, however it exits (SIGKILL included), so a killed run never leaves a stale
lock behind and ``--resume`` needs no clean-up. The file stays (removing it would let a second
process lock a new file while the first still holds the old one); it holds the holder's pid, for
the message. Re-entrant in one process; the descriptor is not inherited by the processes a run
starts (Python's default), so a lock never outlives its run in a child.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from banel_ray.core.errors import ConfigError

NAME = ".run.lock"
_HELD: dict[str, int] = {}  # resolved lock path -> how many holds this process has on it


def _key(run_dir) -> str:
    return str((Path(run_dir) / NAME).resolve())


def _pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0


def busy_message(run_dir, pid: int) -> str:
    who = f"process {pid}" if pid else "another process"
    stop = f"stop it (kill {pid})" if pid else "stop it"
    return (
        f"run_dir {run_dir} is in use by {who}, which holds {Path(run_dir) / NAME}; allowed: one process "
        f"per run folder: wait for it to end or {stop}, then --resume {run_dir}, or use another run_dir"
    )


def holder(run_dir) -> int | None:
    """The pid holding ``run_dir``'s lock (0: unknown), or None when it is free or held by this
    process. Only looks: nothing is created."""
    path = Path(run_dir) / NAME
    if not path.is_file() or _HELD.get(_key(run_dir)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _pid(fd)
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class Busy(ConfigError):
    """Another process holds the run folder's lock: refused like bad input (one line, exit 2)."""


@contextlib.contextmanager
def held(run_dir):
    """Hold ``run_dir``'s lock for the block (the folder must exist); ``Busy`` if another process has it."""
    key = _key(run_dir)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(Path(run_dir) / NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        pid = _pid(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise Busy(busy_message(run_dir, pid)) from None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        yield
    finally:
        _HELD.pop(key, None)
        os.close(fd)  # releases the lock
