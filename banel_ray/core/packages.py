"""Whether an optional package is installed, looked up without importing it (a torch-only machine
has no Ray or vLLM; matplotlib is optional)."""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails, a module without a spec
        return False
