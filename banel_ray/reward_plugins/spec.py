"""Oracle specs (what a config holds) -> oracles, and the one-line check of a spec: the one table
of kinds (``KINDS``). The protocol is in ``base.py``; this module sits above it and above the kinds
it names (``http.py``, ``flaky.py``), so none of them imports another in a circle.

A spec is an oracle object, a callable (per-sample), a string (``"pkg.mod:fn"``, per-sample; or an
``http(s)://`` URL), or a dict, which is what YAML configs hold::

    {"kind": "sample", "fn": "my_pkg.oracle:reward"}          # one sample -> reward (sync or async)
    {"kind": "batch",  "fn": "my_pkg.oracle:rewards", "batch_size": 64}
    {"kind": "http",   "url": "http://127.0.0.1:8000/rewards", "timeout_s": 10}
    {"kind": "flaky",  "latency_s": 0.2, "failure_rate": 0.1, "seed": 0}
    {"kind": "class",  "cls": "my_pkg.oracle:MyOracle", ...keyword arguments}

Kinds:

- ``SampleOracle(fn)``: ``fn(sample) -> reward``, a plain or ``async`` function; one sample per
  call (``batch_size=1``), so ``RewardService`` runs up to ``max_in_flight`` of them at once.
- ``BatchOracle(fn)``: ``fn(samples) -> rewards``; one call for the whole batch (``batch_size=0``).
- ``HttpOracle(url)``: POSTs ``{"samples": [[ids...], ...]}`` as JSON and reads ``{"rewards": [...]}``.
- ``FlakyOracle``: a slow, seeded, flaky test oracle (``banel_ray.reward_plugins.flaky``).
- ``class``: any class named by ``cls``, built with the spec's other keys.
"""

from __future__ import annotations

import inspect

from banel_ray.core.errors import ConfigError
from banel_ray.core.imports import import_attr
from banel_ray.reward_plugins.base import BatchOracle, Oracle, SampleOracle
from banel_ray.reward_plugins.flaky import FlakyOracle
from banel_ray.reward_plugins.http import HttpOracle

# kind -> (its class, the key it needs); "class" names its class in the spec itself
KINDS: dict[str, tuple[type[Oracle] | None, str | None]] = {
    "sample": (SampleOracle, "fn"),
    "batch": (BatchOracle, "fn"),
    "http": (HttpOracle, "url"),
    "flaky": (FlakyOracle, None),
    "class": (None, "cls"),
}
ALIASES = {"callable": "sample"}  # an older spelling, still read
ALLOWED = "a module:function path importable here, an http(s):// URL, or a mapping with kind " + "|".join(KINDS)


def _entry(kind) -> tuple[str, type[Oracle] | None, str | None] | None:
    """(canonical kind, class, needed key) of a spec's ``kind``; None for an unknown one."""
    try:
        name = ALIASES.get(kind, kind)
        cls, need = KINDS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable kind (a list in YAML)
        return None
    return name, cls, need


def build(spec) -> Oracle:
    """An oracle from a spec (see the module docstring)."""
    if inspect.isclass(spec):
        return spec()
    if isinstance(spec, Oracle) or (hasattr(spec, "rewards") and not isinstance(spec, (str, dict))):
        return spec
    if isinstance(spec, str):
        if spec.startswith(("http://", "https://")):
            return HttpOracle(spec)
        return build(import_attr(spec))
    if isinstance(spec, dict):
        opts = dict(spec)
        kind = opts.pop("kind", "sample")
        entry = _entry(kind)
        if entry is None:
            *first, last = KINDS
            raise ValueError(f"unknown oracle kind {kind!r}: {', '.join(first)} or {last}")
        name, cls, need = entry
        if name == "class":
            return import_attr(opts.pop("cls"))(**opts)
        if need == "fn":
            return cls(opts.pop("fn"), **opts)
        return cls(**opts)
    if callable(spec):
        return SampleOracle(spec)
    raise TypeError(f"cannot make an oracle from {spec!r}")


def _import_problem(path) -> str | None:
    if not isinstance(path, str):
        return f"expected a module:attribute path, got {path!r}"
    try:
        import_attr(path)
    except ConfigError as e:  # malformed, no such module or attribute, or refused (a run folder's)
        return str(e)
    except Exception as e:  # noqa: BLE001 - the module's own code failed: still the user's to fix
        return f"cannot import {path!r} ({type(e).__name__}: {e})"
    return None


def check_spec(spec) -> str | None:
    """What is wrong with an oracle spec, in one line (None: it can be built). Imports the code it
    names (the user named it) but builds nothing."""
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
    entry = _entry(kind)
    if entry is None:
        return f"unknown oracle kind {kind!r}; allowed: {', '.join(KINDS)}"
    name, cls, need = entry
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(opts) - set(params))
    if unknown:
        return f"unknown key {unknown[0]!r} for kind {kind}; allowed: {', '.join(params)}"
    if need and need not in opts:
        return f"kind {kind} needs {need!r}"
    if name == "http":
        try:
            HttpOracle(**opts)  # checks the URL and options; opens no connection
        except (TypeError, ValueError) as e:
            return str(e)
        return None
    fn = opts.get("fn")
    return _import_problem(fn) if isinstance(fn, str) else None
