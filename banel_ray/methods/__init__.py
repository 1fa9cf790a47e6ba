"""Methods: one class per algorithm, each owning its trainers, how it proposes, its learn step and
its checkpoint state (``base.Method``). ``core.method_registry.METHODS`` names them; ``get`` imports one."""

from __future__ import annotations

import importlib

from banel_ray.core.method_registry import METHODS


def get(name: str):
    """The ``Method`` subclass registered as ``name``."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    mod, cls = METHODS[name][0].split(":")
    return getattr(importlib.import_module(mod), cls)


def names() -> list[str]:
    return list(METHODS)
