"""Atomic round checkpoints: generator weights and negative regions as safetensors, state as JSON.

A checkpoint is written to a temporary folder, fsynced, renamed into place, and only then named in
``checkpoints/LATEST`` (itself replaced atomically). A run killed at any moment resumes from the
last complete round; the ledger, not the checkpoint, remembers what was paid for.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from banel_ray.faults import crash_point


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: Path, round_: int, state: dict, generator: dict | None,
                    regions: list[tuple[dict, float]] | None = None, keep: int = 2) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"round_{round_:04d}"
    tmp = root / f".tmp_round_{round_:04d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if generator is not None:
        save_file({k: v.contiguous() for k, v in generator.items()}, str(tmp / "generator.safetensors"))
    taus = []
    for i, (w, tau) in enumerate(regions or []):
        save_file({k: v.contiguous() for k, v in w.items()}, str(tmp / f"region_{i:04d}.safetensors"))
        taus.append(tau)
    state = dict(state, region_log_taus=taus)
    with open(tmp / "state.json", "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    crash_point("mid_checkpoint", round_)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = root / ".LATEST.tmp"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, root / "LATEST")
    _fsync_dir(root)
    for old in sorted(root.glob("round_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _latest_dir(run_dir) -> Path | None:
    latest = Path(run_dir) / "checkpoints" / "LATEST"
    return latest.parent / latest.read_text().strip() if latest.exists() else None


def read_state(run_dir) -> dict | None:
    """The JSON state of the last complete round (no weights loaded), or None."""
    d = _latest_dir(run_dir)
    return json.loads((d / "state.json").read_text()) if d else None


def load_checkpoint(run_dir) -> tuple[dict, dict | None, list[tuple[dict, float]]] | None:
    """(state, generator weights, regions) of the last complete round, or None."""
    d = _latest_dir(run_dir) if run_dir else None
    if d is None:
        return None
    state = json.loads((d / "state.json").read_text())
    gen = load_file(str(d / "generator.safetensors")) if (d / "generator.safetensors").exists() else None
    regions = [(load_file(str(d / f"region_{i:04d}.safetensors")), tau)
               for i, tau in enumerate(state.get("region_log_taus", []))]
    return state, gen, regions


def latest_generator(ck) -> tuple[int, dict] | None:
    """(version, generator weights) of a loaded checkpoint, for actors that (re)start."""
    if not ck or ck[1] is None or not ck[0].get("version"):
        return None
    return ck[0]["version"], ck[1]
