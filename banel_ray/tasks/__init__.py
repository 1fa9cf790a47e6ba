"""Task registry. A user's own task: ``task: my_pkg.my_module:MyTask`` (a Task subclass)."""

from __future__ import annotations

from banel_ray.core.imports import import_attr
from banel_ray.tasks.base import Task

BUILTIN = {
    "addition_attack": "banel_ray.tasks.addition:AdditionAttack",
    "addition_attack_numeric": "banel_ray.tasks.addition:AdditionAttackNumeric",
    "addition_attack_d8": "banel_ray.tasks.addition:AdditionAttackD8",
    "addition_attack_v1": "banel_ray.tasks.addition:AdditionAttackV1",
    "mnist_0to6": "banel_ray.tasks.mnist:MnistZeroToSix",  # the 4-token code (exact rates)
    "mnist_0to6_pixels": "banel_ray.tasks.mnist_pixels:MnistPixels",  # binary 12x12 (paper regime)
    "mnist_0to6_rare": "banel_ray.tasks.mnist_rare:MnistRare",  # the 4-token code, prior at <= 1e-20 (exact)
    "gsm_hard": "banel_ray.tasks.gsm_hard:GsmHard",
    "synthetic": "banel_ray.tasks.synthetic:Synthetic",  # planted feature: q, s, e (exact rates)
    "callable": "banel_ray.reward_plugins:CallableTask",
}
# class paths of earlier versions, so their configs and run folders still resolve
RENAMED = {"banel_ray.oracles:CallableTask": "banel_ray.reward_plugins:CallableTask"}


def resolve(name: str) -> type[Task]:
    """Find a task class by registry name or ``module:Class`` path (``core.imports.import_attr``).
    Raises ConfigError: neither a registered name nor an importable ``module:Class``."""
    return import_attr(BUILTIN.get(name, RENAMED.get(name, name)))


def build(name: str, options: dict | None = None) -> Task:
    return resolve(name)(**(options or {}))
