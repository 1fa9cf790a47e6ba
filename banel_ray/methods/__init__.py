"""Methods: one class per algorithm, each owning its trainers, how it proposes, its learn step and
its checkpoint state (``base.Method``). ``core.method_registry.METHODS`` names them; ``get`` imports one."""

from __future__ import annotations

from banel_ray.core.imports import import_attr
from banel_ray.core.method_registry import METHODS


def get(name: str):
    """The ``Method`` subclass registered as ``name`` (its ``module:Class`` through ``core.imports``)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    return import_attr(METHODS[name][0])


def names() -> list[str]:
    return list(METHODS)
