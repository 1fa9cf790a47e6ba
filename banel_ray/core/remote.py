"""Folders at a URI: ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``file:///path``.

The I/O is pyarrow.fs, what Ray Tune uses for ``storage_path``: the same URIs and the same
credentials (``AWS_*``, ``AWS_ENDPOINT_URL`` for an S3-compatible store, ``GOOGLE_*``, instance
roles), and no client library beyond what Ray brings. ``file://`` is a local path and is used as
one. An object store has no rename and no file locks, so a run (or a comparison) works in a local
staging folder (``staging_dir``) and ``Mirror`` copies that folder up; ``download`` brings a copy
back. SQLite ledgers travel as consistent copies, and a checkpoint pointer (``LATEST``) goes up
only after the rounds it names, so the remote copy is always one a resume can start from.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

from banel_ray.core.checkpoint import LATEST

SCHEMES = ("s3", "gs", "gcs", "file")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
LEDGER = "ledger.sqlite"
_CHUNK = 8 << 20


class RemoteError(Exception):
    """One line: which URI, and what went wrong with it."""


def is_uri(text) -> bool:
    return bool(_SCHEME.match(str(text)))


def is_remote(text) -> bool:
    """A URI that is not ``file://`` (that one is a local path)."""
    return is_uri(text) and not str(text).lower().startswith("file://")


def local_path(text) -> Path:
    """``file:///a/b`` -> ``/a/b``; a plain path as it is."""
    s = str(text)
    return Path(s[len("file://") :]) if s.lower().startswith("file://") else Path(s)


def join(uri: str, *parts: str) -> str:
    """``s3://b/run?endpoint_override=x`` + ``a`` -> ``s3://b/run/a?endpoint_override=x``."""
    base, sep, query = uri.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def _line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return re.sub(r"\s*\(Request ID: .*", "", text)[:300]


def open_uri(uri: str):
    """(pyarrow file system, path inside it); ``RemoteError`` for an unknown scheme or a bad URI."""
    m = _SCHEME.match(uri)
    if not m or m.group(1).lower() not in SCHEMES:
        got = f"'{m.group(1)}://'" if m else "no scheme"
        raise RemoteError(f"{uri}: unknown storage scheme {got}; allowed: s3://, gs://, file:// or a local path")
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, ImportError) as e:
        raise RemoteError(f"{uri}: {_line(e)}") from None


def problem(uri: str) -> str | None:
    """Why ``uri`` cannot hold a run folder (unknown scheme, no such bucket, unreachable, no
    credentials, not writable), found by writing and deleting one small object; None if it can."""
    import pyarrow.fs as pafs

    try:
        fs, path = open_uri(uri)
        if fs.get_file_info(path).type == pafs.FileType.File:
            return f"{uri} is a file; allowed: a folder (a prefix)"
        probe = f"{path.rstrip('/')}/.write-probe-{uuid.uuid4().hex}"
        with fs.open_output_stream(probe) as f:
            f.write(b"")
        fs.delete_file(probe)
    except RemoteError as e:
        return str(e)
    except OSError as e:
        return f"{uri} cannot be written ({_line(e)})"
    return None


def exists(uri: str, name: str) -> bool:
    """Whether the file ``name`` (relative to ``uri``) exists."""
    import pyarrow.fs as pafs

    fs, path = open_uri(uri)
    try:
        return fs.get_file_info(f"{path.rstrip('/')}/{name}").type == pafs.FileType.File
    except OSError as e:
        raise RemoteError(f"{uri}: {_line(e)}") from None


def staging_dir(uri: str) -> Path:
    """The local folder that stands for ``uri`` on this machine: the same for every command that
    names the URI, so a resume on the machine that ran finds the local ledger (the one of record).
    Under ``$BANEL_RAY_STAGING`` (default ``~/.cache/banel_ray/staging``)."""
    root = os.environ.get("BANEL_RAY_STAGING") or Path.home() / ".cache" / "banel_ray" / "staging"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.partition("?")[0].split("://", 1)[1].strip("/"))
    return Path(root) / f"{readable[-80:]}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"


