"""Round checkpoints: each stateful role writes its own shard; the runner writes the manifest.

Layout of ``<store>/round_NNNN/``: ``manifest.json`` (round, generator version, which shards
there are, where the samplers' weights are), ``runner.json`` (the runner's own state: history,
seen samples, base estimate) and one folder per role (``generator/``, ``negative/``, ``policy/``),
written by that role's actor (``save_shard``) so no weights pass through the driver.

A checkpoint is assembled in ``.tmp_round_NNNN``, fsynced, renamed into place, and only then named
in ``LATEST`` (itself replaced atomically): a run killed at any moment resumes from the last
complete round. The ledger, not the checkpoint, remembers what was paid for.

Where shards live is decided here, once: ``<run_dir>/checkpoints`` or ``checkpoint.dir``. Every
actor must see that folder (on a multi-node cluster: shared storage); ``probe`` writes a token the
runner asks every actor to read at start-up, so a folder only the driver sees stops the run with
one clear line instead of failing at the first restart.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from banel_ray.core.faults import crash_point

MANIFEST, RUNNER_STATE, LATEST = "manifest.json", "runner.json", "LATEST"


def fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data) -> None:
    """JSON written and fsynced (a shard file or the manifest)."""
    with open(path, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())


def save_tensors(path: Path, tensors: dict) -> None:
    """A safetensors file, fsynced."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


class CheckpointStore:
    """The checkpoints of one run: ``root`` is ``<run_dir>/checkpoints`` unless configured."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ---- reading ---------------------------------------------------------------------------------
    def latest(self) -> Path | None:
        f = self.root / LATEST
        return self.root / f.read_text().strip() if f.exists() else None

    def manifest(self, ck: Path | None = None) -> dict | None:
        ck = ck or self.latest()
        return json.loads((ck / MANIFEST).read_text()) if ck else None

    def runner_state(self) -> dict | None:
        """The runner's state of the last complete round (no weights read), or None."""
        ck = self.latest()
        return json.loads((ck / RUNNER_STATE).read_text()) if ck else None

    def shard(self, role: str, ck: Path | None = None) -> Path | None:
        """The folder of ``role``'s shard in the last complete checkpoint (or ``ck``), if any."""
        ck = ck or self.latest()
        if ck is None:
            return None
        man = self.manifest(ck)
        return ck / role if role in man.get("shards", {}) else None

    def generator(self, ck: Path | None = None) -> tuple[int, dict] | None:
        """(version, weights) the samplers serve, from the last complete checkpoint (or ``ck``)."""
        ck = ck or self.latest()
        man = self.manifest(ck) if ck else None
        if not man or not man.get("generator_weights") or not man.get("version"):
            return None
        return man["version"], load_tensors(ck / man["generator_weights"])

    def rounds(self) -> list[int]:
        """Rounds with a complete checkpoint kept on disk."""
        return sorted(int(p.name.split("_")[1]) for p in self.root.glob("round_*") if (p / MANIFEST).exists())

    def path(self, round_: int) -> Path:
        return self.root / f"round_{round_:04d}"

    # ---- writing ---------------------------------------------------------------------------------
    def begin(self, round_: int) -> Path:
        """A fresh temporary folder for round ``round_``'s checkpoint."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp_round_{round_:04d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    def commit(
        self,
        tmp: Path,
        round_: int,
        version: int,
        runner_state: dict,
        shards: dict,
        generator_weights: str | None,
        evaluated: bool,
        keep: int = 2,
        keep_evaluated: bool = True,
    ) -> Path:
        """Write runner state and manifest into ``tmp`` (whose shards every role has written and
        acknowledged), publish it as round ``round_`` and LATEST, and drop old checkpoints."""
        write_json(tmp / RUNNER_STATE, runner_state)
        write_json(
            tmp / MANIFEST,
            {
                "round": round_,
                "version": version,
                "shards": shards,
                "generator_weights": generator_weights,
                "evaluated": evaluated,
                "complete": True,
            },
        )
        fsync_dir(tmp)
        crash_point("mid_checkpoint", round_)
        final = self.path(round_)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        latest_tmp = self.root / ".LATEST.tmp"
        latest_tmp.write_text(final.name)
        os.replace(latest_tmp, self.root / LATEST)
        fsync_dir(self.root)
        self._retain(keep, keep_evaluated)
        return final

    def _retain(self, keep: int, keep_evaluated: bool) -> None:
        kept = sorted(self.root.glob("round_*"))
        for old in kept[:-keep]:
            man = old / MANIFEST
            if keep_evaluated and man.exists() and json.loads(man.read_text()).get("evaluated"):
                continue
            shutil.rmtree(old, ignore_errors=True)

    # ---- shared-storage check --------------------------------------------------------------------
    def probe(self) -> tuple[str, str]:
        """Write a token file every actor must be able to read: (path, token)."""
        self.root.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        p = self.root / ".probe"
        p.write_text(token)
        return str(p), token


def sees(path: str, token: str) -> bool:
    """Does this process see the probe file ``path`` with ``token`` in it (same storage)?"""
    try:
        return Path(path).read_text() == token
    except OSError:
        return False
