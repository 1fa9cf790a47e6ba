"""Reward plug-ins (oracles): what turns samples into rewards.

An oracle is any object with ``rewards(samples) -> list`` (one entry per sample: 1, 0, or ``None``
/ an exception object where that sample could not be evaluated) and an optional ``batch_size``
(how many samples it wants per call; 0 = any number in one call). ``actors.reward_service.RewardService`` adds the budget,
ledger, rate limit, concurrency cap, timeout and retries around it, so plug-ins stay plain.

The protocol and the function wrappers are here (``SampleOracle``, ``BatchOracle``, ``TaskRewards``);
``HttpOracle`` (``http.py``) and ``FlakyOracle`` (``flaky.py``) build on ``Oracle``; ``spec.py``
turns a spec (a config value) into one of them and checks specs: the one table of kinds.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Sequence

from banel_ray.core.imports import import_attr


class Oracle:
    """Base class of plug-in oracles (duck typing is enough: ``rewards`` and ``batch_size``)."""

    batch_size: int = 0

    def rewards(self, samples: Sequence[tuple[int, ...]]) -> list:
        raise NotImplementedError


def _fn(f) -> Callable:
    return import_attr(f) if isinstance(f, str) else f


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, in a daemon thread, for async plug-ins."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, daemon=True, name="oracle-async").start()
        return _loop


class SampleOracle(Oracle):
    """One sample -> one reward. ``fn`` may be ``async``; a batch of them is then awaited together.
    A sample whose ``fn`` raises gets the exception in its place (that sample failed, not the call)."""

    def __init__(self, fn, batch_size: int = 1):
        self.fn = _fn(fn)
        self.batch_size = int(batch_size)
        call = getattr(self.fn, "__call__", None)  # noqa: B004 - an object with an async __call__
        self.is_async = inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(call)

    def rewards(self, samples):
        if self.is_async:

            async def gather():
                return await asyncio.gather(*(self.fn(tuple(s)) for s in samples), return_exceptions=True)

            return list(asyncio.run_coroutine_threadsafe(gather(), background_loop()).result())
        out = []
        for s in samples:
            try:
                out.append(self.fn(tuple(s)))
            except Exception as e:  # noqa: BLE001 - reported per sample
                if len(samples) == 1:
                    raise
                out.append(e)
        return out


class BatchOracle(Oracle):
    """A list of samples -> a list of rewards, in one call (``batch_size`` 0: all of them)."""

    def __init__(self, fn, batch_size: int = 0):
        self.fn = _fn(fn)
        self.batch_size = int(batch_size)
        if inspect.iscoroutinefunction(self.fn):
            raise TypeError("BatchOracle takes a plain function; wrap async code in asyncio.run")

    def rewards(self, samples):
        return list(self.fn([tuple(s) for s in samples]))


class TaskRewards(Oracle):
    """A task's own ``rewards`` method as an oracle: the default path (one batch call)."""

    batch_size = 0

    def __init__(self, task):
        self.task = task

    def rewards(self, samples):
        return list(self.task.rewards(samples))


def from_task(task) -> Oracle:
    """The plug-in ``RewardService`` pays: the task's ``reward_plugin()`` when it has one (a
    ``CallableTask``), else the task's ``rewards`` method."""
    o = task.reward_plugin()
    return o if o is not None else TaskRewards(task)


def _as_int_rewards(values) -> list[int]:
    """Strict 1/0 list (for callers with no place for a failure, such as success-rate estimates)."""
    out = []
    for v in values:
        if isinstance(v, BaseException):
            raise v
        if v is None or v not in (0, 1):
            raise ValueError(f"oracle returned {v!r} instead of 0 or 1")
        out.append(int(v))
    return out
