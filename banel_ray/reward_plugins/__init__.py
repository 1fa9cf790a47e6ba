"""Reward plug-ins (the user's oracles): wrap a function, a batch function or an HTTP endpoint; a flaky test
oracle; and ``CallableTask``, a task built around one. See ``base.py`` for the protocol, ``spec.py`` for
specs and their kinds, ``task.py`` for configs, and ``examples/oracles/`` for one runnable example per kind."""

from banel_ray.reward_plugins.base import BatchOracle, Oracle, SampleOracle, TaskRewards, from_task
from banel_ray.reward_plugins.flaky import FlakyOracle, parity
from banel_ray.reward_plugins.http import HttpOracle
from banel_ray.reward_plugins.spec import build
from banel_ray.reward_plugins.task import CallableTask

__all__ = [
    "Oracle",
    "SampleOracle",
    "BatchOracle",
    "HttpOracle",
    "FlakyOracle",
    "TaskRewards",
    "CallableTask",
    "build",
    "from_task",
    "parity",
]
