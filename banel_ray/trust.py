"""Run folders are data: what code a resumed run may import.

A run folder's ``config.json`` can name code: a task class (``task: my_pkg.tasks:MyTask``), an
oracle or evaluator function or class (``task_options.oracle.fn``, ``cls``, ...). Importing it runs
it, so ``--resume`` of a folder someone else wrote (shared, downloaded) could run anything. So a
resume imports only

- code this package ships under fixed names (``SHIPPED``: the built-in tasks and oracles), and
- code the user names again on the command line (``--set task=...`` with the same path), or
- everything, with ``--trust-run-folder`` (for folders you made yourself).

``code_refs`` finds every ``module:attribute`` string in the task and its options, however deeply
nested; ``untrusted`` says which of them the user has not named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CODE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

SHIPPED = {
    "banel_ray.tasks.addition:AdditionAttack",
    "banel_ray.tasks.mnist:MnistZeroToSix",
    "banel_ray.tasks.gsm_hard:GsmHard",
    "banel_ray.reward_plugins:CallableTask",
    "banel_ray.oracles:CallableTask",
    "banel_ray.reward_plugins:parity",
    "banel_ray.reward_plugins.flaky:parity",
    "banel_ray.reward_plugins:FlakyOracle",
    "banel_ray.reward_plugins.flaky:FlakyOracle",
    "banel_ray.reward_plugins:HttpOracle",
    "banel_ray.reward_plugins.http:HttpOracle",
}


def _walk(value, path: str):
    if isinstance(value, str):
        if CODE.match(value.strip()):
            yield path, value.strip()
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def code_refs(cfg: dict) -> dict[str, str]:
    """``{dotted key: "module:attr"}`` for every code path the task and its options name."""
    return dict([*_walk(cfg.get("task", ""), "task"), *_walk(cfg.get("task_options") or {}, "task_options")])


def shipped() -> set[str]:
    from banel_ray import tasks

    return SHIPPED | set(tasks.BUILTIN.values()) | set(tasks.RENAMED)


def untrusted(cfg: dict, named: Iterable) -> dict[str, str]:
    """Code paths of ``cfg`` neither shipped here nor among ``named`` (the values the user typed)."""
    typed = {ref for v in named for _, ref in _walk(v, "")}
    ok = shipped() | typed
    return {k: ref for k, ref in code_refs(cfg).items() if ref not in ok}


def naming_sets(cfg: dict) -> list[str]:
    """``--set`` items that name the code of ``cfg`` again (empty if it names only shipped code):
    what a tool that started a run from its own config passes to resume it (``compare``)."""
    import json

    if not untrusted(cfg, []):
        return []
    return [f"task={cfg['task']}", f"task_options={json.dumps(cfg['task_options'])}"]
