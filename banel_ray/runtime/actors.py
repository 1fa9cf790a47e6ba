"""Where actors run: on Ray (``RayRuntime``) or in this process (``LocalRuntime``).

The runner and the methods talk to every role the same way, Ray's way: ``handle.method.remote(...)``
returns a reference, ``runtime.get(ref)`` waits for it, references passed as arguments are resolved
before the call. ``LocalRuntime`` runs the same plain classes behind a synchronous shim, so a
method runs without Ray (a notebook, a debugger, a GPU machine that has torch but no Ray) and a
round, a resume or a checkpoint is unit-tested in milliseconds.

Each role's restart and concurrency options live in ``ROLES``; the actor classes themselves know
nothing of Ray.
"""

from __future__ import annotations

from typing import Any

# role -> Ray actor options (restarts and retries: a crashed actor comes back and restores itself
# from the last checkpoint; the reward service is threaded so concurrent callers share one budget)
ROLES: dict[str, dict] = {
    "sampler": {"max_restarts": 2, "max_task_retries": 2},
    "trainer": {"max_restarts": 2, "max_task_retries": 2},
    "evaluator": {"max_restarts": 2, "max_task_retries": 2},
    "reward_service": {"max_restarts": 3, "max_task_retries": 3, "max_concurrency": 32},
}


# ---- in process -----------------------------------------------------------------------------------


class LocalRef:
    """The result of a call made in process (what ``ray.ObjectRef`` is on Ray)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _resolve(x):
    return x.value if isinstance(x, LocalRef) else x


class _LocalMethod:
    def __init__(self, fn, num_returns: int = 1):
        self.fn, self.num_returns = fn, num_returns

    def options(self, num_returns: int = 1, **_):
        return _LocalMethod(self.fn, num_returns)

    def remote(self, *args, **kwargs):
        out = self.fn(*[_resolve(a) for a in args], **{k: _resolve(v) for k, v in kwargs.items()})
        if self.num_returns == 1:
            return LocalRef(out)
        return tuple(LocalRef(v) for v in out)


class LocalHandle:
    """An actor handle for a plain object: ``handle.method.remote(...)`` calls it now."""

    def __init__(self, obj, role: str):
        self._obj, self._role = obj, role

    def __getattr__(self, name: str):
        return _LocalMethod(getattr(self._obj, name))

    @property
    def instance(self):
        """The object itself (tests and debuggers may look inside)."""
        return self._obj


class LocalRuntime:
    """Every role in this process, called synchronously (no Ray)."""

    name = "local"

    def spawn(
        self, cls, role: str, *, num_cpus: float = 0, num_gpus: float = 0, pin_here: bool = False, **kwargs
    ) -> LocalHandle:
        return LocalHandle(cls(**kwargs), role)

    @staticmethod
    def get(refs):
        if isinstance(refs, (list, tuple)):
            return [_resolve(r) for r in refs]
        return _resolve(refs)

    @staticmethod
    def put(value):
        return LocalRef(value)

    def kill(self, handle) -> None:
        """Nothing to stop in process (the runner closes what needs closing first)."""

    def cpus(self) -> float:
        import os

        return float(os.cpu_count() or 1)


# ---- on Ray ---------------------------------------------------------------------------------------


class RayRuntime:
    """Roles as Ray actors. Must be created after ``ray.init``.

    ``pin_here`` places an actor on the driver's node (the reward service: its ledger sits in the
    run folder the driver writes); inside a placement group (a Tune trial) every actor stays in it.
    """

    name = "ray"

    def __init__(self):
        import ray
        from ray.util.placement_group import get_current_placement_group
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

        self.ray = ray
        self._classes: dict = {}
        pg = get_current_placement_group()
        if pg is not None:  # e.g. a Tune trial: stay inside its reservation
            self.here = self.anywhere = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
        else:
            self.here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            self.anywhere = None

    def spawn(self, cls, role: str, *, num_cpus: float = 0, num_gpus: float = 0, pin_here: bool = False, **kwargs):
        key = (cls, role)
        if key not in self._classes:
            self._classes[key] = self.ray.remote(**ROLES[role])(cls)
        opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        strategy = self.here if pin_here else self.anywhere
        if strategy is not None:
            opts["scheduling_strategy"] = strategy
        return self._classes[key].options(**opts).remote(**kwargs)

    def get(self, refs):
        return self.ray.get(refs)

    def put(self, value):
        return self.ray.put(value)

    def kill(self, handle) -> None:
        self.ray.kill(handle)

    def cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 0))
