"""Crash points for fault-injection tests: ``BANEL_CRASH_AT=<point>:<round>`` SIGKILLs the driver
there. Points: mid_sampling, mid_oracle, mid_training, mid_checkpoint. Unset in normal use."""

from __future__ import annotations

import os
import signal


def crash_point(name: str, round_: int) -> None:
    if os.environ.get("BANEL_CRASH_AT") == f"{name}:{round_}":
        os.kill(os.getpid(), signal.SIGKILL)
