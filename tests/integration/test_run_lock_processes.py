"""One process per run folder, with real processes: a live holder is seen and refuses a second
one, the OS drops the lock when it dies, and another process sees this one's hold (the command
line's one line for a stale writer is in tests/unit/test_run_lock.py)."""

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
