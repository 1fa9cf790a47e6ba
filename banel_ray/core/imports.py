"""The one way a ``module:attribute`` string becomes the object it names.

A config names code as ``pkg.module:attr`` (a task class, an oracle function or class; the
attribute may be dotted, ``pkg.module:Outer.fn``), and the method registry names its classes the
same way. ``import_attr`` parses, imports and returns it, and says in one ``ConfigError`` line
what is wrong: a spec that is not ``module:attribute``, a module that cannot be found, an
attribute the module does not have, or code a run folder names that the trust rule does not allow.

The trust rule (``banel_ray/trust.py``): a run folder is data, so while a resumed config is read
(``only``), only the code it was allowed to name is imported: code shipped here, the same code
named again on the command line, or everything with ``--trust-run-folder`` (no ``only`` then).
``SPEC`` is the grammar both sides use: what ``trust.code_refs`` finds in a config is exactly what
``import_attr`` would import, so no spec can slip past the check and still be imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import re
from collections.abc import Collection, Iterator
from typing import Any

from banel_ray.core.errors import ConfigError

SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
EXAMPLE = "my_pkg.my_module:MyClass"

_allowed: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar("banel_ray_allowed", default=None)


def is_spec(value: object) -> bool:
    """Whether ``value`` is a ``module:attribute`` string (blanks around it aside)."""
    return isinstance(value, str) and SPEC.match(value.strip()) is not None


@contextlib.contextmanager
def only(allowed: Collection[str] | None) -> Iterator[None]:
    """While reading a run folder's config: ``import_attr`` imports only the specs in ``allowed``
    (None: any, as for the user's own config or a folder passed with ``--trust-run-folder``)."""
    token = _allowed.set(None if allowed is None else frozenset(allowed))
    try:
        yield
    finally:
        _allowed.reset(token)


def import_attr(spec: object) -> Any:
    """The object ``spec`` (``"pkg.module:attr"`` or ``"pkg.module:Outer.attr"``) names.

    Raises ``ConfigError`` (one line, starting ``cannot import 'SPEC'``) for a malformed spec, a
    spec the trust rule refuses (inside ``only``; nothing is imported then), a module that cannot
    be found (also a module it imports) or a missing attribute. An error raised by the module's own
    code while it is imported is not caught: it is the module author's, with its traceback."""
    if not isinstance(spec, str) or not SPEC.match(spec):
        raise ConfigError(f"cannot import {spec!r}: expected 'module:attribute' (e.g. {EXAMPLE})")
    allowed = _allowed.get()
    if allowed is not None and spec not in allowed:
        raise ConfigError(
            f"cannot import {spec!r}: a run folder names it and a run folder is data, not code to import; "
            f"allowed: code shipped here, the same code named again with --set, "
            f"or --trust-run-folder for a folder you made"
        )
    module, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ConfigError(f"cannot import {spec!r} ({type(e).__name__}: {e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise ConfigError(f"cannot import {spec!r} ({type(e).__name__}: {e})") from None
    return obj
