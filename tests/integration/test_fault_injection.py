"""Fault injection: the driver, and separately the reward service's worker, SIGKILLed at random
moments, the run resumed each time; the ledger must equal an uninterrupted run's
(tests/integration/golden.json: sample, reward, round and version of every paid row, in order).

The moments are random but reproducible: each kill waits for a random number of paid rows (read
from the ledger while the run writes it) plus a random delay, from ``random.Random(SEED)``;
``BANEL_FAULT_SEED`` picks the seed, and it is printed in every failure. The oracle is the
addition task's own reward behind a 0.2 s delay per call of 10 samples (fault_oracles.py), so a
round's pay phase lasts long enough for kills to land in it.

The default suite runs the short variant (one driver kill in process, one worker kill on Ray);
``-m slow`` kills the driver on Ray many times, and the worker many times, and deletes or
truncates the ledger of a killed run before its resume (refused; nothing paid twice), also of a
run killed before its first checkpoint (deleted, or replaced by an empty ledger), and SIGKILLs the
driver alone on Ray mid-call (its reward service, which outlives it for seconds, sends no further
call, and every call the oracle saw is counted).
"""

import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import descendants, golden, kill_tree, lease_pid, ledger_rows, paid, small_run_sets

HERE = Path(__file__).resolve().parent
SEED = int(os.environ.get("BANEL_FAULT_SEED", time.time_ns() % 10_000))
ORACLE = "{kind: class, cls: 'fault_oracles:SlowAddition', latency_s: 0.2, batch_size: 10}"
SETS = [
    *small_run_sets(),
    "task=callable",
    "task_options.base=addition_attack_v1",
    f"task_options.oracle={ORACLE}",
]


class Run:
    """One driver process, its output read as it comes."""

    def __init__(self, run_dir: Path, *extra, resume=False):
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        env.pop("BANEL_CRASH_AT", None)
        args = [sys.executable, "-m", "banel_ray.run"]
        if resume:
            args += ["--resume", str(run_dir), "--trust-run-folder"]  # the test made this folder
        else:
            args += [a for s in [*SETS, *extra, f"run_dir={run_dir}"] for a in ("--set", s)]
        self.p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.out.append(line)
            self.lines.put(line)

    def kill(self):
        """SIGKILL the driver and everything it started (a killed driver's Ray processes would
        otherwise linger for a while on this shared machine)."""
        tree = descendants(self.p.pid)
        self.p.kill()
        self.p.wait()
        kill_tree(tree - {self.p.pid})

    def tail(self):
        return "".join(self.out[-30:])


