"""One process per run folder: the advisory lock (held by real processes, dropped by the OS when
they die), and the one line a run prints when another process took its ledger."""

import os
import signal
import subprocess
import sys

import pytest

from banel_ray.core import runlock

from helpers import hold_in_another_process


def test_a_live_holder_is_seen_and_refuses_a_second_one_and_the_os_drops_the_lock_when_it_dies(tmp_path):
    assert runlock.holder(tmp_path) is None and not (tmp_path / runlock.NAME).exists()  # looking creates nothing
    p = hold_in_another_process(tmp_path)
    try:
        assert runlock.holder(tmp_path) == p.pid
        with pytest.raises(runlock.Busy) as e, runlock.held(tmp_path):
            pass
        msg = str(e.value)
        assert f"in use by process {p.pid}" in msg and f"kill {p.pid}" in msg and "\n" not in msg
    finally:
        os.kill(p.pid, signal.SIGKILL)  # no clean-up runs: the OS releases the lock
        p.wait()
    assert runlock.holder(tmp_path) is None
    with runlock.held(tmp_path):
        assert (tmp_path / runlock.NAME).read_text().strip() == str(os.getpid())


def test_the_lock_is_reentrant_in_one_process_and_released_at_the_end(tmp_path):
    with runlock.held(tmp_path), runlock.held(tmp_path):  # the command line and job.run both take it
        assert runlock.holder(tmp_path) is None  # this process's own hold is not "another process"
        probe = "import sys; from banel_ray.core import runlock; print(runlock.holder(sys.argv[1]))"
        seen = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
        assert seen.stdout.strip() == str(os.getpid())
    seen = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert seen.stdout.strip() == "None"


def test_a_stale_writer_stops_the_command_line_in_one_line(tmp_path, monkeypatch, capsys):
    """Another reward service took the ledger's lease: one line and exit 2, also when Ray wraps it."""
    from ray.exceptions import RayTaskError

    from banel_ray import run as cli
    from banel_ray.actors.ledger import StaleWriter

    stale = StaleWriter(
        "ledger x/ledger.sqlite: lease 1 of a was taken by b (lease 2); this writer may no longer write"
    )
    trace = "Traceback (most recent call last):\n  ...\nStaleWriter: " + str(stale)
    wrapped = RayTaskError("RewardService.pay", trace, stale).as_instanceof_cause()  # what ray.get raises

    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)  # main's SIGTERM handler: not in pytest
    for err in (stale, wrapped):

        def fail(*a, err=err, **k):
            raise err

        monkeypatch.setattr(cli, "run", fail)
        rd = tmp_path / "r"
        assert cli.main(["--set", f"run_dir={rd}", "--set", "eval.samples=0"]) == 2
        lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(lines) == 1 and "lease 1 of a was taken by b" in lines[0]
        assert f"stop the other, then --resume {rd}" in lines[0]
