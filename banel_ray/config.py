"""Run configuration: one table of dotted keys, YAML files and ``--set key.path=value``.

The keys are declared once, as the typed dataclasses of ``config_sections`` (``RunConfig`` and one
frozen section per prefix); ``FIELDS`` is derived from them: every key with its type, default,
range or choice list and help line. Bad input raises ``ConfigError`` with one line naming the key
and what is allowed. Validation runs once, before any actor starts. A run's config is a flat dict
of dotted keys (what YAML, ``--set`` and Tune search spaces speak); ``sections`` turns it into a
``RunConfig`` whose typed, frozen sections (``negative``, ``filter``, ...) the actors receive at
construction.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from banel_ray.config_sections import RunConfig
from banel_ray.core.errors import ConfigError  # defined in core so lower layers can raise it too


@dataclass(frozen=True)
class Field:
    default: Any
    type: type
    help: str
    choices: tuple | Callable[[], tuple] | None = None
    lo: float | None = None
    hi: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


#: section name -> its dataclass (``SECTIONS["negative"]`` is ``NegativeConfig``), in ``RunConfig``'s order
SECTIONS: dict[str, type] = {
    f.name: f.type
    for f in dataclasses.fields(RunConfig)
    if isinstance(f.type, type) and dataclasses.is_dataclass(f.type)
}
SECTION_NAMES = tuple(SECTIONS)


def section_name(cls: type) -> str:
    """The prefix of a section dataclass (``section_name(NegativeConfig) == "negative"``)."""
    return next(name for name, c in SECTIONS.items() if c is cls)


def declared() -> list[tuple[str, str, dataclasses.Field]]:
    """(dotted key, section name or '' for a top-level key, dataclass field) of every key, in the
    order ``RunConfig`` and its sections declare them."""
    out = []
    for top in dataclasses.fields(RunConfig):
        if top.name in SECTIONS:
            out += [
                (f"{top.name}.{f.metadata.get('key') or f.name}", top.name, f)
                for f in dataclasses.fields(SECTIONS[top.name])
            ]
        else:
            out.append((top.name, "", top))
    return out


def _fields() -> dict[str, Field]:
    """``FIELDS`` from the dataclasses: one entry per field, in declaration order, except that a
    field with ``listed_after`` follows that key."""
    out: list[tuple[str, Field]] = []
    for key, _, f in declared():
        m = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out.append((key, Field(default, f.type, m["help"], m["choices"], m["lo"], m["hi"], m["check"])))
    for key, _, f in declared():
        if f.metadata.get("listed_after"):
            item = next(x for x in out if x[0] == key)
            out.remove(item)
            out.insert(1 + next(i for i, x in enumerate(out) if x[0] == f.metadata["listed_after"]), item)
    return dict(out)


FIELDS: dict[str, Field] = _fields()  # every key: what YAML, --set, Tune search spaces and --help speak


def defaults() -> dict[str, Any]:
    return {k: copy.deepcopy(f.default) for k, f in FIELDS.items()}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in FIELDS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def nest(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for k, v in flat.items():
        cur = out
        parts = k.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out


def _shown(choice: Any) -> str:
    """A choice as messages name it (the empty string as '')."""
    return str(choice) if choice != "" else "''"


def _coerce(key: str, value: Any) -> Any:
    f = FIELDS.get(key)
    if f is None:
        near = sorted(k for k in FIELDS if k.split(".")[0] == key.split(".", maxsplit=1)[0]) or sorted(FIELDS)
        raise ConfigError(f"unknown key '{key}'; allowed: {', '.join(near)}")
    t = f.type
    if t is list:
        return _coerce_list(key, f, value)
    if t is float and isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = (isinstance(value, t) and not (t is int and isinstance(value, bool))) or (
        t is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if not ok:
        raise ConfigError(f"'{key}' must be {t.__name__}, got {value!r}")
    if t is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
    choices = f.choices() if callable(f.choices) else f.choices
    if choices and value not in choices:
        raise ConfigError(f"'{key}' must be one of {', '.join(map(_shown, choices))}, got {value!r}")
    if f.lo is not None and value < f.lo or f.hi is not None and value > f.hi:
        rng = f"in [{f.lo}, {f.hi}]" if f.hi is not None else f">= {f.lo}"
        raise ConfigError(f"'{key}' must be {rng}, got {value!r}")
    return value


def _coerce_list(key: str, f: Field, value: Any) -> list:
    """A list key: a list, or one name or comma-separated names (``--set logging.backends=mlflow``);
    each item one of the choices, duplicates dropped."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    choices = f.choices() if callable(f.choices) else f.choices
    allowed = f"a list of {', '.join(map(str, choices))}" if choices else "a list"
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"'{key}' must be {allowed}, got {value!r}")
    for v in value:
        if choices and v not in choices:
            raise ConfigError(f"'{key}' must be {allowed}, got {v!r}")
    return list(dict.fromkeys(value))