def wait_until(cond, run: Run, timeout=900):
    """Wait for ``cond()``; False if the run ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if run.p.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError(f"timed out (seed {SEED})\n{run.tail()}")


def moments(rng, kills: int) -> list[tuple[int, float]]:
    """``kills`` random moments, in order: (paid rows to wait for, then a delay in seconds). Paid
    rows stop at 80 of 100 and delays at 1 s, so each kill lands before the run can end (after row
    80 come round 2's training, round 3 and the summary); on a resumed run whose ledger already
    holds the rows, the kill lands while it replays paid rounds (free) or trains."""
    return sorted((rng.randint(1, 80), rng.uniform(0.0, 1.0)) for _ in range(kills))


def at(moment, run_dir: Path, run: Run, before=None) -> bool:
    """Wait until this run's reward service holds the ledger (its roles are up: not a kill during
    start-up), then for the moment. False if the run ended first."""
    rows, delay = moment
    if not wait_until(lambda: lease_pid(run_dir) not in (None, before), run):
        return False
    if not wait_until(lambda: paid(run_dir) >= rows, run):
        return False
    time.sleep(delay)
    return run.p.poll() is None


_REFERENCE: list = []


def uninterrupted(run_dir: Path) -> list:
    """The ledger rows of the same run left alone, made once per session beside the killed ones, so
    that both see the same machine state (tests/integration/test_runner_local.py holds such a run to the golden
    rows; here, after other tests in the same CI session, the killed runs' first round-2 draw
    differed from the golden in one token, on two CI runs, while each test alone matched it; the
    cause was not found)."""
    if not _REFERENCE:
        ref = run_dir.parent / "uninterrupted"
        run = Run(ref, "runtime=local")
        assert run.p.wait(timeout=900) == 0, run.tail()
        _REFERENCE.append(ledger_rows(ref))
    return _REFERENCE[0]


def check(run_dir: Path, runs: list[Run], what: str):
    rows = ledger_rows(run_dir)
    msg = f"{what} (seed {SEED}); last run's output:\n{runs[-1].tail()}"
    assert rows == uninterrupted(run_dir), msg  # same samples, rewards, rounds, versions, order
    assert len(rows) == len(golden("distill_torch")), msg
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    charged, distinct = db.execute("SELECT SUM(charged), COUNT(DISTINCT key) FROM evaluations").fetchone()
    db.close()
    assert charged == 100 == distinct, msg  # nothing paid twice, the budget held
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3, msg


def kill_driver(run_dir: Path, kills: int, *extra) -> list[Run]:
    """Kill the driver at ``kills`` random moments, resuming after each; then let it finish."""
    todo = moments(random.Random(f"driver-{SEED}"), kills)
    runs = []
    while True:
        before = lease_pid(run_dir)
        run = Run(run_dir, *extra, resume=bool(runs))
        runs.append(run)
        if todo and at(todo[0], run_dir, run, before):
            run.kill()
            todo.pop(0)
            continue
        rc = run.p.wait(timeout=600)
        assert rc == 0, f"rc {rc} (seed {SEED})\n{run.tail()}"
        break
    assert not todo, f"{len(todo)} of {kills} kills did not land before the run ended (seed {SEED})"
    return runs


def kill_worker(run_dir: Path, kills: int) -> list[Run]:
    """Kill the reward service's worker process (found through the ledger's lease, and only if it
    is one of our driver's descendants) at ``kills`` random moments. Ray restarts the actor and
    retries its call; once its restarts are used up the driver fails and is resumed."""
    todo = moments(random.Random(f"worker-{SEED}"), kills)
    runs, handled = [], set()
    while True:
        run = Run(run_dir, resume=bool(runs))
        runs.append(run)
        handled.add(lease_pid(run_dir))  # a previous driver's service, if any
        while todo:
            if not wait_until(lambda: lease_pid(run_dir) not in handled, run):
                break  # this driver ended (finished, or failed after the actor's last restart)
            if not at(todo[0], run_dir, run):
                break
            pid = lease_pid(run_dir)
            handled.add(pid)
            if pid in descendants(run.p.pid):  # never anything but our own worker
                os.kill(pid, signal.SIGKILL)
                todo.pop(0)
        rc = run.p.wait(timeout=600)
        if rc == 0:
            break
        kill_tree(descendants(run.p.pid) - {run.p.pid})  # restarts used up: resume, as a user would
        assert len(runs) <= kills + 2, f"rc {rc} (seed {SEED})\n{run.tail()}"
    assert not todo, f"{len(todo)} of {kills} kills did not land before the run ended (seed {SEED})"
    return runs


def test_driver_killed_at_a_random_moment_resumes_to_the_uninterrupted_ledger(tmp_path):
    """In process (runtime=local): the driver holds every role, the reward service included."""
    runs = kill_driver(tmp_path / "run", 1, "runtime=local")
    check(tmp_path / "run", runs, "driver killed once, in process")


def test_reward_worker_killed_at_a_random_moment_the_run_ends_with_the_uninterrupted_ledger(tmp_path):
    runs = kill_worker(tmp_path / "run", 1)
    check(tmp_path / "run", runs, "reward service's worker killed once")
    assert len(runs) == 1  # Ray restarted the actor and retried its call: no resume was needed


@pytest.mark.slow
def test_driver_killed_many_times_on_ray(tmp_path):
    runs = kill_driver(tmp_path / "run", 6)
    check(tmp_path / "run", runs, "driver killed 6 times on Ray")


@pytest.mark.slow
def test_reward_worker_killed_many_times(tmp_path):
    runs = kill_worker(tmp_path / "run", 8)
    check(tmp_path / "run", runs, "reward service's worker killed 8 times")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_ledger_deleted_or_truncated_between_kill_and_resume_is_refused_and_nothing_is_paid_twice(tmp_path, damage):
    """In process: the driver is SIGKILLed at a random moment after its first checkpoint, then
    ``ledger.sqlite`` (with the log a killed writer may leave beside it, as ``rm ledger.sqlite*``
    would) is deleted, or cut to half its bytes. ``--resume`` is refused in one line, exit 2, and
    leaves the ledger as it found it; put back, the run resumes to the uninterrupted ledger."""
    run_dir = tmp_path / "run"
    led = run_dir / "ledger.sqlite"
    rng = random.Random(f"ledger-{damage}-{SEED}")
    first = Run(run_dir, "runtime=local")
    assert wait_until((run_dir / "checkpoints" / "LATEST").exists, first), first.tail()
    time.sleep(rng.uniform(0.0, 1.0))
    assert first.p.poll() is None, f"the run ended before the kill (seed {SEED})\n{first.tail()}"
    first.kill()
    kept = tmp_path / "kept"
    kept.mkdir()
    side = [led.with_name(led.name + x) for x in ("-wal", "-shm")]
    for f in [led, *side]:
        if f.exists():
            shutil.copy2(f, kept / f.name)
    for f in side:
        f.unlink(missing_ok=True)
    if damage == "deleted":
        led.unlink()
    else:
        data = led.read_bytes()
        led.write_bytes(data[: len(data) // 2])
    before = led.read_bytes() if led.exists() else None

    refused = Run(run_dir, resume=True)
    rc = refused.p.wait(timeout=300)
    time.sleep(0.2)  # the reader thread has the last line
    errors = [x for x in refused.out if x.startswith("error")]
    msg = f"seed {SEED}\n{refused.tail()}"
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("error: --resume: ") and str(led) in errors[0], msg
    assert (led.read_bytes() if led.exists() else None) == before, msg  # nothing written, nothing paid
    assert not any(f.exists() for f in side), msg

    for f in kept.iterdir():  # the ledger put back, as the refusal asks: the run ends as if never stopped
        shutil.copy2(f, run_dir / f.name)
    last = Run(run_dir, resume=True)
    assert last.p.wait(timeout=600) == 0, f"seed {SEED}\n{last.tail()}"
    check(run_dir, [first, refused, last], f"ledger {damage} between kill and resume")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "replaced"])
def test_a_ledger_lost_before_the_first_checkpoint_is_refused_and_nothing_is_paid_twice(tmp_path, damage):
    """In process: the driver is SIGKILLed after a random number of round 1's rows were paid,
    before its first checkpoint (no record of the spend but the ledger), then ``ledger.sqlite``
    (and its side files) is deleted, or replaced by an empty ledger. ``--resume`` is refused in one
    line, exit 2, nothing written; put back, the run resumes to the uninterrupted ledger."""
    run_dir = tmp_path / "run"
    led = run_dir / "ledger.sqlite"
    rng = random.Random(f"early-{damage}-{SEED}")
    first = Run(run_dir, "runtime=local")
    assert at((rng.randint(1, 30), rng.uniform(0.0, 0.3)), run_dir, first), first.tail()
    first.kill()
    assert not (run_dir / "checkpoints" / "LATEST").exists(), f"killed after the first checkpoint (seed {SEED})"
    assert paid(run_dir) > 0 and (run_dir / "ledger.id").exists(), first.tail()
    kept = tmp_path / "kept"
    kept.mkdir()
    side = [led.with_name(led.name + x) for x in ("-wal", "-shm")]
    for f in [led, *side]:
        if f.exists():
            shutil.copy2(f, kept / f.name)
        f.unlink(missing_ok=True)
    if damage == "replaced":
        from banel_ray.actors.ledger import Ledger

        Ledger(led).close()  # a new, empty ledger: before, the resume paid round 1 again
    before = sorted((f.name, f.read_bytes()) for f in run_dir.iterdir() if f.is_file() and f.name != ".run.lock")

    refused = Run(run_dir, resume=True)
    rc = refused.p.wait(timeout=300)
    time.sleep(0.2)  # the reader thread has the last line
    errors = [x for x in refused.out if x.startswith("error")]
    msg = f"seed {SEED}\n{refused.tail()}"
    assert rc == 2 and len(errors) == 1 and errors[0].startswith(f"error: --resume: {led} "), msg
    assert "records that this run made ledger" in errors[0], msg
    after = sorted((f.name, f.read_bytes()) for f in run_dir.iterdir() if f.is_file() and f.name != ".run.lock")
    assert after == before, msg  # nothing written, nothing paid

    for f in run_dir.glob("ledger.sqlite*"):
        f.unlink()
    for f in kept.iterdir():  # the ledger put back, as the refusal asks: the run ends as if never stopped
        shutil.copy2(f, run_dir / f.name)
    last = Run(run_dir, resume=True)
    assert last.p.wait(timeout=600) == 0, f"seed {SEED}\n{last.tail()}"
    check(run_dir, [first, refused, last], f"ledger {damage} before the first checkpoint")


@pytest.mark.slow
def test_a_killed_drivers_reward_service_on_ray_sends_no_further_call_and_every_call_is_counted(tmp_path):
    """Only the driver is SIGKILLed, on Ray, once round 1's first oracle call has returned (8
    calls of 5 samples, one at a time, 0.3 s each). Its reward service outlives it for a few
    seconds (the worker notices the dead raylet only then) and, before, kept sending the rest of its
    calls to the oracle (5 calls within 2 s of the kill, seen here). Now it checks before each call
    that the driver runs: after the kill at most the one call already past that check starts. Every
    call the plug-in saw, from every process, is counted in the ledger; the resumed run ends with
    the uninterrupted ledger."""
    run_dir = tmp_path / "run"
    calls = tmp_path / "calls.txt"
    oracle = f"{{kind: class, cls: 'fault_oracles:SlowAddition', latency_s: 0.3, batch_size: 5, log: '{calls}'}}"
    rng = random.Random(f"owner-{SEED}")
    first = Run(run_dir, f"task_options.oracle={oracle}", "oracle.max_in_flight=1")
    assert at((5, rng.uniform(0.0, 0.25)), run_dir, first), first.tail()
    worker = lease_pid(run_dir)
    tree = descendants(first.p.pid)
    assert worker in tree, first.tail()
    first.p.kill()  # the driver alone, as a user's `kill -9 PID` does
    first.p.wait()
    killed = time.time()
    try:
        deadline = time.time() + 60
        while os.path.exists(f"/proc/{worker}") and time.time() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{worker}"), f"the reward worker outlived its driver by 60 s (seed {SEED})"
    finally:
        kill_tree(tree - {first.p.pid})  # the rest (Ray's agents linger up to a minute on their own)
    seen = [(float(t), int(n)) for _, t, n in (x.split() for x in calls.read_text().splitlines())]
    late = [round(t - killed, 2) for t, _ in seen if t > killed]
    msg = f"calls started after the kill at +{late} s (seed {SEED})\n{first.tail()}"
    assert len(late) <= 1 and all(x < 0.5 for x in late), msg
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    attempts = db.execute("SELECT SUM(attempt) FROM evaluations").fetchone()[0]
    db.close()
    assert attempts >= sum(n for _, n in seen), msg  # every call the plug-in saw is counted

    last = Run(run_dir, resume=True)
    assert last.p.wait(timeout=600) == 0, f"seed {SEED}\n{last.tail()}"
    check(run_dir, [first, last], "driver alone killed on Ray mid-call")
    seen = sum(int(x.split()[2]) for x in calls.read_text().splitlines())
    db = sqlite3.connect(str(run_dir / "ledger.sqlite"))
    assert db.execute("SELECT SUM(attempt) FROM evaluations").fetchone()[0] >= seen  # over both processes
    db.close()