def _files(fs, path: str) -> dict[str, object]:
    """Every file under ``path``: relative name -> FileInfo."""
    import pyarrow.fs as pafs

    sel = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    root = path.rstrip("/") + "/"
    return {i.path[len(root) :]: i for i in fs.get_file_info(sel) if i.type == pafs.FileType.File}


def download(uri: str, local: Path) -> int:
    """Copy every file under ``uri`` into ``local``; returns how many there were."""
    local = Path(local)
    try:
        fs, path = open_uri(uri)
        files = _files(fs, path)
        for rel, info in files.items():
            dest = local / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except OSError as e:
        raise RemoteError(f"reading {uri}: {_line(e)}") from None
    return len(files)


def _skipped(rel: Path) -> bool:
    """Files a copy must not hold: temporary and lock files (dot names: ``.run.lock``,
    ``.tmp_round_*``, ``.LATEST.tmp``) and a live ledger's SQLite side files (its copy goes up)."""
    return any(p.startswith(".") for p in rel.parts) or rel.name.startswith(LEDGER + "-")


class Mirror:
    """Keeps ``uri`` a copy of the local folder ``local``: ``push`` sends what changed since the
    last push (size or time), each ``ledger.sqlite`` as a consistent SQLite copy (its writer may
    hold it open), every ``LATEST`` after the other files, and then removes the checkpoint rounds
    the local folder no longer keeps. Files elsewhere under ``uri`` are never removed."""

    def __init__(self, local: Path, uri: str):
        self.local, self.uri = Path(local), uri
        self.fs, self.path = open_uri(uri)
        self.sent: dict[str, tuple] = {}

    def push(self) -> int:
        """Returns how many files were sent; ``RemoteError`` if the store refused one."""
        try:
            return self._push()
        except OSError as e:
            raise RemoteError(f"copying {self.local} to {self.uri}: {_line(e)}") from None

    def _push(self) -> int:
        import pyarrow.fs as pafs

        files = sorted(p.relative_to(self.local) for p in self.local.rglob("*") if p.is_file())
        files = [r for r in files if not _skipped(r)]
        sent = 0
        for rel in [r for r in files if r.name != LATEST] + [r for r in files if r.name == LATEST]:
            sent += self._send(rel)
        stores = [r.parent for r in files if r.name == LATEST]  # checkpoint folders: prune old rounds
        gone: set[Path] = set()
        for rel in _files(self.fs, self.path) if stores else []:
            store = next((s for s in stores if s in Path(rel).parents), None)
            if store is not None and not (self.local / rel).exists():
                gone.add(store / Path(rel).relative_to(store).parts[0])  # the whole round folder
                self.sent.pop(rel, None)
        for g in sorted(gone):
            dest = f"{self.path.rstrip('/')}/{g.as_posix()}"
            if self.fs.get_file_info(dest).type == pafs.FileType.Directory:
                self.fs.delete_dir(dest)
            else:
                self.fs.delete_file(dest)
        return sent

    def _send(self, rel: Path) -> int:
        src = self.local / rel
        side = src.with_name(src.name + "-wal")
        stamp = tuple((s.st_size, s.st_mtime_ns) for s in (src.stat(), *([side.stat()] if side.exists() else [])))
        if self.sent.get(str(rel)) == stamp:
            return 0
        dest = f"{self.path.rstrip('/')}/{rel.as_posix()}"
        if type(self.fs).__name__ == "LocalFileSystem":
            self.fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
        if rel.name == LEDGER:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / LEDGER
                _sqlite_copy(src, copy)
                self._upload(copy, dest)
        else:
            self._upload(src, dest)
        self.sent[str(rel)] = stamp
        return 1

    def _upload(self, src: Path, dest: str) -> None:
        with open(src, "rb") as f, self.fs.open_output_stream(dest) as out:
            shutil.copyfileobj(f, out, _CHUNK)


def _sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a SQLite file another connection may be writing (the backup API),
    as one self-contained file (no write-ahead log beside it)."""
    a, b = sqlite3.connect(str(src), timeout=30.0), sqlite3.connect(str(dest))
    try:
        a.backup(b)
        b.execute("PRAGMA journal_mode=DELETE")
    finally:
        a.close()
        b.close()
