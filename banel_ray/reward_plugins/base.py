"""Reward plug-ins (oracles): what turns samples into rewards.

An oracle is any object with ``rewards(samples) -> list`` (one entry per sample: 1, 0, or ``None``
/ an exception object where that sample could not be evaluated) and an optional ``batch_size``
(how many samples it wants per call; 0 = any number in one call). ``actors.reward_service.RewardService`` adds the budget,
ledger, rate limit, concurrency cap, timeout and retries around it, so plug-ins stay plain.

Kinds (``build`` turns a spec into one):

- ``SampleOracle(fn)``: ``fn(sample) -> reward``, a plain or ``async`` function; one sample per
  call (``batch_size=1``), so ``RewardService`` runs up to ``max_in_flight`` of them at once.
- ``BatchOracle(fn)``: ``fn(samples) -> rewards``; one call for the whole batch (``batch_size=0``).
- ``HttpOracle(url)``: POSTs ``{"samples": [[ids...], ...]}`` as JSON and reads ``{"rewards": [...]}``.
- ``FlakyOracle``: a slow, seeded, flaky test oracle (``banel_ray.reward_plugins.flaky``).

A spec is an oracle object, a callable (per-sample), a string (``"pkg.mod:fn"``, per-sample; or an
``http(s)://`` URL), or a dict, which is what YAML configs hold::

    {"kind": "sample", "fn": "my_pkg.oracle:reward"}          # one sample -> reward (sync or async)
    {"kind": "batch",  "fn": "my_pkg.oracle:rewards", "batch_size": 64}
    {"kind": "http",   "url": "http://127.0.0.1:8000/rewards", "timeout_s": 10}
    {"kind": "flaky",  "latency_s": 0.2, "failure_rate": 0.1, "seed": 0}
    {"kind": "class",  "cls": "my_pkg.oracle:MyOracle", ...keyword arguments}
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any


class Oracle:
    """Base class of plug-in oracles (duck typing is enough: ``rewards`` and ``batch_size``)."""

    batch_size: int = 0

    def rewards(self, samples: Sequence[tuple[int, ...]]) -> list:
        raise NotImplementedError


def resolve(path: str) -> Any:
    """``"pkg.module:attr"`` -> the attribute."""
    if ":" not in path:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    mod, attr = path.split(":", 1)
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _fn(f) -> Callable:
    return resolve(f) if isinstance(f, str) else f


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


def build(spec) -> Oracle:
    """An oracle from a spec (see the module docstring)."""
    if inspect.isclass(spec):
        return spec()
    if isinstance(spec, Oracle) or (hasattr(spec, "rewards") and not isinstance(spec, (str, dict))):
        return spec
    if isinstance(spec, str):
        if spec.startswith(("http://", "https://")):
            from banel_ray.reward_plugins.http import HttpOracle

            return HttpOracle(spec)
        return build(resolve(spec))
    if isinstance(spec, dict):
        opts = dict(spec)
        kind = opts.pop("kind", "sample")
        if kind in ("sample", "callable"):
            return SampleOracle(opts.pop("fn"), **opts)
        if kind == "batch":
            return BatchOracle(opts.pop("fn"), **opts)
        if kind == "http":
            from banel_ray.reward_plugins.http import HttpOracle

            return HttpOracle(**opts)
        if kind == "flaky":
            from banel_ray.reward_plugins.flaky import FlakyOracle

            return FlakyOracle(**opts)
        if kind == "class":
            return resolve(opts.pop("cls"))(**opts)
        raise ValueError(f"unknown oracle kind {kind!r}: sample, batch, http, flaky or class")
    if callable(spec):
        return SampleOracle(spec)
    raise TypeError(f"cannot make an oracle from {spec!r}")


KINDS = ("sample", "batch", "http", "flaky", "class")
ALLOWED = "a module:function path importable here, an http(s):// URL, or a mapping with kind " + "|".join(KINDS)


def _kind_class(kind: str):
    from banel_ray.reward_plugins.flaky import FlakyOracle
    from banel_ray.reward_plugins.http import HttpOracle

    return {"sample": SampleOracle, "callable": SampleOracle, "batch": BatchOracle, "http": HttpOracle}.get(
        kind, FlakyOracle if kind == "flaky" else None
    )


def _import_problem(path) -> str | None:
    if not isinstance(path, str):
        return f"expected a module:attribute path, got {path!r}"
    try:
        resolve(path)
    except Exception as e:  # noqa: BLE001 - any failure to import is the user's to fix
        return f"cannot import {path!r} ({type(e).__name__}: {e})"
    return None


def check_spec(spec) -> str | None:
    """What is wrong with an oracle spec, in one line (None: it can be built). Imports the code it
    names (the user named it) but builds nothing."""
    import inspect as _inspect

    if isinstance(spec, str):
        if spec.startswith(("http://", "https://")):
            from urllib.parse import urlsplit

            return None if urlsplit(spec).hostname else f"URL {spec!r} has no host"
        msg = _import_problem(spec)
        return f"{msg}; allowed: {ALLOWED}" if msg else None
    if not isinstance(spec, dict):
        return f"got {spec!r}; allowed: {ALLOWED}"
    opts = dict(spec)
    kind = opts.pop("kind", "sample")
    if kind == "class":
        if "cls" not in opts:
            return "kind class needs 'cls' (a module:Class path)"
        return _import_problem(opts["cls"])
    cls = _kind_class(kind)
    if cls is None:
        return f"unknown oracle kind {kind!r}; allowed: {', '.join(KINDS)}"
    params = [p for p in _inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(opts) - set(params))
    if unknown:
        return f"unknown key {unknown[0]!r} for kind {kind}; allowed: {', '.join(params)}"
    need = {"sample": "fn", "callable": "fn", "batch": "fn", "http": "url"}.get(kind)
    if need and need not in opts:
        return f"kind {kind} needs {need!r}"
    if kind == "http":
        from banel_ray.reward_plugins.http import HttpOracle

        try:
            HttpOracle(**opts)  # checks the URL and options; opens no connection
        except (TypeError, ValueError) as e:
            return str(e)
        return None
    fn = opts.get("fn")
    return _import_problem(fn) if isinstance(fn, str) else None


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
