"""Small helpers shared by the tests."""

import threading


def batch(samples, version=0):
    """A sampler output as the reward service receives it."""
    from banel_ray.records import SampleBatch

    return SampleBatch(samples=list(samples), version=version)


def run_threads(fn, n, timeout=60):
    """fn(0..n-1) on n threads at once; returns the results, raises if any call raised."""
    out, errs = [None] * n, []

    def go(i):
        try:
            out[i] = fn(i)
        except Exception as e:  # pragma: no cover - surfaced below
            errs.append(e)

    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    [t.join(timeout) for t in ts]
    assert not errs, errs
    return out


def assert_one_line_error(r, needle):
    """A CLI refused bad input as the project promises: exit 2, one stderr line naming the problem."""
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def golden(name):
    """Ledger rows (sample, reward, round, version) that the code before the Runner refactor wrote
    for the same tiny run (tests/integration/golden.json; regenerate only on purpose)."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "integration" / "golden.json").read_text())[name]["rows"]


def ledger_rows(run_dir):
    """(sample, reward, round, version) of every ledger row, in payment order, as golden() has them."""
    import json
    import sqlite3

    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    try:
        return [
            [json.loads(s), r, rd, v]
            for s, r, rd, v in db.execute("SELECT sample, reward, round, version FROM evaluations ORDER BY seq")
        ]
    finally:
        db.close()


def descendants(pid):
    """Process ids of ``pid`` and everything it started (read from /proc), to stop only our own."""
    import os

    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = set(), [pid]
    while todo:
        x = todo.pop()
        out.add(x)
        todo += children.get(x, [])
    return out


def alive(pid):
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_tree(pids):
    """SIGKILL these processes (ids we collected from our own process tree)."""
    import os
    import signal

    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def lease_pid(run_dir):
    """The process id of the reward service holding a run's ledger lease (owner host:pid:id), or
    None while there is none; read-only, while the run writes."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT owner FROM lease WHERE id=1").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return int(row[0].split(":")[1]) if row and row[0] else None


def paid(run_dir) -> int:
    """Rows of a run's ledger paid so far (status ok), read-only while the run writes; 0 before
    there is a ledger."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM evaluations WHERE status='ok'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def small_run_sets(rounds: int = 3, budget: int = 100) -> list[str]:
    """The small CLI run (``--set`` items) that the crash, fault-injection and security tests
    start: m = 40, torch sampler, no evaluations (estimates and fresh finals off)."""
    return [
        f"rounds={rounds}",
        f"budget={budget}",
        "samples_per_round=40",
        "pool_size=120",
        "eval.samples=0",
        "eval.final_samples=0",
        "negative.epochs=2",
        "generator.epochs=1",
        "sampler.backend=torch",
        # the rest of the 8-digit quick config these tests and their golden ledgers were made on
        # (the default quick.yaml is now the regime task's: KL anchor, no floor, lr 1e-3)
        "generator.lr=5e-4",
        "generator.kl_coef=0.0",
        "support.kind=token",
        "support.threshold=-6.0",
    ]


HOLD = """
import sys, time
from banel_ray.core import runlock
with runlock.held(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_another_process(run_dir):
    """A real process holding ``run_dir``'s lock, as a live run does (the caller stops it by its pid)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def run_main(*argv):
    """``python -m banel_ray.run ARGV`` in this process; main() installs its own SIGTERM handler,
    which is put back afterwards."""
    import signal

    from banel_ray import run as run_cli

    old = signal.getsignal(signal.SIGTERM)
    try:
        return run_cli.main(list(argv))
    finally:
        signal.signal(signal.SIGTERM, old)


def sets(*items):
    """``--set`` items as command-line words."""
    return [a for s in items for a in ("--set", s)]


def flaky(tmp_path, budget, spec=None, name="f.sqlite", **kw):
    """A reward service on the flaky oracle plug-in (no latency, no backoff unless given), its
    ledger ``tmp_path/name``."""
    from banel_ray.actors.reward_service import RewardService

    spec = {"kind": "flaky", "latency_s": 0.0, **(spec or {})}
    kw.setdefault("backoff_s", 0.0)
    return RewardService("banel_ray.reward_plugins:CallableTask", {"oracle": spec}, str(tmp_path / name), budget, **kw)


def example_module(name):
    """``examples/oracles/<name>.py``, imported as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "oracles" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# a 3-round in-process run of the 8-digit attack: --set items for run-anywhere tests (unit and integration)
TINY_RUN = [
    "task=addition_attack_d8",
    "rounds=3",
    "budget=50",
    "samples_per_round=20",
    "pool_size=40",
    "eval.samples=40",
    "eval.every=2",
    "eval.final_samples=0",
    "negative.epochs=1",
    "generator.epochs=1",
    "sampler.backend=torch",
    "runtime=local",
]
