"""A slow oracle with the addition task's rewards, for fault injection: the same ledger as the
plain task (tests/integration/golden.json), with a pay phase long enough for kills to land in it.
Imported by Ray workers through PYTHONPATH (the tests put this folder on it)."""

import os
import threading
import time


class SlowAddition:
    """The addition task's reward, ``latency_s`` per call of at most ``batch_size`` samples."""

    _lock = threading.Lock()
    _task = None

    def __init__(self, latency_s: float = 0.2, batch_size: int = 10, log: str = ""):
        """``log``: a file that gets one line per call as it starts: pid, time, samples (what
        the user's oracle saw, to hold against the ledger's count)."""
        self.latency_s, self.batch_size, self.log = float(latency_s), int(batch_size), log

    def rewards(self, samples):
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()} {time.time():.3f} {len(samples)}\n")
        with self._lock:  # one solver, loaded once per process
            if SlowAddition._task is None:
                from banel_ray.tasks.addition import AdditionAttackV1

                SlowAddition._task = AdditionAttackV1()  # the task the golden ledgers were written with
        time.sleep(self.latency_s)
        return SlowAddition._task.rewards([tuple(s) for s in samples])
