"""Whether the process that started a run (its driver) is still alive, asked from another process.

A run's reward service keeps running for a few seconds after its driver was SIGKILLed: the worker
process of a local Ray instance notices its raylet is gone only then, and until then it would send
the calls it still has to the user's oracle. It asks ``alive`` before each call and sends nothing
once the driver is gone (``actors.reward_service``).

A driver is named by ``token()``: host, pid and the process's start time (so a pid the OS gave to
a new process is not taken for the driver). Asked on another host, or where neither ``/proc`` nor
the OS can tell, the answer is "alive" (nothing is known): the check only ever stops calls, never
adds any. A service that does not see its driver alive when it starts (a worker in another pid
namespace) does not check at all.
"""

from __future__ import annotations

import os
import socket


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def token(pid: int | None = None) -> str:
    """``host:pid:start`` of this process (or ``pid``); start is empty where /proc is missing."""
    pid = os.getpid() if pid is None else int(pid)
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"


def alive(tok: str | None) -> bool:
    """False only when ``tok`` names a process of this host that has exited (or is a zombie, or
    whose pid now belongs to a process started later); True otherwise, this process included."""
    if not tok:
        return True
    host, _, rest = tok.partition(":")
    pid_s, _, start = rest.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return True
    if host != socket.gethostname() or pid == os.getpid() or pid <= 0:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False  # no such process
        try:  # no /proc (macOS): ask the OS whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return True
    except (OSError, IndexError):
        return True
    if fields and fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    return not (start and len(fields) > 19 and fields[19] != start)
