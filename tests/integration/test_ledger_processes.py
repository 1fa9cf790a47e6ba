"""The ledger file with real processes: a SIGKILLed writer leaves one self-contained file, and the
export command runs as a module and into a reader that stops early (the ledger's in-process checks
are in tests/unit/test_ledger.py)."""

import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from banel_ray.actors.ledger import Ledger, sample_key

ROOT = Path(__file__).resolve().parents[2]


WRITER = """
import os, signal, sys
from banel_ray.actors.ledger import Ledger, sample_key
led = Ledger(sys.argv[1], owner="killed")
keys = [sample_key((i,)) for i in range(5)]
led.reserve([(k, (i,), 1, 0) for i, k in enumerate(keys)], 100, "c", "killed", lambda k: False)
led.count_attempts(keys)
led.complete([{"key": k, "reward": i % 2, "error": None} for i, k in enumerate(keys[:4])])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_ledger_file_alone_holds_every_commit_of_a_killed_writer(tmp_path):
    """SIGKILLed without closing: a copy of ledger.sqlite (without its -wal) still has every row."""
    path = tmp_path / "run" / "ledger.sqlite"
    path.parent.mkdir()
    r = subprocess.run([sys.executable, "-c", WRITER, str(path)], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / "ledger.sqlite-wal").exists()  # the log is still there: not a clean close
    shutil.copy(path, tmp_path / "copy.sqlite")  # the one file, as a user would copy it
    db = sqlite3.connect(tmp_path / "copy.sqlite")
    rows = db.execute("SELECT sample, reward, status, attempt FROM evaluations ORDER BY seq").fetchall()
    db.close()
    assert rows == [(f"[{i}]", i % 2, "ok", 1) for i in range(4)] + [("[4]", None, "pending", 1)]


def test_export_command_runs_as_a_module(tmp_path):
    Ledger(tmp_path / "ledger.sqlite")
    r = subprocess.run(
        [sys.executable, "-m", "banel_ray.ledger_export", str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert r.returncode == 0 and r.stdout.startswith("seq,sample,reward")


def test_export_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`ledger_export RUN | head -1`: before, a BrokenPipeError traceback once head had its line."""
    led = Ledger(tmp_path / "ledger.sqlite")
    led.record([{"key": sample_key([i] * 20), "sample": [i] * 20, "reward": 0, "round": 1} for i in range(5000)])
    led.close()
    cmd = f"set -o pipefail; {shlex.quote(sys.executable)} -m banel_ray.ledger_export {shlex.quote(str(tmp_path))} | head -1"
    r = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120
    )
    assert r.stdout.startswith("seq,sample,reward") and len(r.stdout.splitlines()) == 1
    assert r.stderr == "" and r.returncode == 141  # quiet, and cut short as any shell tool reports it
