"""Run folders are data: what code a resumed run may import.

A run folder's ``config.json`` can name code: a task class (``task: my_pkg.tasks:MyTask``), an
oracle or evaluator function or class (``task_options.oracle.fn``, ``cls``, ...). Importing it runs
it, so ``--resume`` of a folder someone else wrote (shared, downloaded) could run anything. So a
resume imports only

- code this package ships under fixed names (``SHIPPED``: the built-in tasks and oracles), and
- code the user names again on the command line (``--set task=...`` with the same path), or
- everything, with ``--trust-run-folder`` (for folders you made yourself).

``code_refs`` finds every ``module:attribute`` string in the task and its options, however deeply
nested; ``untrusted`` says which of them the user has not named. Both sides use one grammar
(``core.imports.SPEC``): what ``code_refs`` finds is exactly what ``core.imports.import_attr``
would import. ``run.py`` refuses an untrusted folder before anything starts, then reads its config
inside ``core.imports.only(allowed_code(...))``, so the import itself applies the same rule.

Keys that are not code can be as bad: a folder's config could send the samples and a secret header
to another host, or write checkpoints anywhere. So a resume also refuses every ``SENSITIVE`` key the
folder sets to a non-default value unless the user names the same value again (``--set KEY=VALUE``)
or passes ``--trust-run-folder``; ``unnamed_sensitive`` says which.
"""

from __future__ import annotations

from collections.abc import Iterable

from banel_ray.core.imports import is_spec

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


# Keys a resumed folder may not set on its own. A ``task_options.**.NAME`` entry is NAME at any
# depth of the task's options (an oracle or evaluator spec, nested or not).
SENSITIVE = (
    "checkpoint.dir",  # written to: round checkpoints (and their deletion) outside the run folder
    "logging.mlflow_uri",  # sends the config and metrics to a server, or writes a file store anywhere
    "logging.wandb_mode",  # online: sends the config and metrics to W&B with the user's key
    "ray.address",  # the cluster that receives the run's actors, samples and oracle calls
    # the HTTP oracle's endpoint, or an oracle given as a bare http(s):// URL: every sample and its
    # headers are sent there
    "task_options.**.url",
    "task_options.**.headers_env",  # environment variables read (secrets) and sent as headers
    "task_options.**.ca_file",  # the HTTP oracle's TLS trust anchor: a folder's CA lets another host pose as it
)


def sensitive(cfg: dict) -> dict[str, object]:
    """``{dotted key: value}`` for every ``SENSITIVE`` key ``cfg`` sets to a non-default value."""
    from banel_ray import config as C

    defaults = C.defaults()
    out = {k: cfg[k] for k in SENSITIVE if k in cfg and cfg[k] != defaults.get(k)}
    names = {k.rsplit(".", 1)[1] for k in SENSITIVE if k.startswith("task_options.**.")}

    def find(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                if k in names and v not in (None, "", {}, []):
                    out[f"{path}.{k}"] = v
                else:
                    find(v, f"{path}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                find(v, f"{path}[{i}]")
        elif isinstance(value, str) and value.strip().startswith(("http://", "https://")):
            out[path] = value

    find(cfg.get("task_options") or {}, "task_options")
    return out


def unnamed_sensitive(cfg: dict, named: dict) -> list[str]:
    """The ``SENSITIVE`` keys ``cfg`` (the config a resume will run) sets to a value that ``named``
    (the config the user's own command line gives) does not set to the same value."""
    mine = sensitive(named)
    return [k for k, v in sensitive(cfg).items() if mine.get(k, _MISSING) != v]


_MISSING = object()


def _walk(value, path: str):
    if isinstance(value, str):
        if is_spec(value):
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


def allowed_code(named: Iterable) -> set[str]:
    """The code a run folder's config may have imported without --trust-run-folder: shipped here,
    or among ``named`` (the values the user typed, however deeply they name code)."""
    return shipped() | {ref for v in named for _, ref in _walk(v, "")}


def untrusted(cfg: dict, named: Iterable) -> dict[str, str]:
    """Code paths of ``cfg`` neither shipped here nor among ``named`` (the values the user typed)."""
    ok = allowed_code(named)
    return {k: ref for k, ref in code_refs(cfg).items() if ref not in ok}


def naming_sets(cfg: dict) -> list[str]:
    """``--set`` items that name the code and the ``SENSITIVE`` keys of ``cfg`` again (empty if it
    names only shipped code and leaves those keys at their defaults):
    what a tool that started a run from its own config passes to resume it (``compare``)."""
    import json

    out = []
    if untrusted(cfg, []):
        out = [f"task={cfg['task']}"]
    keys = sensitive(cfg)
    if out or any(k.startswith("task_options") for k in keys):
        out.append(f"task_options={json.dumps(cfg['task_options'])}")
    out += [f"{k}={cfg[k]}" for k in keys if not k.startswith("task_options")]
    return out


def refusal(cfg: dict, where: str, sends_data: bool) -> str | None:
    """Why a command that reads a run folder without resuming it (evaluate, export) must not use
    the folder's config as it stands, or None: code it names that is not shipped here, and, for a
    command that scores samples (``sends_data``), keys that send them elsewhere or read secrets.
    The caller's --trust-run-folder lifts it."""
    bad = untrusted(cfg, [])
    if bad:
        return (
            f"{where} names code ({', '.join(bad.values())}) and a run folder is data, not code to import; "
            f"allowed: --trust-run-folder for a folder you made"
        )
    keys = list(sensitive(cfg)) if sends_data else []
    if keys:
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        return (
            f"{where} sets {shown}, which can send samples elsewhere or read secrets, and a run folder is data; "
            f"allowed: --trust-run-folder for a folder you made"
        )
    return None
