"""A run folder, owned here: where each file of a run lives, and how it is read and written.

    config.json              the run's config (what --resume, evaluate and export read); config.yaml beside it
    metrics.jsonl            one JSON line per round, appended; a last line torn by a kill is left out
    summary.json             the run's summary, written at its end: a folder with one is finished
    evals/round_NNNN.json    a round's generator on fresh draws (``python -m banel_ray.evaluate``)
    checkpoints/             the round checkpoints (``core/checkpoint.py``), unless checkpoint.dir says elsewhere

The ledger (``ledger.sqlite``, ``ledger.id``: ``actors/ledger.py``), the lock (``core/runlock.py``),
the trackers' files (``report/tracking.py``) and the plots live there too, written by their owners.
File names and JSON formats are those every run folder under ``results/`` was written with.
Estimates inside these files are read with ``core.estimate.Estimate``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from banel_ray.core.checkpoint import LATEST, CheckpointStore
from banel_ray.core.estimate import Estimate

CONFIG, CONFIG_YAML, METRICS, SUMMARY, EVALS, CHECKPOINTS = (
    "config.json",
    "config.yaml",
    "metrics.jsonl",
    "summary.json",
    "evals",
    "checkpoints",
)
_EVAL = re.compile(r"round_(\d{4,})\.json")


def write_atomic(path: Path, text: str) -> None:
    """Whole or not at all: a process killed while writing leaves the previous file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunFolderError(ValueError):
    """A folder that is not a run folder, or whose config is damaged: one line saying which."""


class RunFolder:
    """The files of one run under ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---- config ----------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def config(self, require: tuple[str, ...] = ()) -> dict:
        """The run's config as it was written (a mapping of dotted keys), with ``require``'d keys.
        Raises ``RunFolderError`` for a folder without one, or one that is damaged."""
        p = self.config_path
        if not p.is_file():
            raise RunFolderError(
                f"{self.path} is not a run folder (no {CONFIG}); allowed: a folder banel_ray.run wrote"
            )
        try:
            cfg = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{p} is damaged ({type(e).__name__})") from None
        if not isinstance(cfg, dict):
            raise RunFolderError(f"{p} is damaged (not a mapping of keys)")
        if any(k not in cfg for k in require):
            raise RunFolderError(f"{p} is damaged (not a run's config)")
        return cfg

    def write_config(self, cfg: dict, yaml_text: str | None = None) -> None:
        """config.json (sorted keys, what --resume reads) and, when given, config.yaml (the same
        keys nested, for people), each whole or not at all."""
        write_atomic(self.config_path, json.dumps(cfg, indent=2, sort_keys=True))
        if yaml_text is not None:
            write_atomic(self.path / CONFIG_YAML, yaml_text)

    # ---- metrics.jsonl ---------------------------------------------------------------------------
    def metrics(self) -> list[dict]:
        """The rounds of ``metrics.jsonl``, in order; a last line torn by a kill mid-write is left
        out (that round is redone on resume)."""
        p = self.path / METRICS
        lines = [line for line in p.read_text().splitlines() if line.strip()] if p.exists() else []
        out = []
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                if i < len(lines) - 1:
                    raise
        return out

    def append_metrics(self, m: dict) -> None:
        """One round's line."""
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(m, default=float) + "\n")

    def write_metrics(self, rows: list[dict]) -> None:
        """Replace ``metrics.jsonl`` whole with ``rows`` (a resume drops a round cut short; a kill
        here loses no line)."""
        write_atomic(self.path / METRICS, "".join(json.dumps(m, default=float) + "\n" for m in rows))

    # ---- summary.json ----------------------------------------------------------------------------
    def finished(self) -> bool:
        """Whether the run wrote its summary (its last file)."""
        return (self.path / SUMMARY).is_file()

    def summary(self) -> dict | None:
        p = self.path / SUMMARY
        return json.loads(p.read_text()) if p.is_file() else None

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.path / SUMMARY, json.dumps(summary, indent=2, default=float))

    # ---- evals/round_NNNN.json -------------------------------------------------------------------
    def eval_path(self, round_: int) -> Path:
        return self.path / EVALS / f"round_{int(round_):04d}.json"

    def write_eval(self, round_: int, est: dict) -> Path:
        """Round ``round_``'s fresh evaluation (replacing an earlier one of that round)."""
        out = self.eval_path(round_)
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(est, indent=2, default=float))
        return out

    def read_eval(self, round_: int) -> dict | None:
        """Round ``round_``'s fresh evaluation (None: none, or unreadable)."""
        try:
            return json.loads(self.eval_path(round_).read_text())
        except (OSError, ValueError):
            return None

    def eval_rounds(self) -> list[int]:
        """Rounds with a fresh evaluation, in order."""
        d = self.path / EVALS
        found = (_EVAL.fullmatch(p.name) for p in d.iterdir()) if d.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    def latest_eval(self) -> dict | None:
        """The fresh evaluation of the latest round that has one."""
        rounds = self.eval_rounds()
        return self.read_eval(rounds[-1]) if rounds else None

    def largest_eval(self, est: dict | None) -> dict | None:
        """``est`` (a fresh estimate the run recorded), or the evaluation of its round that replaces
        it: a later ``python -m banel_ray.evaluate RUN --samples N`` replaces the one the run made
        at its end when it drew more, so a table can be sharpened without rerunning a method."""
        mine = Estimate.read(est)
        if mine is None or mine.round is None:
            return est
        later = self.read_eval(mine.round)
        other = Estimate.read(later)
        if other is None or not other.fresh or mine.computed and not other.computed:
            return est  # a computed rate is replaced only by a larger computed one
        if "drawn_from_prior" in other.extra and "drawn_from_prior" not in mine.extra:
            return later  # Algorithm 1 through its regions replaces an evaluation of p0 (made before the fix)
        if mine.computed:  # a re-estimate of a computed rate (as many draws or more) is the later word
            return later if other.draws >= mine.draws else est
        return later if other.draws > mine.draws else est

    # ---- checkpoints -----------------------------------------------------------------------------
    def checkpoints(self, configured: str | os.PathLike = "") -> Path:
        """Where the round checkpoints are: ``checkpoint.dir`` when set, else ``checkpoints/`` here."""
        return Path(configured) if configured else self.path / CHECKPOINTS

    def store(self, configured: str | os.PathLike = "") -> CheckpointStore:
        return CheckpointStore(self.checkpoints(configured))

    def has_checkpoint(self, configured: str | os.PathLike = "") -> bool:
        """Whether a complete checkpoint was published (a run killed after it resumes from it)."""
        return (self.checkpoints(configured) / LATEST).exists()
