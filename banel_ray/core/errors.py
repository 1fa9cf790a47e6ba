"""The one user-facing error of bad input (a key, a value, a busy run folder): one line, exit 2.

It lives at the bottom so that any layer can raise it (``core.runlock.Busy`` is one); ``config``
raises it for every key and is where callers name it (``config.ConfigError``)."""

from __future__ import annotations


class ConfigError(ValueError):
    """One-line, user-facing configuration error."""