def parse_set(item: str) -> tuple[str, Any]:
    """``key.path=value``; the value is parsed as YAML (so 3, 2.5, true, [1,2] work)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key.path=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if value is None:
        value = ""
    if key.strip().startswith("task_options."):
        return key.strip(), value
    if FIELDS.get(key.strip()) and FIELDS[key.strip()].type is list and isinstance(value, str):
        value = raw  # 'a,b' stays names, split by _coerce_list
    if FIELDS.get(key.strip()) and FIELDS[key.strip()].type is str and not isinstance(value, str):
        value = raw  # '--set run_dir=123' stays a string
    return key.strip(), value


def coerce(key: str, value: Any) -> Any:
    """``value`` checked and converted for ``key`` (ConfigError naming the key otherwise)."""
    return _coerce(key, value)


def override(cfg: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The one way to set a key: ``task_options.<name>`` layers into the task's options, any
    other key is checked against ``FIELDS``. Returns ``cfg`` (changed in place)."""
    if key.startswith("task_options."):
        cfg["task_options"] = dict(cfg.get("task_options") or {}, **{key.split(".", 1)[1]: value})
    else:
        cfg[key] = _coerce(key, value)
    return cfg


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """The line (1-based) of each key of a composed YAML mapping, named as ``_flatten`` names them."""
    out: dict[str, int] = {}
    for k, v in node.value if isinstance(node, yaml.MappingNode) else []:
        key = f"{prefix}{k.value}"
        if isinstance(v, yaml.MappingNode) and key not in FIELDS:
            out.update(_key_lines(v, key + "."))
        else:
            out[key] = k.start_mark.line + 1
    return out


def read_yaml(config_file: str, lines: dict | None = None) -> dict[str, Any]:
    """A YAML config file as flat dotted keys (ConfigError for a missing or malformed file, naming
    the line); ``lines`` receives each key's line, so a bad value can be pointed at too."""
    p = Path(config_file)
    if not p.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    text = p.read_text()
    try:
        data = yaml.safe_load(text) or {}
        if lines is not None:
            lines.update(_key_lines(yaml.compose(text, Loader=yaml.SafeLoader)))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
        raise ConfigError(f"config file {config_file} is not valid YAML{where}: {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {config_file} must hold a mapping of keys, not {type(data).__name__}")
    return _flatten(data)


def load(
    config_file: str | None = None, sets: list[str] | None = None, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` (default: the defaults) <- YAML file <- --set items, validated. A flat dict."""
    cfg = copy.deepcopy(base) if base is not None else defaults()
    lines: dict[str, int] = {}
    for k, v in read_yaml(config_file, lines).items() if config_file else []:
        try:
            override(cfg, k, v)
        except ConfigError as e:
            raise ConfigError(f"config file {config_file} line {lines.get(k, '?')}: {e}") from None
    for k, v in [parse_set(item) for item in sets or []]:
        override(cfg, k, v)
    return validate(cfg)


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Cross-key checks and the task (its name and its options), without starting anything."""
    import inspect

    from banel_ray import tasks

    for k, v in cfg.items():
        _coerce(k, v)
    try:
        cls = tasks.resolve(cfg["task"])
    except Exception:  # noqa: BLE001 - not found, or its module fails to import
        raise ConfigError(
            f"unknown task '{cfg['task']}'; allowed: {', '.join(tasks.BUILTIN)} "
            f"or a module:Class path to a Task subclass"
        ) from None
    params = inspect.signature(cls.__init__).parameters
    for k in cfg["task_options"]:
        if k not in params:
            allowed = [p for p in params if p != "self"]
            raise ConfigError(f"unknown key 'task_options.{k}' for task {cfg['task']}; allowed: {', '.join(allowed)}")
    msg = cls.check_options(cfg["task_options"])  # a task's own one-line option checks
    if msg:
        raise ConfigError(msg)
    for k in ("solver", "prior"):
        path = cfg["task_options"].get(k)
        if path and not Path(path).is_dir():
            raise ConfigError(f"'task_options.{k}' folder not found: {path}")
    if cfg["trainer.device"] == "cuda" and cfg["trainer.num_gpus"] <= 0:
        raise ConfigError("'trainer.device' cuda needs 'trainer.num_gpus' > 0 (Ray hides GPUs from actors without one)")
    # mode: sequential is the older spelling of method: banel_sequential; both are kept in step
    if cfg["mode"] == "sequential" and cfg["method"] == "banel":
        cfg["method"] = "banel_sequential"
    elif cfg["method"] == "banel_sequential":
        cfg["mode"] = "sequential"
    elif cfg["mode"] != "distill":
        raise ConfigError(
            f"'mode' sequential is BaNEL's Algorithm 1 (method banel or banel_sequential), not method {cfg['method']}"
        )
    from banel_ray.tasks.base import Task

    enumerates = cls.code_logprobs is not Task.code_logprobs and cls.code_completions is not Task.code_completions

    def needs_enumeration(key: str, value: str, otherwise: str) -> None:
        if not enumerates:
            raise ConfigError(
                f"'{key}' {value} needs a task that enumerates its space (mnist_0to6, mnist_0to6_rare, "
                f"synthetic); {cfg['task']} does not; allowed here: {otherwise}"
            )

    if cfg["generator.distil_from"] == "exact":
        if cfg["method"] != "banel":
            raise ConfigError(f"'generator.distil_from' exact is for method banel (Algorithm 2), not {cfg['method']}")
        needs_enumeration("generator.distil_from", "exact", "pool")
        if cfg["support.kind"] != "none":
            raise ConfigError("'generator.distil_from' exact applies no support control; set support.kind=none")
    if cfg["negative.proposals"] == "exact":
        if cfg["method"] != "banel_sequential":
            raise ConfigError(
                f"'negative.proposals' exact is for Algorithm 1 (method banel_sequential), not {cfg['method']}"
            )
        needs_enumeration("negative.proposals", "exact", "rejection")
    if cfg["negative.region_calibration"] == "posterior":
        if cfg["filter.kind"] != "quantile":
            raise ConfigError(
                "'negative.region_calibration' posterior sets a filter factor's threshold; set filter.kind=quantile"
            )
        if cfg["method"] == "banel" and not cfg["negative.exact_alg1"]:
            raise ConfigError(
                "'negative.region_calibration' applies to Algorithm 1's regions: method banel_sequential, or banel "
                "with negative.exact_alg1=true"
            )
    if cfg["stop.rule"]:
        from banel_ray.algorithms.stop_rules import rule_by_name

        try:
            rule_by_name(cfg["stop.rule"])
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None
    usd, per_call = cfg["oracle.budget_usd"], cfg["oracle.cost_per_call"]
    if usd > 0 and per_call <= 0:
        raise ConfigError("'oracle.budget_usd' needs 'oracle.cost_per_call' > 0 (what each oracle call costs, USD)")
    if usd > 0 and round(usd * 1e6) < round(per_call * 1e6):
        raise ConfigError(
            f"'oracle.budget_usd' {usd:g} is below one call's 'oracle.cost_per_call' {per_call:g}: no call could be made"
        )
    if cfg["filter.schedule"] == "exponential" and cfg["filter.end"] <= 0:
        raise ConfigError("'filter.end' must be > 0 for the exponential schedule")
    if cfg["generator.schedule"] == "exponential" and min(cfg["generator.lr"], cfg["generator.lr_end"]) <= 0:
        raise ConfigError("'generator.lr' and 'generator.lr_end' must be > 0 for the exponential schedule")
    if cfg["filter.kind"] == "quantile" and cfg["filter.schedule"] != "constant" and cfg["filter.end"] < 1:
        raise ConfigError("'filter.end' must be >= 1 when it is a filter factor (filter.kind=quantile)")
    from banel_ray.report import tracking

    msg = tracking.missing_package(cfg["logging.backends"])  # before anything is started or paid
    if msg:
        raise ConfigError(msg)
    from banel_ray import preflight  # checks that need the task class: evaluation cost, required options

    msg = preflight.task_problem(cfg, cls)
    if msg:
        raise ConfigError(msg)
    return cfg


# ---- typed sections -------------------------------------------------------------------------------


def sections(cfg: dict[str, Any]) -> RunConfig:
    """Typed view of a validated flat config: a ``RunConfig`` (top-level keys as attributes, one
    frozen record per section: ``rc.negative.epochs``, ``rc.negative.lora_r``). A key the config
    lacks keeps its dataclass default."""
    top: dict[str, Any] = {}
    recs: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, section, f in declared():
        if key in cfg:
            (recs[section] if section else top)[f.name] = cfg[key]
    return RunConfig(**top, **{name: cls(**recs[name]) for name, cls in SECTIONS.items()})


def help_table() -> str:
    rows = []
    for k, f in FIELDS.items():
        choices = f.choices() if callable(f.choices) else f.choices
        extra = f" {{{'|'.join(map(_shown, choices))}}}" if choices else ""
        rows.append(f"  {k:<24} {f.default!r:<18} {f.help}{extra}")
    return "\n".join(rows)
